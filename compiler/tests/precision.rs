//! The per-layer precision search (`--alpha auto`) on a synthetic LeNet-5
//! whose labels are its own exact predictions: the answer is verified
//! independently (accuracy by the reference executor, bootstraps by a full
//! lowering), is deterministic, and finds savings when the budget allows.

use compiler::lower::{lower, Estimator, LowerOptions, PresetParams};
use compiler::minimax::{Cache, Objective};
use compiler::passes::AlphaPlan;
use compiler::pipeline::{self, MinimaxSource, Prepared};
use compiler::precision::{search, SearchOptions, SearchReport, Validation};
use ir::Tensor;
use runtime::ckks::bootstrapping::presets::Preset;
use runtime::reference::synthetic::{self, SplitMix64};

fn inputs(shape: &[usize], n: usize, seed: u64, scale: f64) -> Tensor {
    let mut rng = SplitMix64::new(seed);
    let mut s = shape.to_vec();
    s[0] = n;
    let len = ir::numel(&s);
    Tensor::new(
        s,
        (0..len)
            .map(|_| (scale * rng.uniform(-1.0, 1.0)) as f32)
            .collect(),
    )
    .unwrap()
}

fn source() -> MinimaxSource {
    MinimaxSource {
        cache: Cache::from_env(),
        objective: Objective::MinDepth,
    }
}

struct Setup {
    prepared: Prepared,
    x: Tensor,
    y: Vec<u8>,
}

fn setup() -> Setup {
    let g = synthetic::lenet5(10, 7).unwrap();
    let shape = g.node(g.inputs()[0]).shape.clone();
    let calib = inputs(&shape, 200, 1, 1.0);
    let prepared = pipeline::prepare(&g, [calib], pipeline::DEFAULT_MARGIN).unwrap();
    // Validation inputs a little inside the calibration range; labels are
    // the exact model's own predictions (exact accuracy 100 %).
    let x = inputs(&shape, 300, 2, 0.9);
    let logits = runtime::reference::run(&prepared.folded, std::slice::from_ref(&x))
        .unwrap()
        .remove(0);
    let y = runtime::data::top1(&logits)
        .unwrap()
        .into_iter()
        .map(|c| c as u8)
        .collect();
    Setup { prepared, x, y }
}

fn run(s: &Setup, max_drop_pt: f64) -> SearchReport {
    let opts = SearchOptions {
        max_drop_pt,
        probe: 100,
        batch: 50,
        ..SearchOptions::default()
    };
    search(
        &s.prepared,
        &source(),
        &PresetParams(Preset::Levels16),
        &Validation { x: &s.x, y: &s.y },
        &opts,
        &mut |_| {},
    )
    .unwrap()
}

fn accuracy(s: &Setup, plan: &AlphaPlan) -> f64 {
    let g = pipeline::approximate_prepared(&s.prepared, plan, &source())
        .unwrap()
        .output()
        .clone();
    let logits = runtime::reference::run(&g, std::slice::from_ref(&s.x))
        .unwrap()
        .remove(0);
    let pred = runtime::data::top1(&logits).unwrap();
    pred.iter()
        .zip(&s.y)
        .filter(|(p, y)| **p == **y as usize)
        .count() as f64
        / s.y.len() as f64
}

fn lowered_bootstraps(s: &Setup, plan: &AlphaPlan) -> u32 {
    let g = pipeline::approximate_prepared(&s.prepared, plan, &source())
        .unwrap()
        .output()
        .clone();
    lower(
        &g,
        &LowerOptions {
            name: "lenet5".into(),
            params: &PresetParams(Preset::Levels16),
            input_range: None,
            preprocess: None,
        },
    )
    .unwrap()
    .report
    .bootstraps
}

#[test]
fn the_chosen_plan_holds_its_budget_and_its_bootstrap_count() {
    let s = setup();
    let r = run(&s, 1.0);
    assert_eq!(r.exact_accuracy, 1.0);
    assert_eq!(r.layers.len(), 6, "4 ReLU + 2 max-pool");
    // Never worse than uniform α = 14, and within the budget.
    assert!(r.chosen.bootstraps <= r.uniform.bootstraps);
    assert!(100.0 * (r.exact_accuracy - r.chosen.accuracy) <= 1.0 + 1e-9);
    // Independently: the reference executor's accuracy of the plan, and the
    // full lowering's bootstrap count.
    let plan = r.plan();
    assert_eq!(accuracy(&s, &plan), r.chosen.accuracy);
    assert_eq!(lowered_bootstraps(&s, &plan), r.chosen.bootstraps);
    assert_eq!(
        lowered_bootstraps(&s, &AlphaPlan::uniform(14)),
        r.uniform.bootstraps
    );
    // Every layer's choice is reported with its depth and reason.
    for l in &r.layers {
        assert_eq!(plan.alpha_for(&l.name), l.alpha);
        assert!(l.floor <= l.alpha && l.alpha <= 14, "{l:?}");
        assert!(!l.why.is_empty());
    }
    // Deterministic.
    let again = run(&s, 1.0);
    assert_eq!(again.chosen.alphas, r.chosen.alphas);
    assert_eq!(again.chosen.bootstraps, r.chosen.bootstraps);
}

#[test]
fn a_generous_budget_buys_fewer_bootstraps_and_none_keeps_uniform_precision() {
    let s = setup();
    let loose = run(&s, 100.0);
    assert!(
        loose.chosen.bootstraps < loose.uniform.bootstraps,
        "{} vs {}",
        loose.chosen.bootstraps,
        loose.uniform.bootstraps
    );
    assert!(loose.chosen.alphas.values().all(|&a| a < 14));
    // A budget below what any lowering costs keeps what passes: never a
    // plan less accurate than allowed.
    let strict = run(&s, 0.0);
    assert!(strict.chosen.accuracy >= strict.exact_accuracy - 1e-12);
}

#[test]
fn the_estimator_agrees_with_the_lowering_on_every_alpha() {
    let s = setup();
    let g14 = pipeline::approximate_prepared(&s.prepared, &AlphaPlan::uniform(14), &source())
        .unwrap()
        .output()
        .clone();
    let est = Estimator::new(&g14, &PresetParams(Preset::Levels16)).unwrap();
    for alpha in [6, 9, 12] {
        let plan = AlphaPlan::uniform(alpha);
        let g = pipeline::approximate_prepared(&s.prepared, &plan, &source())
            .unwrap()
            .output()
            .clone();
        let e = est.estimate(&g).unwrap();
        assert_eq!(e.bootstraps, lowered_bootstraps(&s, &plan), "α = {alpha}");
    }
    // A graph of another structure is refused.
    let other = synthetic::resnet20([1, 28, 28], 10, 3).unwrap();
    let calib = inputs(&[1, 1, 28, 28], 8, 1, 1.0);
    let p = pipeline::prepare(&other, [calib], pipeline::DEFAULT_MARGIN).unwrap();
    let g = pipeline::approximate_prepared(&p, &AlphaPlan::uniform(14), &source())
        .unwrap()
        .output()
        .clone();
    let err = est.estimate(&g).unwrap_err().to_string();
    assert!(err.contains("structure"), "{err}");
}
