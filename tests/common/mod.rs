//! Helpers shared by the CLI tests: temporary files and running the binary.

#![allow(dead_code)]

use compiler::frontend::builder::Rng;
use std::path::{Path, PathBuf};
use std::process::Output;

/// A fresh directory under cargo's per-test-target temporary directory.
pub fn tmp_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn precis(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_precis"))
        .args(args)
        .output()
        .expect("run precis")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a failed run with exactly one line on stderr; returns it.
pub fn one_line_error(o: &Output) -> String {
    assert!(!o.status.success(), "expected failure, got {}", stdout(o));
    let err = stderr(o);
    assert_eq!(err.lines().count(), 1, "stderr: {err}");
    assert!(err.starts_with("error: "), "{err}");
    err.trim_end().to_string()
}

/// A tensor of uniform values in [-1, 1).
pub fn random_tensor(shape: Vec<usize>, seed: u64) -> ir::Tensor {
    let n = shape.iter().product();
    let mut rng = Rng::new(seed);
    ir::Tensor::new(shape, rng.uniform_vec(n, -1.0, 1.0)).unwrap()
}

/// max |a - b| / max |b|.
pub fn rel_err(a: &ir::Tensor, b: &ir::Tensor) -> f64 {
    assert_eq!(a.shape, b.shape);
    let scale = b.data.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
    let diff = a
        .data
        .iter()
        .zip(&b.data)
        .fold(0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()));
    diff / scale.max(f64::MIN_POSITIVE)
}
