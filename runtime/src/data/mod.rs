//! Data loading: NumPy `.npy`/`.npz` tensors, IDX image and label files,
//! the Fashion-MNIST data set and the input normalisation recorded next to
//! each trained model.

pub mod fashion_mnist;
pub mod idx;
pub mod npy;
pub mod npz;
mod preprocess;

pub use preprocess::Preprocess;

use std::path::{Path, PathBuf};

/// Why data could not be read or written. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {msg}", .path.display())]
    Format { path: PathBuf, msg: String },
    #[error(
        "Fashion-MNIST is not installed: {}: {source}; install it with \
         `apt-get install dataset-fashion-mnist` or pass the directory that holds \
         the four *-ubyte.gz files",
        .path.display()
    )]
    MissingDataset {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn format(path: &Path, msg: impl Into<String>) -> Self {
        DataError::Format {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
}

/// The index of the largest value of each row of `[N, K]` logits: the first
/// one on ties, a NaN counting as the largest (NumPy's `argmax(axis=1)`).
pub fn top1(logits: &ir::Tensor) -> Result<Vec<usize>, DataError> {
    let (n, k) = match logits.shape[..] {
        [n, k] if k > 0 && logits.data.len() == n * k => (n, k),
        _ => {
            return Err(DataError::Invalid(format!(
                "top-1 needs [N, K ≥ 1] logits, got shape {:?} with {} values",
                logits.shape,
                logits.data.len()
            )))
        }
    };
    Ok((0..n)
        .map(|i| {
            let row = &logits.data[i * k..(i + 1) * k];
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if row[best].is_nan() {
                    break;
                }
                if v.is_nan() || v > row[best] {
                    best = j;
                }
            }
            best
        })
        .collect())
}

/// The fraction of rows of `[N, K]` logits whose [`top1`] class is the label.
pub fn accuracy(logits: &ir::Tensor, labels: &[u8]) -> Result<f64, DataError> {
    let predicted = top1(logits)?;
    if predicted.len() != labels.len() {
        return Err(DataError::Invalid(format!(
            "{} rows of logits for {} labels",
            predicted.len(),
            labels.len()
        )));
    }
    if labels.is_empty() {
        return Err(DataError::Invalid("accuracy of no samples".into()));
    }
    let hits = predicted
        .iter()
        .zip(labels)
        .filter(|(p, &l)| **p == l as usize)
        .count();
    Ok(hits as f64 / labels.len() as f64)
}
