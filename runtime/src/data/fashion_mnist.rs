//! The Fashion-MNIST data set (Xiao, Rasul, Vollgraf 2017): 28×28 greyscale
//! images of 10 classes of clothing, 60000 for training and 10000 for test,
//! as the four gzip-compressed IDX files of the original distribution.

use super::{idx, DataError};
use ir::Tensor;
use std::path::Path;

/// Where `apt-get install dataset-fashion-mnist` puts the files.
pub const DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Image side in pixels.
pub const SIDE: usize = 28;

/// The class names, by label.
pub const CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    /// The (images, labels) file names of the split.
    pub fn files(self) -> (&'static str, &'static str) {
        match self {
            Split::Train => ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
            Split::Test => ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
        }
    }

    /// Number of images the split holds.
    pub fn count(self) -> usize {
        match self {
            Split::Train => 60_000,
            Split::Test => 10_000,
        }
    }
}

/// One split: raw pixels `[n, 28, 28]` row-major and labels in `0..10`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i` (panics if `i >= len()`).
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * SIDE * SIDE..(i + 1) * SIDE * SIDE]
    }

    /// Pixels of images `range` as `[n, 1, 28, 28]`, scaled to `[0, 1]` the
    /// way torchvision's `ToTensor` does (`p as f32 / 255.0`), without
    /// normalisation; see [`super::Preprocess::apply`] for the full pipeline.
    /// Panics if `range` is not inside `0..len()`.
    pub fn tensor(&self, range: std::ops::Range<usize>) -> Tensor {
        let px = &self.images[range.start * SIDE * SIDE..range.end * SIDE * SIDE];
        Tensor {
            shape: vec![range.len(), 1, SIDE, SIDE],
            data: px.iter().map(|&p| p as f32 / 255.0).collect(),
        }
    }
}

/// Loads one split from `dir` (e.g. [`DEFAULT_DIR`]), checking counts,
/// image size and labels.
pub fn load(dir: impl AsRef<Path>, split: Split) -> Result<Dataset, DataError> {
    let dir = dir.as_ref();
    let (img_name, lbl_name) = split.files();
    let (img_path, lbl_path) = (dir.join(img_name), dir.join(lbl_name));
    for p in [&img_path, &lbl_path] {
        if let Err(source) = std::fs::metadata(p) {
            return Err(DataError::MissingDataset {
                path: p.clone(),
                source,
            });
        }
    }
    let images = idx::read_images(&img_path)?;
    if images.rows != SIDE || images.cols != SIDE {
        return Err(DataError::format(
            &img_path,
            format!(
                "images are {}×{}, Fashion-MNIST's are {SIDE}×{SIDE}",
                images.rows, images.cols
            ),
        ));
    }
    if images.count != split.count() {
        return Err(DataError::format(
            &img_path,
            format!(
                "{} images, the {split:?} split has {}",
                images.count,
                split.count()
            ),
        ));
    }
    let labels = idx::read_labels(&lbl_path)?;
    if labels.len() != images.count {
        return Err(DataError::format(
            &lbl_path,
            format!("{} labels for {} images", labels.len(), images.count),
        ));
    }
    if let Some(i) = labels.iter().position(|&l| l as usize >= CLASSES.len()) {
        return Err(DataError::format(
            &lbl_path,
            format!("label {} of image {i} is not in 0..10", labels[i]),
        ));
    }
    Ok(Dataset {
        images: images.pixels,
        labels,
    })
}
