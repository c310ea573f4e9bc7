//! Reading and writing `.npy` files of network inputs and outputs.

use ndarray::ArrayD;
use ndarray_npy::{ReadNpyError, ReadNpyExt, WriteNpyExt};
use std::io::{BufWriter, Write};
use std::path::Path;

/// Reads an `.npy` file holding an f32 array (f64 arrays are accepted and rounded to f32),
/// C or Fortran order, of any rank.
pub fn read_npy(path: impl AsRef<Path>) -> Result<ArrayD<f32>, String> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let bad = |e: ReadNpyError| format!("cannot read {} as .npy: {e}", path.display());
    match ArrayD::<f32>::read_npy(&bytes[..]) {
        Ok(a) => Ok(a),
        Err(ReadNpyError::WrongDescriptor(d)) => match ArrayD::<f64>::read_npy(&bytes[..]) {
            Ok(a) => Ok(a.mapv(|v| v as f32)),
            Err(ReadNpyError::WrongDescriptor(_)) => Err(format!(
                "{} holds elements of type {d}, expected float32 or float64",
                path.display()
            )),
            Err(e) => Err(bad(e)),
        },
        Err(e) => Err(bad(e)),
    }
}

/// Writes `array` as an f32 `.npy` file, atomically: the data goes to a temporary file in the
/// destination directory which then replaces `path`, so readers never see a partial file.
pub fn write_npy(path: impl AsRef<Path>, array: &ArrayD<f32>) -> Result<(), String> {
    let path = path.as_ref();
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        format!("cannot write {}: {what}: {e}", path.display())
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| fail("cannot create a temporary file", &e))?;
    {
        let mut w = BufWriter::new(tmp.as_file_mut());
        array
            .as_standard_layout()
            .write_npy(&mut w)
            .map_err(|e| fail("encoding", &e))?;
        w.flush().map_err(|e| fail("flushing", &e))?;
    }
    tmp.as_file().sync_all().map_err(|e| fail("syncing", &e))?;
    tmp.persist(path)
        .map_err(|e| fail("renaming the temporary file", &e.error))?;
    Ok(())
}
