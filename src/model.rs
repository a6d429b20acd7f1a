//! Model loading shared by the subcommands.

use anyhow::{anyhow, bail, Context, Result};
use ir::Tensor;
use runtime::data::{fashion_mnist, Preprocess};
use std::path::{Path, PathBuf};

/// Parses an input shape written `1,3,32,32` (or `1x3x32x32`).
pub fn parse_shape(s: &str) -> Result<Vec<usize>, String> {
    s.split([',', 'x'])
        .map(|d| {
            d.trim()
                .parse::<usize>()
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| format!("'{d}' is not a positive dimension in shape '{s}'"))
        })
        .collect()
}

/// Reads an ONNX model into the IR; errors name the file.
pub fn load_onnx(path: &Path, input_shape: Option<Vec<usize>>) -> Result<ir::Graph> {
    compiler::frontend::load(path, input_shape).with_context(|| format!("{}", path.display()))
}

/// Calibration options shared by `accuracy`, `compile` and `infer`.
#[derive(clap::Args, Clone, Debug)]
pub struct CalibArgs {
    /// Calibration data for the ranges B: `fashion-mnist` (the training
    /// split, preprocessed as MODEL.json says), or an .npy/.npz of
    /// preprocessed inputs (array `x` in an .npz).
    #[arg(long, default_value = "fashion-mnist")]
    pub calib: String,
    /// Calibration samples used (from the start of the calibration data).
    #[arg(long, default_value_t = 10_000)]
    pub calib_limit: usize,
    /// B = observed max |x| × margin.
    #[arg(long, default_value_t = compiler::pipeline::DEFAULT_MARGIN)]
    pub margin: f64,
    /// Model description with the normalisation (default: MODEL.json).
    #[arg(long)]
    pub preprocess: Option<PathBuf>,
    /// Where Debian's dataset-fashion-mnist puts the IDX files.
    #[arg(long, default_value = runtime::data::fashion_mnist::DEFAULT_DIR)]
    pub data_dir: PathBuf,
}

impl CalibArgs {
    /// The model's preprocessing description.
    pub fn preprocess(&self, model: &Path) -> Result<Preprocess> {
        let path = self
            .preprocess
            .clone()
            .unwrap_or_else(|| model.with_extension("json"));
        Preprocess::load(&path)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("{} needs its preprocessing description", model.display()))
    }

    /// The calibration inputs.
    pub fn inputs(&self, model: &Path) -> Result<Tensor> {
        if self.calib == "fashion-mnist" {
            let pre = self.preprocess(model)?;
            let ds = fashion_mnist::load(&self.data_dir, fashion_mnist::Split::Train)
                .map_err(|e| anyhow!("{e}"))?;
            let n = ds.len().min(self.calib_limit);
            let side = fashion_mnist::SIDE;
            return pre
                .apply(&ds.images[..n * side * side], n)
                .map_err(|e| anyhow!("{e}"));
        }
        let path = Path::new(&self.calib);
        let x = if path.extension().is_some_and(|e| e == "npz") {
            npz_array(&read_npz(path)?, path, "x")?
        } else {
            runtime::data::npy::read(path).map_err(|e| anyhow!("{e}"))?
        };
        let n = x.shape.first().copied().unwrap_or(0).min(self.calib_limit);
        if n == 0 {
            bail!("{}: no calibration samples", path.display());
        }
        Ok(slice_batch(&x, 0..n))
    }
}

/// Samples `range` of a batched tensor.
pub fn slice_batch(t: &Tensor, range: std::ops::Range<usize>) -> Tensor {
    let per: usize = t.shape[1..].iter().product();
    let mut shape = t.shape.clone();
    shape[0] = range.len();
    Tensor {
        shape,
        data: t.data[range.start * per..range.end * per].to_vec(),
    }
}

/// A batched tensor cut into batches of at most `batch` samples.
pub fn batches(t: &Tensor, batch: usize) -> impl Iterator<Item = Tensor> + '_ {
    let n = t.shape[0];
    (0..n.div_ceil(batch)).map(move |i| slice_batch(t, i * batch..((i + 1) * batch).min(n)))
}

/// Parses a per-layer precision `NODE=ALPHA`.
pub fn parse_layer_alpha(s: &str) -> Result<(String, u32), String> {
    let (name, a) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("'{s}' is not NODE=ALPHA"))?;
    let a: u32 = a
        .parse()
        .map_err(|_| format!("'{a}' in '{s}' is not a precision α"))?;
    if !(4..=20).contains(&a) {
        return Err(format!("α = {a} in '{s}' is outside 4..=20"));
    }
    Ok((name.trim_start_matches('%').to_string(), a))
}

/// Reads every array of an .npz archive.
pub fn read_npz(path: &Path) -> Result<Vec<(String, Tensor)>> {
    runtime::data::npz::read(path).map_err(|e| anyhow!("{e}"))
}

/// The array named `name` (or `name.npy`) of an .npz archive read from `path`.
pub fn npz_array(arrays: &[(String, Tensor)], path: &Path, name: &str) -> Result<Tensor> {
    arrays
        .iter()
        .find(|(n, _)| n == name || *n == format!("{name}.npy"))
        .map(|(_, t)| t.clone())
        .ok_or_else(|| anyhow!("{}: no array '{name}'", path.display()))
}

/// Preprocessed inputs `x` and integer class labels `y` from an .npz; errors
/// name the file.
pub fn read_labelled_npz(path: &Path) -> Result<(Tensor, Vec<u8>)> {
    let arrays = read_npz(path)?;
    let get = |k: &str| npz_array(&arrays, path, k).context("expected 'x' inputs and 'y' labels");
    let (x, y) = (get("x")?, get("y")?);
    if x.shape.first() != Some(&y.len()) {
        bail!(
            "{}: {} inputs but {} labels",
            path.display(),
            x.shape.first().unwrap_or(&0),
            y.len()
        );
    }
    let y = y
        .data
        .iter()
        .map(|&v| {
            if (0.0..256.0).contains(&v) && v.fract() == 0.0 {
                Ok(v as u8)
            } else {
                Err(anyhow!(
                    "{}: label {v} is not a class index",
                    path.display()
                ))
            }
        })
        .collect::<Result<Vec<u8>>>()?;
    Ok((x, y))
}
