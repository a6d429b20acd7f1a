//! The on-disk form of a [`Graph`] (what `precis compile` writes): a checked,
//! versioned container.
//!
//! ```text
//! offset  size  field
//! 0       8     magic  b"PRECISIR"
//! 8       4     format version, u32 little-endian (FORMAT_VERSION)
//! 12      8     payload length in bytes, u64 little-endian
//! 20      4     CRC-32 (IEEE) of the payload, u32 little-endian
//! 24      n     payload: the graph in postcard (serde) encoding
//! ```
//!
//! [`from_bytes`] rejects a wrong magic, another version, a truncated or
//! over-long file, a checksum mismatch, an undecodable payload and a graph
//! that fails [`Graph::validate`], each with a one-line message. [`save`]
//! writes atomically (temporary file in the same directory, then rename).

use crate::Graph;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The first eight bytes of every file.
pub const MAGIC: &[u8; 8] = b"PRECISIR";
/// The version this build writes and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;
const HEADER: usize = 24;

/// Why a file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
    #[error("not a precis IR file (bad magic)")]
    Magic,
    #[error("IR file format version {found}; this precis reads version {FORMAT_VERSION}")]
    Version { found: u32 },
    #[error("truncated IR file: {have} bytes, the header announces {want}")]
    Truncated { have: u64, want: u64 },
    #[error("corrupt IR file: {0}")]
    Corrupt(String),
}

