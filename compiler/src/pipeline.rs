//! The approximation pipeline: from an exact tensor graph to its FHE-ready
//! polynomial form. Each stage is a pure function of its input; the
//! pipeline keeps every intermediate graph so tests can snapshot each one.
//!
//! 1. `fold-affine`: BatchNorm (and per-channel Mul/Add by constants) folded
//!    into the neighbouring convolution or linear layer.
//! 2. `calibrate`: the largest |x| at each ReLU / max-pool input on the
//!    calibration data, times the margin, is the layer's bound B.
//! 3. `approximate`: ReLU → ApproxRelu{α, B}, MaxPool → ApproxMaxPool{α, B}.
//! 4. `normalize`: the B scalings folded into neighbouring layers so that
//!    the polynomials see `[−1, 1]` (see [`crate::passes::normalize`]).
//! 5. `simplify`: explicit scalar products folded by egg.

use ir::{CompositeSign, Graph, Tensor};
use serde::{Deserialize, Serialize};

use crate::minimax::{self, Cache, Mode, Objective, Request};
use crate::passes::{
    approximate, collect_ranges, fold_affine, normalize_ranges, simplify, AlphaPlan,
    ApproximateError, CalibrateError, Calibration, NormalizeReport, SignApproximations,
    SimplifyReport,
};

/// The default calibration margin: `B = 1.1 × observed max`. Measured
/// (examples/models/README.md): with 10,000 calibration images no test input
/// of the three example models left its bound at 1.1, while 1.0 gave
/// hundreds of overflows; the margin costs only log2(1.1) ≈ 0.14 bit.
pub const DEFAULT_MARGIN: f64 = 1.1;

/// The degree cap of the minimax search (the published sets use ≤ 29).
pub const MAX_DEGREE: usize = 31;

/// Polynomials from the minimax engine, served from its on-disk cache.
pub struct MinimaxSource {
    pub cache: Cache,
    pub objective: Objective,
}

impl Default for MinimaxSource {
    fn default() -> Self {
        Self {
            cache: Cache::from_env(),
            objective: Objective::MinDepth,
        }
    }
}

impl MinimaxSource {
    fn relu(&self, alpha: u32) -> Result<minimax::ReluApprox, String> {
        let request = Request {
            alpha,
            mode: Mode::Relu,
            objective: self.objective,
            max_degree: MAX_DEGREE,
        };
        match self.cache.get(&request).map_err(|e| e.to_string())?.0 {
            minimax::Approximation::Relu(r) => Ok(r),
            minimax::Approximation::Sign(_) => Err("cache returned a sign-mode result".into()),
        }
    }
}

/// Converts the engine's components (coefficients of `T_1, T_3, …` on
/// `[−1, 1]`) into the IR's full Chebyshev vectors.
pub fn composite_sign(sign: &minimax::SignApprox) -> CompositeSign {
    CompositeSign {
        alpha: sign.alpha,
        epsilon: sign.epsilon,
        components: sign.components.iter().map(|c| c.chebyshev()).collect(),
    }
}

impl SignApproximations for MinimaxSource {
    fn relu_sign(&self, alpha: u32) -> Result<CompositeSign, String> {
        Ok(composite_sign(&self.relu(alpha)?.sign))
    }

    fn maxpool_input_scale(
        &self,
        kernel: [usize; 2],
        alpha: u32,
        bound: f64,
    ) -> Result<f64, String> {
        let margin = minimax::pool::window_margin(kernel);
        Ok((1.0 - margin * 2f64.powi(-(alpha as i32))) / (2.0 * bound))
    }
}

/// Options of the pipeline.
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    pub alphas: AlphaPlan,
    pub margin: f64,
}

/// Everything the pipeline measured, for reports.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PipelineReport {
    pub folded_affine: usize,
    pub calibration: Calibration,
    pub approximated: usize,
    pub normalize: NormalizeReport,
    pub simplify: SimplifyReport,
}

