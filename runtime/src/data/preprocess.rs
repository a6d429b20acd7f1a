//! The description written next to each trained model
//! (`examples/models/<model>.json`) and the input normalisation it records.

use super::DataError;
use ir::Tensor;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

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

/// The most values a model input may have (`[1, C, H, W]`, 16 GiB as f32).
const MAX_INPUT_VALUES: usize = 1 << 32;

/// A trained model's description and input pipeline, e.g.
///
/// ```json
/// {"model": "lenet5", "dataset": "fashion-mnist", "input_shape": [1,1,28,28],
///  "pad": 0, "mean": [0.2860], "std": [0.3530], "test_accuracy": 0.9123,
///  "epochs": 20, "params": 61706}
/// ```
///
/// The pipeline is torchvision's `Pad(pad)` → `ToTensor()` →
/// `Normalize(mean, std)`: raw pixels are zero-padded by `pad` on every side,
/// scaled by 1/255 and normalised per channel. `input_shape` is the model's
/// input, i.e. after padding: raw images are `[C, H − 2·pad, W − 2·pad]`.
/// Every field is required and unknown fields are refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocess {
    pub model: String,
    pub dataset: String,
    /// `[1, C, H, W]`, the model input after padding.
    pub input_shape: Vec<usize>,
    /// Zero pixels added on each side before normalisation.
    pub pad: usize,
    /// Per-channel mean of the scaled ([0, 1]) training pixels.
    pub mean: Vec<f64>,
    /// Per-channel standard deviation of the scaled training pixels.
    pub std: Vec<f64>,
    /// Accuracy of the trained (unapproximated) model on the test split, in [0, 1].
    pub test_accuracy: f64,
    pub epochs: usize,
    pub params: usize,
}

impl Preprocess {
    /// Reads and checks a model description.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, DataError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        Self::from_json(&text).map_err(|msg| DataError::format(path, msg))
    }

    /// Parses and checks a model description.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let mut de = serde_json::Deserializer::from_str(text);
        let p: Preprocess = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let msg = if path == "." {
                format!("invalid model description: {}", e.inner())
            } else {
                format!("invalid model description: field `{path}`: {}", e.inner())
            };
            // Field names come from the file: control characters escaped
            // (found by fuzzing: a newline in a key split the message).
            one_line(&msg)
        })?;
        de.end()
            .map_err(|e| format!("invalid model description: {e}"))?;
        p.validate()?;
        Ok(p)
    }

    /// Checks the fields against each other.
    pub fn validate(&self) -> Result<(), String> {
        let [b, c, h, w] = match self.input_shape[..] {
            [b, c, h, w] => [b, c, h, w],
            _ => {
                return Err(format!(
                    "input_shape must be [1, C, H, W], got {:?}",
                    self.input_shape
                ))
            }
        };
        if b != 1 || c == 0 {
            return Err(format!(
                "input_shape must be [1, C, H, W] with C ≥ 1, got {:?}",
                self.input_shape
            ));
        }
        // Sizes come from a file: their product must be a sane input size.
        let values = [b, c, h, w]
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&v| v <= MAX_INPUT_VALUES);
        if values.is_none() {
            return Err(format!(
                "input_shape {:?} has more than 2^32 values",
                self.input_shape
            ));
        }
        let two_pad = self.pad.saturating_mul(2);
        if h <= two_pad || w <= two_pad {
            return Err(format!(
                "pad {} leaves no image inside input_shape {:?}",
                self.pad, self.input_shape
            ));
        }
        for (name, v) in [("mean", &self.mean), ("std", &self.std)] {
            if v.len() != c {
                return Err(format!(
                    "{name} has {} value(s), input_shape has {c} channel(s)",
                    v.len()
                ));
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(format!("{name} {v:?} is not finite"));
            }
        }
        if self.std.iter().any(|&s| s as f32 <= 0.0) {
            return Err(format!("std {:?} must be positive", self.std));
        }
        if !(0.0..=1.0).contains(&self.test_accuracy) {
            return Err(format!(
                "test_accuracy {} is not a fraction in [0, 1]",
                self.test_accuracy
            ));
        }
        Ok(())
    }

    /// `[C, H − 2·pad, W − 2·pad]`: the shape of one raw image.
    pub fn raw_shape(&self) -> [usize; 3] {
        let s = &self.input_shape;
        [s[1], s[2] - 2 * self.pad, s[3] - 2 * self.pad]
    }

    /// Turns `n` raw images (`[n, C, h, w]` bytes, h and w from
    /// [`Preprocess::raw_shape`]) into the model input `[n, C, H, W]`.
    ///
    /// Each value is computed exactly as torchvision does in f32: padded
    /// pixels are raw 0; `x = p / 255` (`ToTensor`), then
    /// `(x − mean[c]) / std[c]` (`Normalize`, with mean and std rounded to
    /// f32), every step an IEEE f32 operation, i.e. the exact result rounded
    /// to f32 after each step (equivalently each step in f64 rounded to f32:
    /// one +, −, × or ÷ of f32 values is exact in f64), so inputs match the
    /// training script's bit for bit.
    pub fn apply(&self, images: &[u8], n: usize) -> Result<Tensor, DataError> {
        self.validate().map_err(DataError::Invalid)?;
        let [c, h, w] = self.raw_shape();
        let (ph, pw) = (self.input_shape[2], self.input_shape[3]);
        if Some(images.len()) != n.checked_mul(c * h * w) {
            return Err(DataError::Invalid(format!(
                "{}: {} bytes of pixels for {n} image(s) of {c}×{h}×{w}",
                self.model,
                images.len()
            )));
        }
        let mean: Vec<f32> = self.mean.iter().map(|&m| m as f32).collect();
        let std: Vec<f32> = self.std.iter().map(|&s| s as f32).collect();
        let norm = |p: u8, ch: usize| (p as f32 / 255.0 - mean[ch]) / std[ch];
        let pad = self.pad;
        let mut data = vec![0f32; n * c * ph * pw];
        if !data.is_empty() {
            // One plane per task; every output value is written.
            data.par_chunks_mut(ph * pw)
                .zip(images.par_chunks(h * w))
                .enumerate()
                .for_each(|(i, (out, plane))| {
                    let ch = i % c;
                    out.fill(norm(0, ch));
                    for (y, row) in plane.chunks_exact(w).enumerate() {
                        let o = (y + pad) * pw + pad;
                        for (d, &p) in out[o..o + w].iter_mut().zip(row) {
                            *d = norm(p, ch);
                        }
                    }
                });
        }
        Tensor::new(vec![n, c, ph, pw], data).map_err(|e| DataError::Invalid(e.to_string()))
    }
}
