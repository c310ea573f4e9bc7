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
//!
//! The directory is bounded: after a store, the least recently used entries (by modification
//! time, which a hit refreshes) go until the entries fit `$NNOPT_CACHE_SIZE` (bytes, or with a
//! K, M or G suffix; default 1 GiB), as ccache bounds its cache. The entry just stored always
//! stays. Another nnopt may delete or replace entries at the same time: every step tolerates
//! a file that vanished, and a half-deleted entry cannot be read since entries are renamed
//! into place whole.

use super::warn;
use std::cell::Cell;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

const MAGIC: &[u8; 8] = b"NNOPTOBJ";
const FORMAT: u32 = 1;
/// magic, format, key hash, payload length, payload hash.
const HEADER: usize = 8 + 4 + 16 + 8 + 8;
const EXTENSION: &str = "nnoptobj";
/// The default bound on the entries' total size: far above one model's objects (tens of KB to
/// a few MB), far below a disk.
const DEFAULT_SIZE: u64 = 1 << 30;

/// The cache in one directory.
pub struct FileCache {
    dir: PathBuf,
    /// The bound on the entries' total size in bytes.
    size: u64,
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
    pub fn new(dir: PathBuf, size: u64) -> FileCache {
        FileCache {
            dir,
            size,
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
        let size = match std::env::var("NNOPT_CACHE_SIZE") {
            Ok(v) => parse_size(&v).unwrap_or_else(|| {
                warn(&format!(
                    "NNOPT_CACHE_SIZE={v:?} is not a size (bytes, or a number with K, M or G); \
                     bounding the cache to 1G"
                ));
                DEFAULT_SIZE
            }),
            Err(_) => DEFAULT_SIZE,
        };
        match base {
            Some(b) => Some(FileCache::new(b.join("nnopt"), size)),
            None => {
                warn("neither XDG_CACHE_HOME nor HOME is set: compiled code is not cached");
                None
            }
        }
    }

    fn path(&self, key: &[u8; 16]) -> PathBuf {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}.{EXTENSION}"))
    }

    /// The object stored for `key`; `None` when there is none or it is damaged (reported).
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let k = key_hash(key);
        let path = self.path(&k);
        let entry = std::fs::read(&path).ok()?;
        match decode(&entry, &k) {
            Ok(payload) => {
                // Recently used: eviction goes by modification time.
                let _ = std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_modified(SystemTime::now()));
                Some(payload.to_vec())
            }
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
        match stored {
            Ok(()) => self.evict(&path),
            Err(e) => {
                if !self.warned.replace(true) {
                    warn(&format!(
                        "cannot store compiled code in the cache {}: {e}; going on without it",
                        self.dir.display()
                    ));
                }
            }
        }
    }

    /// Deletes the least recently used entries other than `kept` until the entries fit the
    /// bound.
    fn evict(&self, kept: &Path) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries: Vec<(SystemTime, u64, PathBuf)> = dir
            .filter_map(|e| {
                let e = e.ok()?;
                let path = e.path();
                if path.extension()? != EXTENSION {
                    return None;
                }
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), path))
            })
            .collect();
        let mut total: u64 = entries.iter().map(|e| e.1).sum();
        entries.sort();
        for (_, len, path) in entries {
            if total <= self.size {
                break;
            }
            if path != kept && std::fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }
}

/// A size in bytes: digits, optionally followed by K, M or G (powers of 1024).
fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&t[..i], c.to_ascii_uppercase()),
        _ => (t, 'B'),
    };
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
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
        let c = FileCache::new(dir.path().join("nnopt"), DEFAULT_SIZE);
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
        let c = FileCache::new(file.join("nnopt"), DEFAULT_SIZE);
        c.put("k", b"code");
        assert!(c.warned.get());
        assert_eq!(c.get("k"), None);
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("64k"), Some(64 << 10));
        assert_eq!(parse_size(" 500M "), Some(500 << 20));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("0"), Some(0));
        for bad in ["", "G", "1.5G", "12T", "-1", "99999999999G"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_least_recently_used_entries_go_past_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let entry = (encode(&[0; 100], &key_hash("a"))).len() as u64;
        let c = FileCache::new(dir.path().join("nnopt"), 2 * entry);
        let age = |key: &str, secs: u64| {
            let f = std::fs::File::options()
                .write(true)
                .open(c.path(&key_hash(key)))
                .unwrap();
            f.set_modified(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs))
                .unwrap();
        };
        c.put("a", &[0; 100]);
        age("a", 10);
        c.put("b", &[1; 100]);
        age("b", 20);
        // A hit makes "a" the most recently used, so storing "c" evicts "b".
        assert!(c.get("a").is_some());
        c.put("c", &[2; 100]);
        assert_eq!(c.get("b"), None);
        assert!(c.get("a").is_some() && c.get("c").is_some());
        // An entry larger than the whole bound is kept itself, alone.
        c.put("big", &[3; 1000]);
        assert!(c.get("big").is_some());
        assert_eq!((c.get("a"), c.get("c")), (None, None));
    }
}
