//! NumPy `.npy` files (format versions 1.0, 2.0 and 3.0).
//!
//! Reading accepts C-order, little-endian (or byte-sized) arrays of f32, f64,
//! u8, i8, i32 and i64 and converts them to f32 (64-bit integers beyond 2^24
//! and f64 values are rounded to the nearest f32). Fortran order and
//! big-endian data are refused. Writing always produces version 1.0 (2.0 if
//! the header needs it), `<f4`, C order, atomically.

use super::DataError;
use ir::Tensor;
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

/// Reads a `.npy` file into an f32 tensor.
pub fn read(path: impl AsRef<Path>) -> Result<Tensor, DataError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode(&bytes).map_err(|msg| DataError::format(path, msg))
}

/// Decodes the bytes of a `.npy` file.
pub fn decode(bytes: &[u8]) -> Result<Tensor, String> {
    let (data_start, header, dtype, want) = parse_header(bytes)?;
    let data = &bytes[data_start..];
    if data.len() != want {
        return Err(format!(
            "{} of data for shape {:?} of {}, expected {want} bytes",
            if data.len() < want {
                format!("truncated: {} bytes", data.len())
            } else {
                format!("{} bytes (trailing garbage)", data.len())
            },
            header.shape,
            header.descr
        ));
    }
    let values = dtype.convert(data);
    Ok(Tensor {
        shape: header.shape,
        data: values,
    })
}

/// The length of the whole file its first bytes announce: `Ok(None)` while
/// `prefix` does not yet hold the magic, version, header length and header,
/// an error when what it holds is not a valid header. Lets a reader of an
/// archive member stop at the size the header announces.
pub fn announced_len(prefix: &[u8]) -> Result<Option<usize>, String> {
    let Some(start) = prefix_len(prefix)? else {
        return Ok(None);
    };
    if prefix.len() < start.1 {
        return Ok(None);
    }
    let (data_start, _, _, want) = parse_header(&prefix[..start.1])?;
    Ok(data_start.checked_add(want))
}

/// `(bytes before the header, bytes before the data)` once the length field
/// is present (`Ok(None)` before).
pub fn header_end(bytes: &[u8]) -> Result<Option<(usize, usize)>, String> {
    prefix_len(bytes)
}

fn prefix_len(bytes: &[u8]) -> Result<Option<(usize, usize)>, String> {
    if bytes.len() < MAGIC.len() + 2 {
        return Ok(None);
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a .npy file (bad magic string)".into());
    }
    let len_bytes = match bytes[6] {
        1 => 2,
        2 | 3 => 4,
        major => {
            return Err(format!(
                "unsupported .npy format version {major}.{}",
                bytes[7]
            ))
        }
    };
    let start = 8 + len_bytes;
    if bytes.len() < start {
        return Ok(None);
    }
    let header_len = if len_bytes == 2 {
        u16::from_le_bytes([bytes[8], bytes[9]]) as usize
    } else {
        u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
    };
    Ok(Some((start, start + header_len)))
}

/// Parses magic, version and header: (data offset, header, dtype, data bytes).
fn parse_header(bytes: &[u8]) -> Result<(usize, Header, Dtype, usize), String> {
    if bytes.len() < MAGIC.len() + 2 || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a .npy file (bad magic string)".into());
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (start, data_start) = prefix_len(bytes)?.ok_or("truncated header length")?;
    let utf8 = major == 3;
    if data_start > bytes.len() {
        return Err(format!(
            "truncated header: {} bytes announced, {} present",
            data_start - start,
            bytes.len() - start
        ));
    }
    let raw = &bytes[start..data_start];
    if !utf8 && !raw.is_ascii() {
        return Err(format!("version {major}.{minor} header is not ASCII"));
    }
    let text = std::str::from_utf8(raw).map_err(|_| "header is not UTF-8".to_string())?;
    let header = Header::parse(text)?;
    let dtype = Dtype::parse(&header.descr)?;
    if header.fortran_order {
        return Err("Fortran-order arrays are not supported; save with C order \
             (np.ascontiguousarray)"
            .into());
    }
    let count = header
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or("shape overflows")?;
    let want = count.checked_mul(dtype.size).ok_or("shape overflows")?;
    Ok((data_start, header, dtype, want))
}

/// Writes `t` as a version 1.0 `<f4` C-order `.npy` file, atomically: the
/// bytes go to a temporary file in the same directory, which is then renamed
/// over `path`.
pub fn write(path: impl AsRef<Path>, t: &Tensor) -> Result<(), DataError> {
    let path = path.as_ref();
    if t.data.len() != ir::numel(&t.shape) {
        return Err(DataError::Invalid(format!(
            "{}: tensor of shape {:?} holds {} values",
            path.display(),
            t.shape,
            t.data.len()
        )));
    }
    write_atomically(path, &encode(t))
}

