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
