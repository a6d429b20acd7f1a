//! Test support for the passes: deterministic random weights and a runner.

use ir::{CompositeSign, Conv2d, Graph, OddChebyshev, Op, Pads2d, Tensor};

/// splitmix64: a tiny deterministic generator for test weights.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }

    pub fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub fn rng_tensor(shape: Vec<usize>, seed: u64, lo: f64, hi: f64) -> Tensor {
    let mut r = Rng::new(seed);
    let n = ir::numel(&shape);
    let data = (0..n)
        .map(|_| (lo + (hi - lo) * r.next_f64()) as f32)
        .collect();
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
