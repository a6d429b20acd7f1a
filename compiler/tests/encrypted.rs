//! Circuits on the CKKS backend at the explicitly insecure test preset
//! `insecure-n11` (levels9's chain at N = 2^11): the encrypted result
//! equals the simulation's within CKKS noise, bootstraps included.

use compiler::frontend::builder::OnnxBuilder;
use compiler::frontend::load_bytes;
use compiler::lower::{lower, LowerOptions, PresetParams};
use compiler::minimax::{Cache, Objective};
use compiler::passes::AlphaPlan;
use compiler::pipeline::{self, MinimaxSource, PipelineOptions};
use ir::Tensor;
use runtime::backend::{execute, Prepared, Quiet};
use runtime::ckks::bootstrapping::presets::Preset;
use runtime::ckks::KeyGenerator;
use runtime::encrypted::{CircuitContext, CkksBackend, EncryptionKey};
use runtime::reference::synthetic::SplitMix64;
use runtime::simulate::run_samples;

fn inputs(shape: &[usize], n: usize, seed: u64) -> Tensor {
    let mut rng = SplitMix64::new(seed);
    let mut s = shape.to_vec();
    s[0] = n;
    let len = ir::numel(&s);
    Tensor::new(s, (0..len).map(|_| rng.uniform(-1.0, 1.0) as f32).collect()).unwrap()
}

#[test]
fn a_small_cnn_runs_encrypted_as_simulated() {
    // conv → ReLU → conv → ReLU (→ residual) → max-pool → ReLU → GAP → FC:
    // deeper than a fresh ciphertext, so bootstraps are placed.
    let mut b = OnnxBuilder::new("small", 13, 11);
    let x = b.input("input", &[1, 1, 8, 8]);
    let y = b.conv("c1", &x, 2, 3, 1, 1, true);
    let y1 = b.relu("r1", &y);
    let y = b.conv("c2", &y1, 2, 3, 1, 1, true);
    let y = b.add("res", &y, &y1);
    let y = b.relu("r2", &y);
    let y = b.max_pool("mp", &y, 2, 2, 0);
    let y = b.conv("c3", &y, 2, 3, 1, 1, true);
    let y = b.relu("r3", &y);
    let y = b.global_avg_pool("gap", &y);
    let y = b.flatten("flat", &y);
    let y = b.linear("fc", &y, 3);
    b.output(&y);
    let g = load_bytes(&b.to_bytes(), None).unwrap();
    let shape = g.node(g.inputs()[0]).shape.clone();
    let source = MinimaxSource {
        cache: Cache::from_env(),
        objective: Objective::MinDepth,
    };
    let opts = PipelineOptions {
        alphas: AlphaPlan::uniform(6),
        margin: pipeline::DEFAULT_MARGIN,
    };
    let approx = pipeline::run(&g, [inputs(&shape, 32, 1)], &opts, &source)
        .unwrap()
        .output()
        .clone();
    let lowered = lower(
        &approx,
        &LowerOptions {
            name: "small".into(),
            params: &PresetParams(Preset::InsecureN11),
            input_range: None,
            preprocess: None,
        },
    )
    .unwrap();
    let c = lowered.circuit;
    assert!(c.stats().bootstraps >= 1, "the test must bootstrap");

    let mut x = inputs(&shape, 1, 2);
    x.data.iter_mut().for_each(|v| *v *= 0.9);
    let prepared = Prepared::new(c.clone()).unwrap();
    let simulated = run_samples(&prepared, &x.data, 1, 1, None).unwrap();

    assert!(!c.params.secure);
    let ctx = CircuitContext::new(&c).unwrap();
    let mut kg = KeyGenerator::new(&ctx.params).unwrap();
    let sk = kg.gen_secret_key();
    let pk = kg.gen_public_key(&sk);
    let keys = ctx.gen_keys(&mut kg, &sk, &c).unwrap();
    let layout = &c.layouts[c.input.layout as usize];
    let data: Vec<f64> = x.data.iter().map(|&v| v as f64).collect();
    let cts = ctx
        .encrypt(&c, &layout.pack(&data), EncryptionKey::Public(&pk))
        .unwrap();
    let backend = CkksBackend::new(&ctx, &keys);
    let out = execute(&backend, &prepared, cts, &Quiet).unwrap_or_else(|e| panic!("{e}"));
    let slots = ctx.decrypt(&sk, &out);
    let got = c.layouts[c.output.layout as usize].unpack(&slots);
    let worst = got
        .iter()
        .zip(&simulated[0])
        .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    let scale = simulated[0].iter().fold(0f64, |m, v| m.max(v.abs()));
    eprintln!(
        "{} bootstraps; encrypted {got:?} vs simulated {:?}: largest difference {worst:.2e}",
        c.stats().bootstraps,
        simulated[0]
    );
    assert!(worst < 1e-3 * scale.max(1.0), "{worst}");
}