/// The bytes of a `.npy` file holding `t` as `<f4`.
pub fn encode(t: &Tensor) -> Vec<u8> {
    let shape = match t.shape.len() {
        0 => "()".to_string(),
        1 => format!("({},)", t.shape[0]),
        _ => format!(
            "({})",
            t.shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic + version + length field + header + '\n', padded to 64 bytes;
    // version 2.0 only when the padded header overflows a u16 length.
    let (version, len_bytes) = if header.len() + 64 <= u16::MAX as usize {
        (1u8, 2usize)
    } else {
        (2u8, 4usize)
    };
    let unpadded = MAGIC.len() + 2 + len_bytes + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(unpadded + 64 + 4 * t.data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if len_bytes == 2 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    for v in &t.data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes `bytes` atomically (see [`ir::file::write_atomic_io`]).
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    ir::file::write_atomic_io(path, bytes).map_err(|e| DataError::io(path, e))
}

/// The parsed header dictionary.
#[derive(Debug)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

impl Header {
    /// Parses `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`
    /// (a Python dict literal; keys in any order, each exactly once).
    fn parse(text: &str) -> Result<Header, String> {
        let mut p = Lexer {
            s: text.trim_end_matches(['\n', ' ', '\0']).as_bytes(),
            i: 0,
        };
        let (mut descr, mut fortran, mut shape) = (None, None, None);
        p.expect(b'{')?;
        loop {
            if p.eat(b'}') {
                break;
            }
            let key = p.string()?;
            p.expect(b':')?;
            match key.as_str() {
                "descr" if descr.is_none() => descr = Some(p.string()?),
                "fortran_order" if fortran.is_none() => fortran = Some(p.boolean()?),
                "shape" if shape.is_none() => shape = Some(p.tuple()?),
                "descr" | "fortran_order" | "shape" => {
                    return Err(format!("header repeats key '{key}'"))
                }
                _ => return Err(format!("header has unknown key '{}'", key.escape_debug())),
            }
            if !p.eat(b',') {
                p.expect(b'}')?;
                break;
            }
        }
        p.skip_ws();
        if p.i != p.s.len() {
            return Err(format!("header: unexpected text after the dict: {text:?}"));
        }
        Ok(Header {
            descr: descr.ok_or("header lacks 'descr'")?,
            fortran_order: fortran.ok_or("header lacks 'fortran_order'")?,
            shape: shape.ok_or("header lacks 'shape'")?,
        })
    }
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl Lexer<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!(
                "header: expected '{}' at byte {}, found {}",
                c as char,
                self.i,
                self.s
                    .get(self.i)
                    .map_or("the end".to_string(), |b| format!("'{}'", *b as char))
            ))
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.skip_ws();
        let q = match self.s.get(self.i) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("header: expected a string at byte {}", self.i)),
        };
        let start = self.i + 1;
        let len = self.s[start..]
            .iter()
            .position(|&c| c == q)
            .ok_or("header: unterminated string")?;
        self.i = start + len + 1;
        Ok(String::from_utf8_lossy(&self.s[start..start + len]).into_owned())
    }

    fn word(&mut self) -> &[u8] {
        self.skip_ws();
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_alphanumeric() {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    fn boolean(&mut self) -> Result<bool, String> {
        match self.word() {
            b"True" => Ok(true),
            b"False" => Ok(false),
            w => Err(format!(
                "header: 'fortran_order' must be True or False, got {:?}",
                String::from_utf8_lossy(w)
            )),
        }
    }

    fn tuple(&mut self) -> Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            if self.eat(b')') {
                break;
            }
            let w = self.word();
            let text = String::from_utf8_lossy(w).into_owned();
            // Python 2 era files may write long integers as `3L`.
            let digits = text.strip_suffix('L').unwrap_or(&text);
            let d = digits
                .parse::<usize>()
                .map_err(|_| format!("header: bad dimension {text:?} in 'shape'"))?;
            dims.push(d);
            if !self.eat(b',') {
                self.expect(b')')?;
                break;
            }
        }
        Ok(dims)
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    F32,
    F64,
    U8,
    I8,
    I32,
    I64,
}

#[derive(Clone, Copy, Debug)]
struct Dtype {
    kind: Kind,
    size: usize,
}

impl Dtype {
    fn parse(raw: &str) -> Result<Dtype, String> {
        // Quoted in messages with control characters escaped (one line).
        let descr = &raw.escape_debug().to_string();
        // The byte-order character, then the code (split at a character
        // boundary: the header may be UTF-8).
        let first = descr.chars().next().map_or(0, char::len_utf8);
        let (order, code) = descr.split_at(first);
        let kind = match code {
            "f4" => Kind::F32,
            "f8" => Kind::F64,
            "u1" => Kind::U8,
            "i1" => Kind::I8,
            "i4" => Kind::I32,
            "i8" => Kind::I64,
            _ => {
                return Err(format!(
                    "unsupported dtype '{descr}' (supported: f4, f8, u1, i1, i4, i8)"
                ))
            }
        };
        let size: usize = code[1..].parse().expect("size digit");
        match order {
            "<" => {}
            "|" | "=" if size == 1 => {}
            ">" if size > 1 => {
                return Err(format!(
                    "big-endian dtype '{descr}' is not supported; convert with \
                     arr.astype(arr.dtype.newbyteorder('<'))"
                ))
            }
            ">" => {}
            _ => return Err(format!("unsupported byte order in dtype '{descr}'")),
        }
        Ok(Dtype { kind, size })
    }

    fn convert(&self, data: &[u8]) -> Vec<f32> {
        match self.kind {
            Kind::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect(),
            Kind::F64 => data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
                .collect(),
            Kind::U8 => data.iter().map(|&b| b as f32).collect(),
            Kind::I8 => data.iter().map(|&b| b as i8 as f32).collect(),
            Kind::I32 => data
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as f32)
                .collect(),
            Kind::I64 => data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
                .collect(),
        }
    }
}