/// The graph after each stage, in order, named.
pub struct Stages {
    pub stages: Vec<(&'static str, Graph)>,
    pub report: PipelineReport,
}

impl Stages {
    /// The final graph.
    pub fn output(&self) -> &Graph {
        &self.stages.last().expect("stages").1
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("calibration: {0}")]
    Calibrate(#[from] CalibrateError),
    #[error("approximation: {0}")]
    Approximate(#[from] ApproximateError),
}

/// The α-independent part: the exact graph with affine maps folded, and
/// its calibrated ranges.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub frontend: Graph,
    pub folded: Graph,
    pub folded_affine: usize,
    pub calibration: Calibration,
}

/// Folds affine maps and calibrates on `calibration` (batches of inputs).
pub fn prepare(
    graph: &Graph,
    calibration: impl IntoIterator<Item = Tensor>,
    margin: f64,
) -> Result<Prepared, PipelineError> {
    let mut folded = graph.clone();
    let folded_affine = fold_affine(&mut folded);
    let calibration = collect_ranges(&folded, calibration, Some(margin))?;
    Ok(Prepared {
        frontend: graph.clone(),
        folded,
        folded_affine,
        calibration,
    })
}

/// The α-dependent part: approximation, normalisation, simplification.
pub fn approximate_prepared(
    prepared: &Prepared,
    alphas: &AlphaPlan,
    source: &dyn SignApproximations,
) -> Result<Stages, PipelineError> {
    let mut g = prepared.folded.clone();
    let mut stages = vec![
        ("frontend", prepared.frontend.clone()),
        ("fold-affine", g.clone()),
    ];
    let approximated = approximate(&mut g, &prepared.calibration, alphas, source)?;
    stages.push(("approximate", g.clone()));
    let normalize = normalize_ranges(&mut g);
    stages.push(("normalize", g.clone()));
    let (g, simplify) = simplify(&g);
    stages.push(("simplify", g));
    Ok(Stages {
        stages,
        report: PipelineReport {
            folded_affine: prepared.folded_affine,
            calibration: prepared.calibration.clone(),
            approximated,
            normalize,
            simplify,
        },
    })
}

/// Runs every stage on `graph` with calibration data `calibration`.
pub fn run(
    graph: &Graph,
    calibration: impl IntoIterator<Item = Tensor>,
    options: &PipelineOptions,
    source: &dyn SignApproximations,
) -> Result<Stages, PipelineError> {
    let prepared = prepare(graph, calibration, options.margin)?;
    approximate_prepared(&prepared, &options.alphas, source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::reference::synthetic;

    fn inputs(shape: &[usize], n: usize, seed: u64) -> Tensor {
        let mut rng = synthetic::SplitMix64::new(seed);
        let mut s = shape.to_vec();
        s[0] = n;
        let len = ir::numel(&s);
        Tensor::new(s, (0..len).map(|_| rng.uniform(-1.0, 1.0) as f32).collect()).unwrap()
    }

    /// LeNet-5 (max-pooling) at α = 14: every stage is a valid graph, the
    /// approximated model tracks the exact one to the method's error bound,
    /// and the calibration saw no overflow on its own data.
    #[test]
    fn lenet_alpha14_tracks_the_exact_model() {
        let graph = synthetic::lenet5(10, 7).unwrap();
        let shape = graph.node(graph.inputs()[0]).shape.clone();
        let calib = inputs(&shape, 64, 1);
        let dir = std::env::temp_dir().join(format!("precis-pipeline-{}", std::process::id()));
        let source = MinimaxSource {
            cache: Cache::at(&dir),
            objective: Objective::MinDepth,
        };
        let options = PipelineOptions {
            alphas: AlphaPlan::uniform(14),
            margin: DEFAULT_MARGIN,
        };
        let stages = run(&graph, [calib.clone()], &options, &source).unwrap();
        let names: Vec<&str> = stages.stages.iter().map(|s| s.0).collect();
        assert_eq!(
            names,
            [
                "frontend",
                "fold-affine",
                "approximate",
                "normalize",
                "simplify"
            ]
        );
        for (name, g) in &stages.stages {
            g.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let out = stages.output();
        let counts = out.op_counts();
        assert_eq!(counts.get("Relu"), None);
        assert_eq!(counts.get("MaxPool"), None);
        assert_eq!(stages.report.approximated, 6);
        // On the calibration data itself nothing exceeds its bound.
        let check = collect_ranges(out, [calib.clone()], None).unwrap();
        assert_eq!(check.total_overflows(), 0, "{check:?}");
        // Outputs agree with the exact model.
        let test = inputs(&shape, 16, 2);
        let exact = runtime::reference::run(&graph, std::slice::from_ref(&test)).unwrap();
        let approx = runtime::reference::run(out, std::slice::from_ref(&test)).unwrap();
        let scale = exact[0].data.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = exact[0]
            .data
            .iter()
            .zip(&approx[0].data)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff < 1e-2 * scale, "max diff {diff} vs scale {scale}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
