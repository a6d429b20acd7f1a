//! Test support for the passes: deterministic random weights and a runner.

use runtime::reference::synthetic::SplitMix64;

use ir::{CompositeSign, Conv2d, Graph, OddChebyshev, Op, Pads2d, Tensor};

pub fn rng_tensor(shape: Vec<usize>, seed: u64, lo: f64, hi: f64) -> Tensor {
    let mut r = SplitMix64::new(seed);
    let n = ir::numel(&shape);
    let data = (0..n).map(|_| r.uniform(lo, hi) as f32).collect();
    Tensor::new(shape, data).unwrap()
}

pub fn random_input(shape: &[usize], seed: u64) -> Tensor {
    rng_tensor(shape.to_vec(), seed, -1.0, 1.0)
}

pub fn conv(cin: usize, cout: usize, k: usize, stride: usize, pads: Pads2d, seed: u64) -> Op {
    let fan_in = (cin * k * k) as f64;
    let s = (3.0 / fan_in).sqrt();
    Op::Conv2d(Conv2d {
        weight: rng_tensor(vec![cout, cin, k, k], seed, -s, s),
        bias: Some(rng_tensor(vec![cout], seed + 100, -0.1, 0.1)),
        stride: [stride; 2],
        pads,
        dilation: [1, 1],
        group: 1,
    })
}

/// The first output of the reference executor.
pub fn run(graph: &Graph, input: &Tensor) -> Tensor {
    runtime::reference::run(graph, std::slice::from_ref(input))
        .unwrap()
        .remove(0)
}

/// max |a − b| / max(max |a|, tiny).
pub fn max_rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape, b.shape);
    let scale = a
        .data
        .iter()
        .fold(1e-12f64, |m, &v| m.max((v as f64).abs()));
    let diff = a
        .data
        .iter()
        .zip(&b.data)
        .fold(0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()));
    diff / scale
}

/// A crude one-component sign approximation (degree 7 Taylor-free odd
/// polynomial) for tests that only need a well-formed composite.
pub fn toy_sign() -> CompositeSign {
    CompositeSign {
        alpha: 4,
        epsilon: 0.1,
        components: vec![OddChebyshev {
            half_width: 1.0,
            coeffs: vec![0.0, 1.27, 0.0, -0.42, 0.0, 0.25, 0.0, -0.17],
        }],
    }
}
