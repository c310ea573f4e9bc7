//! Output files that appear whole or not at all: written to a temporary file beside the
//! destination and renamed over it. A leaf utility: every layer that writes a file uses it.

use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so
/// that a failure never leaves a partial file (and an existing file stays intact until the
/// new one is complete).
///
/// An existing destination that is not a regular file (`/dev/null`, `/dev/stdout`, a FIFO) is
/// written in place: renaming over it would replace the device with a regular file.
///
/// Atomic against nnopt failing (an error, a crash, a kill), not against the machine losing
/// power: like `cp` and compilers, nnopt does not `fsync`, which would cost a large share of
/// the time of writing a large weight file (`docs/performance.md`).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// [`write_atomic`] with the content produced by `write` (streamed into the temporary file).
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::io::Write;
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        return write(&mut f);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = output_tempfile(dir)?;
    {
        let mut w = std::io::BufWriter::with_capacity(1 << 16, tmp.as_file());
        write(&mut w)?;
        w.flush()?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A temporary file in `dir` that becomes an output by renaming. It is created with the mode
/// an ordinary new file gets (0666 minus the umask), not tempfile's private 0600.
pub fn output_tempfile(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let mut b = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(0o666));
    }
    b.prefix(".nnopt-").tempfile_in(dir)
}
