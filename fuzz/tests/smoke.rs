//! Every fuzz target, briefly (default test suite), and at length
//! (`#[ignore]`d: `cargo test -p precis-fuzz --release -- --ignored`, or the
//! `precis-fuzz` binary, see fuzz/README.md).

use precis_fuzz::{run, targets, Options};

fn check(name: &str, inputs: u64) {
    let target = targets::by_name(name).expect("target exists");
    let options = Options {
        inputs,
        seed: 0x5eed,
        crash_dir: std::env::temp_dir().join("precis-fuzz-crashes"),
        ..Options::default()
    };
    let r = run(&target, &options);
    assert!(
        r.findings.is_empty(),
        "{name}: {:?}",
        r.findings.first().map(|f| (&f.what, &f.file))
    );
    // The seeds parse, and mutations reach more than one refusal.
    assert!(
        r.accepted >= (target.seeds)().len() as u64,
        "{name}: seeds refused"
    );
    assert!(
        r.distinct_refusals > 3,
        "{name}: {} distinct refusals",
        r.distinct_refusals
    );
    eprintln!(
        "{name}: {} inputs, {:.0}/s, {} accepted, {} distinct refusals",
        r.inputs,
        r.inputs_per_second(),
        r.accepted,
        r.distinct_refusals
    );
}

macro_rules! smoke {
    ($($test:ident: $name:literal, $inputs:expr;)*) => {
        $(#[test]
        fn $test() {
            check($name, $inputs);
        })*
    };
}

smoke! {
    smoke_onnx: "onnx", 1500;
    smoke_ir_file: "ir-file", 3000;
    smoke_ckks_params: "ckks-params", 3000;
    smoke_ckks_ciphertext: "ckks-ciphertext", 3000;
    smoke_ckks_public_key: "ckks-public-key", 3000;
    smoke_ckks_secret_key: "ckks-secret-key", 3000;
    smoke_ckks_eval_keys: "ckks-eval-keys", 2000;
    smoke_ckks_bootstrap_keys: "ckks-bootstrap-keys", 2000;
    smoke_npy: "npy", 5000;
    smoke_npz: "npz", 3000;
    smoke_idx: "idx", 5000;
    smoke_preprocess_json: "preprocess-json", 5000;
}

#[test]
fn every_target_has_a_smoke_test() {
    let names: Vec<&str> = targets::all().iter().map(|t| t.name).collect();
    let src = include_str!("smoke.rs");
    for n in names {
        assert!(src.contains(&format!("\"{n}\", ")), "no smoke test for {n}");
    }
}

/// ≥ 10^6 inputs per target; a few hours on two cores (figures in BENCHMARKS.md).
#[test]
#[ignore]
fn long_run_every_target() {
    let inputs = std::env::var("PRECIS_FUZZ_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    for t in targets::all() {
        check(t.name, inputs);
    }
}
