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
use crate::file::{frame, unframe, write_atomic_io, FrameError};
use std::path::{Path, PathBuf};

pub const MAGIC: &[u8; 8] = b"PRECISCI";
/// The version this build writes and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;
/// Largest payload accepted (the weights of an ImageNet ResNet-152 are
/// 241 MB in f32): a header announcing more is refused before reading on.
pub const MAX_PAYLOAD: u64 = 1 << 32;

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
    frame(MAGIC, FORMAT_VERSION, &payload)
}

/// Parses and checks file contents (including [`Circuit::verify`]).
pub fn from_bytes(bytes: &[u8]) -> Result<Circuit, CircuitFileError> {
    let payload = unframe(bytes, MAGIC, FORMAT_VERSION, MAX_PAYLOAD).map_err(|e| match e {
        FrameError::Magic => CircuitFileError::Magic,
        FrameError::Version(found) => CircuitFileError::Version { found },
        FrameError::Truncated { have, want } => CircuitFileError::Truncated { have, want },
        FrameError::Corrupt(m) => CircuitFileError::Corrupt(m),
    })?;
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
