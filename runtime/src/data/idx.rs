//! IDX files (the MNIST family's format), plain or gzip-compressed.
//!
//! Layout: two zero bytes, an element-type byte, the number of dimensions,
//! then each dimension as a big-endian u32, then the data. Only unsigned-byte
//! data (type 0x08, the type of every image and label file of MNIST and
//! Fashion-MNIST) is supported.

use super::DataError;
use flate2::read::MultiGzDecoder;
use std::io::Read;
use std::path::Path;

/// An unsigned-byte IDX array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Images `[n, rows, cols]`, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

/// Reads a file, gunzipping it when it starts with the gzip magic bytes.
/// Decompression stops one byte past the size the IDX header announces, so
/// a gzip bomb costs no more memory than the array it claims to hold.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    gunzip_bounded(raw).map_err(|msg| DataError::format(path, msg))
}

/// The bytes of an IDX file, decompressed when they start with the gzip
/// magic bytes, as [`read_maybe_gz`] reads them.
pub fn gunzip_bounded(raw: Vec<u8>) -> Result<Vec<u8>, String> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut z = MultiGzDecoder::new(&raw[..]);
    let gz_err = |e: std::io::Error| format!("corrupt gzip stream: {e}");
    // The header first (4 bytes, then 4 per dimension), then at most one
    // byte more than the data it announces.
    let mut out = Vec::new();
    (&mut z).take(4).read_to_end(&mut out).map_err(gz_err)?;
    if out.len() == 4 {
        let dims = 4 * out[3] as u64;
        (&mut z).take(dims).read_to_end(&mut out).map_err(gz_err)?;
        if out.len() as u64 == 4 + dims {
            let want = out[4..]
                .chunks_exact(4)
                .try_fold(1u64, |a, c| {
                    a.checked_mul(u32::from_be_bytes(c.try_into().expect("4 bytes")) as u64)
                })
                .unwrap_or(u64::MAX);
            (&mut z)
                .take(want.saturating_add(1))
                .read_to_end(&mut out)
                .map_err(gz_err)?;
        }
    }
    Ok(out)
}

/// Reads an unsigned-byte IDX file (optionally gzip-compressed).
pub fn read(path: impl AsRef<Path>) -> Result<Idx, DataError> {
    let path = path.as_ref();
    let bytes = read_maybe_gz(path)?;
    decode(&bytes).map_err(|msg| DataError::format(path, msg))
}

/// Decodes an IDX file as stored: gzip-compressed or not.
pub fn decode_maybe_gz(bytes: &[u8]) -> Result<Idx, String> {
    decode(&gunzip_bounded(bytes.to_vec())?)
}

/// Decodes the (decompressed) bytes of an unsigned-byte IDX file.
pub fn decode(bytes: &[u8]) -> Result<Idx, String> {
    if bytes.len() < 4 {
        return Err(format!("truncated: {} bytes, no IDX header", bytes.len()));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format!(
            "not an IDX file (magic {:02x} {:02x} {:02x} {:02x})",
            bytes[0], bytes[1], bytes[2], bytes[3]
        ));
    }
    let kind = bytes[2];
    if kind != 0x08 {
        let name = match kind {
            0x09 => "signed byte",
            0x0b => "short",
            0x0c => "int",
            0x0d => "float",
            0x0e => "double",
            _ => "unknown",
        };
        return Err(format!(
            "element type 0x{kind:02x} ({name}) is not supported, only unsigned byte (0x08)"
        ));
    }
    let ndims = bytes[3] as usize;
    let data_start = 4 + 4 * ndims;
    if bytes.len() < data_start {
        return Err(format!(
            "truncated header: {ndims} dimensions need {data_start} bytes, file has {}",
            bytes.len()
        ));
    }
    let dims: Vec<usize> = bytes[4..data_start]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes")) as usize)
        .collect();
    let want = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("dimensions {dims:?} overflow"))?;
    let have = bytes.len() - data_start;
    if have != want {
        return Err(format!(
            "dimensions {dims:?} need {want} data bytes, file has {have}{}",
            if have < want {
                " (truncated)"
            } else {
                " (trailing data)"
            }
        ));
    }
    Ok(Idx {
        dims,
        data: bytes[data_start..].to_vec(),
    })
}

/// Reads an image file: a 3-D unsigned-byte IDX array.
pub fn read_images(path: impl AsRef<Path>) -> Result<Images, DataError> {
    let path = path.as_ref();
    let idx = read(path)?;
    match idx.dims[..] {
        [count, rows, cols] => Ok(Images {
            count,
            rows,
            cols,
            pixels: idx.data,
        }),
        _ => Err(DataError::format(
            path,
            format!(
                "an image file has 3 dimensions [n, rows, cols], this one has {:?}",
                idx.dims
            ),
        )),
    }
}

/// Reads a label file: a 1-D unsigned-byte IDX array.
pub fn read_labels(path: impl AsRef<Path>) -> Result<Vec<u8>, DataError> {
    let path = path.as_ref();
    let idx = read(path)?;
    if idx.dims.len() != 1 {
        return Err(DataError::format(
            path,
            format!("a label file has 1 dimension, this one has {:?}", idx.dims),
        ));
    }
    Ok(idx.data)
}
