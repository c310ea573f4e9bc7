//! Reading and writing `.npy` files of network inputs and outputs.

use ndarray::ArrayD;
use ndarray_npy::{ReadNpyError, ReadNpyExt, WriteNpyExt};
use std::path::Path;

/// Reads an `.npy` file holding an f32 array (f64 arrays are accepted and rounded to f32; int64
/// arrays, token ids, are carried as f32 when every value is exact in it, at most 2^24 in
/// magnitude), C or Fortran order, of any rank.
pub fn read_npy(path: impl AsRef<Path>) -> Result<ArrayD<f32>, String> {
    read_npy_typed(path.as_ref()).map(|(a, _)| a)
}

/// [`read_npy`], and whether the file held integers (int64), which only an argument of token
/// ids takes.
pub fn read_npy_typed(path: &Path) -> Result<(ArrayD<f32>, bool), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let bad = |e: ReadNpyError| format!("cannot read {} as .npy: {e}", path.display());
    match ArrayD::<f32>::read_npy(&bytes[..]) {
        Ok(a) => Ok((a, false)),
        Err(ReadNpyError::WrongDescriptor(d)) => match ArrayD::<f64>::read_npy(&bytes[..]) {
            Ok(a) => Ok((a.mapv(|v| v as f32), false)),
            Err(ReadNpyError::WrongDescriptor(_)) => match ArrayD::<i64>::read_npy(&bytes[..]) {
                Ok(a) => match a.iter().find(|v| v.unsigned_abs() > super::MAX_EXACT_INT as u64) {
                    Some(v) => Err(format!(
                        "{} holds the integer {v}, beyond 2^24, which the interpreter cannot carry exactly",
                        path.display()
                    )),
                    None => Ok((a.mapv(|v| v as f32), true)),
                },
                Err(ReadNpyError::WrongDescriptor(_)) => Err(format!(
                    "{} holds elements of type {d}, expected float32, float64 or int64",
                    path.display()
                )),
                Err(e) => Err(bad(e)),
            },
            Err(e) => Err(bad(e)),
        },
        Err(e) => Err(bad(e)),
    }
}

/// Writes `array` as an f32 `.npy` file, atomically (see [`crate::atomic::write_atomic`]).
pub fn write_npy(path: impl AsRef<Path>, array: &ArrayD<f32>) -> Result<(), String> {
    let path = path.as_ref();
    let mut bytes = Vec::new();
    array
        .as_standard_layout()
        .write_npy(&mut bytes)
        .map_err(|e| format!("cannot write {}: encoding: {e}", path.display()))?;
    crate::atomic::write_atomic(path, &bytes)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
