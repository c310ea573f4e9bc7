//! Convolution and pooling: Conv (2-D), MaxPool and AveragePool, with their padding rules
//! (`pads` or `auto_pad`) resolved to explicit pads.

use crate::ir::{Dim, OpKind, Pool2d};
use crate::onnx::import::attrs::Attrs;
use crate::onnx::import::values::Val;
use crate::onnx::import::{Importer, R};
use crate::onnx::proto::NodeProto;

impl Importer {
    /// Explicit [top, left, bottom, right] pads from `pads`/`auto_pad` for a 2-D window.
    fn window_pads(
        &self,
        a: &Attrs<'_>,
        x_dims: &[Dim],
        kernel: [u64; 2],
        strides: [u64; 2],
        dilations: [u64; 2],
    ) -> R<[u64; 4]> {
        let auto = a.string("auto_pad")?.unwrap_or_else(|| "NOTSET".into());
        match auto.as_str() {
            "NOTSET" => match a.ints("pads")? {
                None => Ok([0; 4]),
                Some(p) if p.len() == 4 && p.iter().all(|&x| x >= 0) => {
                    Ok([p[0] as u64, p[1] as u64, p[2] as u64, p[3] as u64])
                }
                Some(p) => Err(format!("pads {p:?} must be 4 non-negative integers")),
            },
            "VALID" => Ok([0; 4]),
            "SAME_UPPER" | "SAME_LOWER" => {
                let mut pads = [0u64; 4];
                for i in 0..2 {
                    let size = x_dims[2 + i]
                        .as_static()
                        .ok_or("auto_pad SAME needs static spatial dimensions")?;
                    let out = size.div_ceil(strides[i]);
                    let span = (kernel[i] - 1) * dilations[i] + 1;
                    let total = ((out - 1) * strides[i] + span).saturating_sub(size);
                    let small = total / 2;
                    let (begin, end) = if auto == "SAME_UPPER" {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    };
                    pads[i] = begin;
                    pads[2 + i] = end;
                }
                Ok(pads)
            }
            other => Err(format!("auto_pad '{other}' is not supported")),
        }
    }

    pub(super) fn conv(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        a.only(&[
            "auto_pad",
            "dilations",
            "group",
            "kernel_shape",
            "pads",
            "strides",
        ])?;
        let x_name = Self::need(n, 0)?;
        let w_name = Self::need(n, 1)?;
        let x_dims = self.dims(x_name)?;
        let w_dims = self.dims(w_name)?;
        if x_dims.len() != 4 || w_dims.len() != 4 {
            return Err(format!(
                "only 2-D convolution is supported (input rank {}, filter rank {})",
                x_dims.len(),
                w_dims.len()
            ));
        }
        let kernel = [
            w_dims[2]
                .as_static()
                .ok_or("the filter shape must be static")?,
            w_dims[3]
                .as_static()
                .ok_or("the filter shape must be static")?,
        ];
        if let Some(k) = a.ints("kernel_shape")? {
            if k != [kernel[0] as i64, kernel[1] as i64] {
                return Err(format!(
                    "kernel_shape {k:?} disagrees with the filter {kernel:?}"
                ));
            }
        }
        let pair = |name: &str| -> R<[u64; 2]> {
            match a.ints(name)? {
                None => Ok([1, 1]),
                Some(v) if v.len() == 2 && v.iter().all(|&x| x > 0) => {
                    Ok([v[0] as u64, v[1] as u64])
                }
                Some(v) => Err(format!("{name} {v:?} must be 2 positive integers")),
            }
        };
        let (strides, dilations) = (pair("strides")?, pair("dilations")?);
        let pads = self.window_pads(a, &x_dims, kernel, strides, dilations)?;
        let groups = u64::try_from(a.int("group", 1)?).map_err(|_| "group must be positive")?;
        let mut ops = vec![self.operand(x_name)?, self.operand(w_name)?];
        if let Some(b) = Self::input(n, 2) {
            ops.push(self.operand(b)?);
        }
        let kind = OpKind::Conv2d {
            strides,
            pads,
            dilations,
            groups,
        };
        let v = self.push(kind, &ops, Some(out))?;
        self.bind(out, Val::Ir(v));
        Ok(())
    }

    pub(super) fn pool(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        let max = n.op_type == "MaxPool";
        if max {
            a.only(&[
                "auto_pad",
                "ceil_mode",
                "dilations",
                "kernel_shape",
                "pads",
                "storage_order",
                "strides",
            ])?;
            if a.int("storage_order", 0)? != 0 {
                return Err("storage_order = 1 is not supported".into());
            }
        } else {
            a.only(&[
                "auto_pad",
                "ceil_mode",
                "count_include_pad",
                "dilations",
                "kernel_shape",
                "pads",
                "strides",
            ])?;
        }
        self.only_first_output(n)?;
        let x_name = Self::need(n, 0)?;
        let x_dims = self.dims(x_name)?;
        if x_dims.len() != 4 {
            return Err(format!(
                "only 2-D pooling is supported (input rank {})",
                x_dims.len()
            ));
        }
        let k = a.ints("kernel_shape")?.ok_or("kernel_shape is required")?;
        if k.len() != 2 || k.iter().any(|&x| x <= 0) {
            return Err(format!("kernel_shape {k:?} must be 2 positive integers"));
        }
        let kernel = [k[0] as u64, k[1] as u64];
        if let Some(d) = a.ints("dilations")? {
            if d.iter().any(|&x| x != 1) {
                return Err(format!("dilations {d:?} are not supported (only 1)"));
            }
        }
        let strides = match a.ints("strides")? {
            None => [1, 1],
            Some(v) if v.len() == 2 && v.iter().all(|&x| x > 0) => [v[0] as u64, v[1] as u64],
            Some(v) => return Err(format!("strides {v:?} must be 2 positive integers")),
        };
        let pads = self.window_pads(a, &x_dims, kernel, strides, [1, 1])?;
        let pool = Pool2d {
            kernel,
            strides,
            pads,
            ceil_mode: a.int("ceil_mode", 0)? != 0,
        };
        let kind = if max {
            OpKind::MaxPool2d(pool)
        } else {
            OpKind::AvgPool2d {
                pool,
                count_include_pad: a.int("count_include_pad", 0)? != 0,
            }
        };
        let x = self.operand(x_name)?;
        let v = self.push(kind, &[x], Some(out))?;
        self.bind(out, Val::Ir(v));
        Ok(())
    }
}
