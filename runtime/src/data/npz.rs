//! NumPy `.npz` archives (`np.savez`, stored, and `np.savez_compressed`,
//! deflated): a zip file of `.npy` members.

use super::{npy, DataError};
use ir::Tensor;
use std::io::Read;
use std::path::Path;

/// Reads every array of an `.npz` file, in archive order, named as NumPy
/// names them (the member name without its `.npy` suffix).
pub fn read(path: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>, DataError> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    read_from(std::io::BufReader::new(file)).map_err(|msg| DataError::format(path, msg))
}

/// [`read`] from the bytes of an `.npz` file in memory.
pub fn decode(bytes: &[u8]) -> Result<Vec<(String, Tensor)>, String> {
    read_from(std::io::Cursor::new(bytes))
}

/// Bytes reserved up front for a member: its recorded size is only a hint
/// from the archive, so at most this much is trusted before the bytes arrive.
const MAX_RESERVE: u64 = 1 << 20;

fn read_from<R: Read + std::io::Seek>(r: R) -> Result<Vec<(String, Tensor)>, String> {
    let mut archive =
        zip::ZipArchive::new(r).map_err(|e| format!("not a readable .npz (zip) archive: {e}"))?;
    let mut out = Vec::new();
    for i in 0..archive.len() {
        let mut member = archive
            .by_index(i)
            .map_err(|e| format!("member #{i}: {e}"))?;
        if member.is_dir() {
            continue;
        }
        let name = member.name().to_string();
        // Quoted with control characters escaped: messages are one line.
        let shown = name.escape_debug().to_string();
        let key = name
            .strip_suffix(".npy")
            .ok_or_else(|| format!("member `{shown}` is not a .npy file"))?;
        let mut bytes = Vec::with_capacity(member.size().min(MAX_RESERVE) as usize);
        let read_err = |e: std::io::Error| format!("member `{shown}`: {e}");
        // Up to the header, then at most one byte past the size it
        // announces: a deflate bomb cannot make this read more than that.
        (&mut member)
            .take(12)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        if let Ok(Some((_, header_end))) = npy::header_end(&bytes) {
            let more = header_end.saturating_sub(bytes.len()) as u64;
            (&mut member)
                .take(more)
                .read_to_end(&mut bytes)
                .map_err(read_err)?;
        }
        if let Ok(Some(total)) = npy::announced_len(&bytes) {
            let more = (total.saturating_sub(bytes.len()) as u64).saturating_add(1);
            (&mut member)
                .take(more)
                .read_to_end(&mut bytes)
                .map_err(read_err)?;
        }
        let t = npy::decode(&bytes).map_err(|msg| format!("member `{shown}`: {msg}"))?;
        out.push((key.to_string(), t));
    }
    Ok(out)
}
