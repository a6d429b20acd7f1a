//! Precision statistics: how many bits of a result are correct.

use num_complex::Complex64;

#[derive(Clone, Copy, Debug)]
pub struct PrecisionStats {
    /// `-log2` of the largest absolute error over all slots.
    pub min_bits: f64,
    /// `-log2` of the mean absolute error.
    pub mean_bits: f64,
    pub max_error: f64,
}

/// Compares computed slots with the expected ones (absolute error, as Lattigo reports).
pub fn precision(want: &[Complex64], got: &[Complex64]) -> PrecisionStats {
    assert_eq!(want.len(), got.len());
    let errs: Vec<f64> = want.iter().zip(got).map(|(a, b)| (a - b).norm()).collect();
    let max_error =
        errs.iter().copied().fold(
            0.0,
            |m: f64, e| if e.is_nan() { f64::INFINITY } else { m.max(e) },
        );
    let mean = errs.iter().sum::<f64>() / errs.len() as f64;
    PrecisionStats {
        min_bits: -max_error.log2(),
        mean_bits: -mean.log2(),
        max_error,
    }
}

pub fn precision_real(want: &[f64], got: &[f64]) -> PrecisionStats {
    let w: Vec<Complex64> = want.iter().map(|&x| Complex64::new(x, 0.0)).collect();
    let g: Vec<Complex64> = got.iter().map(|&x| Complex64::new(x, 0.0)).collect();
    precision(&w, &g)
}
