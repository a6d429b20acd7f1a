//! The circuit file (what `precis compile` writes and every backend reads):
//! a checked, versioned container around the circuit.
//!
//! ```text
//! offset  size  field
//! 0       8     magic  b"PRECISCI"
//! 8       4     format version, u32 little-endian (FORMAT_VERSION)
//! 12      8     payload length in bytes, u64 little-endian
//! 20      4     CRC-32 (IEEE) of the payload, u32 little-endian
//! 24      n     payload: the circuit in postcard (serde) encoding
//! ```
//!
//! [`from_bytes`] refuses a wrong magic, another version, a truncated or
//! over-long file, a checksum mismatch, an undecodable payload, a payload
//! larger than [`MAX_PAYLOAD`] and a circuit that fails
//! [`Circuit::verify`], each with a one-line message. [`save`] writes
//! atomically (temporary file in the same directory, then rename).

use super::Circuit;
use crate::file::{crc32, write_atomic_io};
use std::path::{Path, PathBuf};

pub const MAGIC: &[u8; 8] = b"PRECISCI";
/// The version this build writes and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;
/// Largest payload accepted (the weights of an ImageNet ResNet-152 are
/// 241 MB in f32): a header announcing more is refused before reading on.
pub const MAX_PAYLOAD: u64 = 1 << 32;
const HEADER: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum CircuitFileError {
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
    #[error("not a precis circuit file (bad magic)")]
    Magic,
    #[error("circuit file format version {found}; this precis reads version {FORMAT_VERSION}")]
    Version { found: u32 },
    #[error("truncated circuit file: {have} bytes, the header announces {want}")]
    Truncated { have: u64, want: u64 },
    #[error("corrupt circuit file: {0}")]
    Corrupt(String),
    #[error("invalid circuit: {0}")]
    Invalid(String),
}

/// The file contents for `c`.
pub fn to_bytes(c: &Circuit) -> Vec<u8> {
    let payload = postcard::to_stdvec(c).expect("a circuit always serializes");
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Parses and checks file contents (including [`Circuit::verify`]).
pub fn from_bytes(bytes: &[u8]) -> Result<Circuit, CircuitFileError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(CircuitFileError::Magic);
    }
    if bytes.len() < HEADER {
        return Err(CircuitFileError::Truncated {
            have: bytes.len() as u64,
            want: HEADER as u64,
        });
    }
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let version = u32_at(8);
    if version != FORMAT_VERSION {
        return Err(CircuitFileError::Version { found: version });
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    if len > MAX_PAYLOAD {
        return Err(CircuitFileError::Corrupt(format!(
            "the header announces {len} bytes, more than the {MAX_PAYLOAD} accepted"
        )));
    }
    let want = HEADER as u64 + len;
    let have = bytes.len() as u64;
    if have < want {
        return Err(CircuitFileError::Truncated { have, want });
    }
    if have > want {
        return Err(CircuitFileError::Corrupt(format!(
            "{} bytes after the {len}-byte payload",
            have - want
        )));
    }
    let payload = &bytes[HEADER..];
    let crc = crc32(payload);
    if crc != u32_at(20) {
        return Err(CircuitFileError::Corrupt(format!(
            "checksum {crc:08x} does not match the header's {:08x}",
            u32_at(20)
        )));
    }
    let c: Circuit = postcard::from_bytes(payload)
        .map_err(|e| CircuitFileError::Corrupt(format!("cannot decode the circuit: {e}")))?;
    c.verify()
        .map_err(|e| CircuitFileError::Invalid(e.to_string()))?;
    Ok(c)
}

/// Writes `c` to `path` atomically; on error nothing is left at `path`.
pub fn save(path: &Path, c: &Circuit) -> Result<(), CircuitFileError> {
    write_atomic_io(path, &to_bytes(c)).map_err(|err| CircuitFileError::Io {
        path: path.to_path_buf(),
        err,
    })
}

/// Reads and checks a file written by [`save`].
pub fn load(path: &Path) -> Result<Circuit, CircuitFileError> {
    let bytes = std::fs::read(path).map_err(|err| CircuitFileError::Io {
        path: path.to_path_buf(),
        err,
    })?;
    from_bytes(&bytes)
}
