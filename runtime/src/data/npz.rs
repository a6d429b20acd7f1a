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
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| DataError::format(path, format!("not a readable .npz (zip) archive: {e}")))?;
    let mut out = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let mut member = archive
            .by_index(i)
            .map_err(|e| DataError::format(path, format!("member #{i}: {e}")))?;
        if member.is_dir() {
            continue;
        }
        let name = member.name().to_string();
        let key = name.strip_suffix(".npy").ok_or_else(|| {
            DataError::format(path, format!("member `{name}` is not a .npy file"))
        })?;
        let mut bytes = Vec::with_capacity(member.size().min(1 << 30) as usize);
        member
            .read_to_end(&mut bytes)
            .map_err(|e| DataError::format(path, format!("member `{name}`: {e}")))?;
        let t = npy::decode(&bytes)
            .map_err(|msg| DataError::format(path, format!("member `{name}`: {msg}")))?;
        out.push((key.to_string(), t));
    }
    Ok(out)
}