/// CRC-32 (IEEE 802.3, reflected, as in zlib/PNG).
pub fn crc32(data: &[u8]) -> u32 {
    const fn table() -> [u32; 256] {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    }
    static TABLE: [u32; 256] = table();
    let mut c = !0u32;
    for &b in data {
        c = TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Why a container could not be opened, before its payload is decoded
/// (each file type words these in its own error).
pub(crate) enum FrameError {
    Magic,
    Version(u32),
    Truncated { have: u64, want: u64 },
    Corrupt(String),
}

/// A container: magic, version, payload length, CRC-32, payload.
pub(crate) fn frame(magic: &[u8; 8], version: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload of a container written by [`frame`], checked: magic,
/// version, a length of at most `max_payload` that matches the file's, and
/// the checksum.
pub(crate) fn unframe<'a>(
    bytes: &'a [u8],
    magic: &[u8; 8],
    version: u32,
    max_payload: u64,
) -> Result<&'a [u8], FrameError> {
    if bytes.len() < magic.len() || &bytes[..magic.len()] != magic {
        return Err(FrameError::Magic);
    }
    if bytes.len() < HEADER {
        return Err(FrameError::Truncated {
            have: bytes.len() as u64,
            want: HEADER as u64,
        });
    }
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let found = u32_at(8);
    if found != version {
        return Err(FrameError::Version(found));
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    if len > max_payload {
        return Err(FrameError::Corrupt(format!(
            "the header announces {len} bytes, more than the {max_payload} accepted"
        )));
    }
    let want = (HEADER as u64).saturating_add(len);
    let have = bytes.len() as u64;
    if have < want {
        return Err(FrameError::Truncated { have, want });
    }
    if have > want {
        return Err(FrameError::Corrupt(format!(
            "{} bytes after the {len}-byte payload",
            have - want
        )));
    }
    let payload = &bytes[HEADER..];
    let crc = crc32(payload);
    if crc != u32_at(20) {
        return Err(FrameError::Corrupt(format!(
            "checksum {crc:08x} does not match the header's {:08x}",
            u32_at(20)
        )));
    }
    Ok(payload)
}

/// The file contents for `g`.
pub fn to_bytes(g: &Graph) -> Vec<u8> {
    let payload = postcard::to_stdvec(g).expect("a graph always serializes");
    frame(MAGIC, FORMAT_VERSION, &payload)
}

/// Parses and checks file contents.
pub fn from_bytes(bytes: &[u8]) -> Result<Graph, FileError> {
    let payload = unframe(bytes, MAGIC, FORMAT_VERSION, u64::MAX).map_err(|e| match e {
        FrameError::Magic => FileError::Magic,
        FrameError::Version(found) => FileError::Version { found },
        FrameError::Truncated { have, want } => FileError::Truncated { have, want },
        FrameError::Corrupt(m) => FileError::Corrupt(m),
    })?;
    // petgraph asserts (in debug builds) on some inconsistent node tables
    // instead of returning an error (found by fuzzing): that is a corrupt
    // file too.
    let decoded =
        std::panic::catch_unwind(|| postcard::from_bytes::<Graph>(payload)).map_err(|_| {
            FileError::Corrupt("cannot decode the graph: inconsistent node table".into())
        })?;
    let g = decoded.map_err(|e| {
        FileError::Corrupt(format!(
            "cannot decode the graph: {}",
            one_line(&e.to_string())
        ))
    })?;
    g.validate()
        .map_err(|e| FileError::Corrupt(format!("invalid graph: {}", one_line(&e.to_string()))))?;
    Ok(g)
}

/// Control characters escaped: names read from a file can hold newlines
/// (found by fuzzing), and an error is one line.
fn one_line(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// Writes `g` to `path` atomically: a temporary file next to it, synced, then
/// renamed over `path`. On error nothing is left at `path` (nor a temporary).
pub fn save(path: &Path, g: &Graph) -> Result<(), FileError> {
    write_atomic(path, &to_bytes(g))
}

/// Reads and checks a file written by [`save`].
pub fn load(path: &Path) -> Result<Graph, FileError> {
    let bytes = std::fs::read(path).map_err(|err| FileError::Io {
        path: path.to_path_buf(),
        err,
    })?;
    from_bytes(&bytes)
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_atomic_io(path, bytes).map_err(|err| FileError::Io {
        path: path.to_path_buf(),
        err,
    })
}

/// The one atomic file write of the project: the bytes go to a temporary
/// sibling of `path` (unique per process and call), are synced, and the
/// temporary is renamed over `path`; it is removed on failure, so a reader
/// never sees a half-written file.
pub fn write_atomic_io(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// [`write_atomic_io`] for a writer callback (large files streamed through
/// a buffer instead of built in memory first).
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    static SERIAL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file path"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{}.tmp{}-{serial}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let f = std::fs::File::create(&tmp)?;
        let mut b = std::io::BufWriter::with_capacity(1 << 20, f);
        write(&mut b)?;
        let f = b.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Op, Tensor};

    fn graph() -> Graph {
        let mut g = Graph::new("g");
        let x = g.add_input("x", vec![1, 3]).unwrap();
        let w = Tensor::new(vec![2, 3], vec![1.0, -2.5, 3.0, 0.1, 1e-7, -0.0]).unwrap();
        let l = g
            .add(
                "fc",
                Op::Linear(crate::Linear {
                    weight: w,
                    bias: None,
                }),
                &[x],
            )
            .unwrap();
        let r = g.add("relu", Op::Relu, &[l]).unwrap();
        g.set_outputs(vec![r]);
        g
    }

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn round_trip_is_exact() {
        let g = graph();
        let back = from_bytes(&to_bytes(&g)).unwrap();
        assert_eq!(back.to_text(), g.to_text());
    }

    #[test]
    fn rejects_damage() {
        let bytes = to_bytes(&graph());
        assert!(matches!(from_bytes(b"hello"), Err(FileError::Magic)));
        assert!(matches!(
            from_bytes(&bytes[..bytes.len() - 3]),
            Err(FileError::Truncated { .. })
        ));
        assert!(matches!(
            from_bytes(&bytes[..12]),
            Err(FileError::Truncated { .. })
        ));
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        let err = from_bytes(&flipped).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
        let mut v2 = bytes.clone();
        v2[8] = 2;
        let err = from_bytes(&v2).unwrap_err().to_string();
        assert!(err.contains("version 2"), "{err}");
        let mut longer = bytes;
        longer.push(0);
        assert!(matches!(from_bytes(&longer), Err(FileError::Corrupt(_))));
    }

    #[test]
    fn save_is_atomic_and_loads() {
        let dir = std::env::temp_dir().join(format!("precis-ir-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("g.pir");
        save(&path, &graph()).unwrap();
        assert_eq!(load(&path).unwrap().to_text(), graph().to_text());
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "g.pir")
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let missing = dir.join("no-such-dir").join("g.pir");
        assert!(save(&missing, &graph()).is_err());
        assert!(!missing.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
