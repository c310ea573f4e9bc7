//! The compiled-code cache of `nnopt run` and `nnopt bench`: compiled code kept in
//! `$XDG_CACHE_HOME/nnopt` (default `~/.cache/nnopt`), one file per key, so the second run of a
//! model skips lowering, MLIR's passes and LLVM's code generation.
//!
//! The key and the payload (the object file and the calling conventions) are the lowering's
//! (`lower/cached.rs`: the NNIR text, the weights' content, the pipeline, the threads, the
//! target and the nnopt build); the key is hashed to 128 bits, which name the file. An entry is
//! `magic "NNOPTOBJ" | format u32 | key hash 16 bytes | payload length u64 | payload hash u64 |
//! payload` (little-endian), written atomically (`crate::atomic`). Reading checks every field:
//! a truncated, corrupt or foreign entry is reported and compiled again (then overwritten),
//! never loaded. A cache directory that cannot be created or written gives one warning and the
//! run goes on without storing.
//!
//! The hash is the standard library's `DefaultHasher` (SipHash with fixed keys): stable within
//! an nnopt build, which is all a key needs since the build is part of it.

use super::warn;
use std::cell::Cell;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"NNOPTOBJ";
const FORMAT: u32 = 1;
/// magic, format, key hash, payload length, payload hash.
const HEADER: usize = 8 + 4 + 16 + 8 + 8;

/// The cache in one directory.
pub struct FileCache {
    dir: PathBuf,
    /// Whether a failure to store was reported already (once per run is enough).
    warned: Cell<bool>,
}

/// `DefaultHasher` over `salt` and `bytes`.
fn hash64(salt: u8, bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    salt.hash(&mut h);
    bytes.hash(&mut h);
    h.finish()
}

/// The 128-bit hash of a key (two salted 64-bit hashes).
fn key_hash(key: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&hash64(1, key.as_bytes()).to_le_bytes());
    out[8..].copy_from_slice(&hash64(2, key.as_bytes()).to_le_bytes());
    out
}

/// Why an entry was not used.
#[derive(Debug, PartialEq, Eq)]
enum Bad {
    Truncated,
    Magic,
    Format(u32),
    Key,
    Checksum,
}

/// The payload of `entry` if it is an intact entry for `key`.
fn decode<'a>(entry: &'a [u8], key: &[u8; 16]) -> Result<&'a [u8], Bad> {
    if entry.len() < HEADER {
        return Err(Bad::Truncated);
    }
    let u64_at = |i: usize| u64::from_le_bytes(entry[i..i + 8].try_into().expect("8 bytes"));
    if &entry[..8] != MAGIC {
        return Err(Bad::Magic);
    }
    let format = u32::from_le_bytes(entry[8..12].try_into().expect("4 bytes"));
    if format != FORMAT {
        return Err(Bad::Format(format));
    }
    if &entry[12..28] != key {
        return Err(Bad::Key);
    }
    let payload = &entry[HEADER..];
    if u64_at(28) != payload.len() as u64 {
        return Err(Bad::Truncated);
    }
    if u64_at(36) != hash64(0, payload) {
        return Err(Bad::Checksum);
    }
    Ok(payload)
}

/// An entry holding `payload` for `key`.
fn encode(payload: &[u8], key: &[u8; 16]) -> Vec<u8> {
    let mut e = Vec::with_capacity(HEADER + payload.len());
    e.extend_from_slice(MAGIC);
    e.extend_from_slice(&FORMAT.to_le_bytes());
    e.extend_from_slice(key);
    e.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    e.extend_from_slice(&hash64(0, payload).to_le_bytes());
    e.extend_from_slice(payload);
    e
}

impl FileCache {
    /// The cache in `dir` (created when the first entry is stored).
    pub fn new(dir: PathBuf) -> FileCache {
        FileCache {
            dir,
            warned: Cell::new(false),
        }
    }

    /// The user's cache: `$XDG_CACHE_HOME/nnopt`, else `$HOME/.cache/nnopt` (an empty or
    /// relative `XDG_CACHE_HOME` is ignored, as the XDG base directory specification says);
    /// `None`, with a warning, when neither is set.
    pub fn user() -> Option<FileCache> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|h| !h.is_empty())
                    .map(|h| Path::new(&h).join(".cache"))
            });
        match base {
            Some(b) => Some(FileCache::new(b.join("nnopt"))),
            None => {
                warn("neither XDG_CACHE_HOME nor HOME is set: compiled code is not cached");
                None
            }
        }
    }

    fn path(&self, key: &[u8; 16]) -> PathBuf {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}.nnoptobj"))
    }

    /// The object stored for `key`; `None` when there is none or it is damaged (reported).
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let k = key_hash(key);
        let path = self.path(&k);
        let entry = std::fs::read(&path).ok()?;
        match decode(&entry, &k) {
            Ok(payload) => Some(payload.to_vec()),
            Err(why) => {
                warn(&format!(
                    "ignoring the damaged cache entry {} ({why:?}); compiling again",
                    path.display()
                ));
                None
            }
        }
    }

    /// Stores `object` for `key`; a failure is reported once and otherwise ignored.
    pub fn put(&self, key: &str, object: &[u8]) {
        let k = key_hash(key);
        let path = self.path(&k);
        let stored = std::fs::create_dir_all(&self.dir)
            .and_then(|()| crate::atomic::write_atomic(&path, &encode(object, &k)));
        if let Err(e) = stored {
            if !self.warned.replace(true) {
                warn(&format!(
                    "cannot store compiled code in the cache {}: {e}; going on without it",
                    self.dir.display()
                ));
            }
        }
    }
}

#[cfg(feature = "mlir")]
impl crate::lower::ObjectCache for FileCache {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        FileCache::get(self, key)
    }

    fn put(&self, key: &str, object: &[u8]) {
        FileCache::put(self, key, object)
    }

    fn module_text(&self, m: &crate::ir::Module) -> String {
        crate::syntax::printer::print_module(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_damage_is_detected() {
        let k = key_hash("module a");
        let e = encode(b"object bytes", &k);
        assert_eq!(decode(&e, &k), Ok(&b"object bytes"[..]));
        assert_eq!(decode(&e[..e.len() - 1], &k), Err(Bad::Truncated));
        assert_eq!(decode(&e[..10], &k), Err(Bad::Truncated));
        assert_eq!(decode(&e, &key_hash("module b")), Err(Bad::Key));
        let mut flipped = e.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(decode(&flipped, &k), Err(Bad::Checksum));
        let mut magic = e.clone();
        magic[0] = b'X';
        assert_eq!(decode(&magic, &k), Err(Bad::Magic));
        let mut format = e;
        format[8] = 9;
        assert_eq!(decode(&format, &k), Err(Bad::Format(9)));
    }

    #[test]
    fn stores_and_finds_and_survives_damage() {
        let dir = tempfile::tempdir().unwrap();
        let c = FileCache::new(dir.path().join("nnopt"));
        assert_eq!(c.get("k"), None);
        c.put("k", b"code");
        assert_eq!(c.get("k").as_deref(), Some(&b"code"[..]));
        assert_eq!(c.get("other"), None);
        let path = c.path(&key_hash("k"));
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 2]).unwrap();
        assert_eq!(c.get("k"), None);
        c.put("k", b"code");
        assert_eq!(c.get("k").as_deref(), Some(&b"code"[..]));
    }

    #[test]
    fn an_unwritable_directory_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        // A directory below a regular file cannot be created.
        let c = FileCache::new(file.join("nnopt"));
        c.put("k", b"code");
        assert!(c.warned.get());
        assert_eq!(c.get("k"), None);
    }
}
