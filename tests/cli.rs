//! The `precis` binary: inspect, compile, infer, and their errors.

mod common;

use common::*;
use compiler::frontend::builder::{Attr, OnnxBuilder};
use compiler::frontend::zoo::{self, ZooOptions};
use runtime::data::npy;
use std::path::PathBuf;

fn write_lenet(dir: &std::path::Path) -> PathBuf {
    let p = dir.join("lenet5.onnx");
    std::fs::write(&p, zoo::lenet5(&ZooOptions::default()).bytes).unwrap();
    p
}

#[test]
fn inspect_table_and_json() {
    let dir = tmp_dir("cli-inspect");
    let m = write_lenet(&dir);
    let out = precis(&["inspect", m.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("parameters     61706"), "{text}");
    assert!(text.contains("ReLU nodes     4"), "{text}");
    assert!(text.contains("max-pool nodes 2"), "{text}");
    assert!(text.contains("%/conv1/Conv"), "{text}");
    assert!(text.contains("1->6 5x5 /1x1 pad 2,2,2,2"), "{text}");

    let out = precis(&["inspect", m.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["params"], 61706);
    assert_eq!(v["relu"], 4);
    assert_eq!(v["max_pool"], 2);
    assert_eq!(v["inputs"][0]["shape"], serde_json::json!([1, 1, 28, 28]));
    assert_eq!(v["layers"].as_array().unwrap().len(), 12);
}

#[test]
fn compile_writes_a_checked_ir_file() {
    let dir = tmp_dir("cli-compile");
    let m = write_lenet(&dir);
    let out_path = dir.join("lenet5.pir");
    let out = precis(&[
        "compile",
        m.to_str().unwrap(),
        "-o",
        out_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let g = ir::file::load(&out_path).unwrap();
    let direct = compiler::frontend::load(&m, None).unwrap();
    assert_eq!(g.to_text(), direct.to_text());
    // Damaged copies are refused with one clear message each.
    let bytes = std::fs::read(&out_path).unwrap();
    let cut = ir::file::from_bytes(&bytes[..bytes.len() / 2]).unwrap_err();
    assert!(cut.to_string().starts_with("truncated IR file"), "{cut}");
    let mut flip = bytes.clone();
    flip[100] ^= 1;
    let bad = ir::file::from_bytes(&flip).unwrap_err();
    assert!(bad.to_string().starts_with("corrupt IR file"), "{bad}");
}

#[test]
fn unsupported_op_is_one_line_and_writes_nothing() {
    let dir = tmp_dir("cli-unsupported");
    let mut b = OnnxBuilder::new("bad", 13, 1);
    let x = b.input("input", &[1, 3, 8, 8]);
    let y = b.conv("conv", &x, 4, 3, 1, 1, true);
    let y = b.node("act", "HardSwish", &[&y], &[], Some(vec![1, 4, 8, 8]));
    b.output(&y);
    let m = dir.join("bad.onnx");
    std::fs::write(&m, b.to_bytes()).unwrap();
    let out_path = dir.join("bad.pir");
    let out = precis(&[
        "compile",
        m.to_str().unwrap(),
        "-o",
        out_path.to_str().unwrap(),
    ]);
    let err = one_line_error(&out);
    assert!(
        err.contains("bad.onnx: node '/act/HardSwish' (HardSwish): unsupported op; precis approximates only piecewise-linear activations"),
        "{err}"
    );
    assert!(!out_path.exists());
    let leftovers = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(leftovers, 1, "only the model is in the directory");
}

#[test]
fn unsupported_attribute_names_it() {
    let dir = tmp_dir("cli-attr");
    let mut b = OnnxBuilder::new("bad", 13, 1);
    let x = b.input("input", &[1, 3, 7, 7]);
    let y = b.node(
        "pool",
        "MaxPool",
        &[&x],
        &[
            ("kernel_shape", Attr::Ints(vec![2, 2])),
            ("strides", Attr::Ints(vec![2, 2])),
            ("ceil_mode", Attr::Int(1)),
        ],
        None,
    );
    b.output(&y);
    let m = dir.join("ceil.onnx");
    std::fs::write(&m, b.to_bytes()).unwrap();
    let err = one_line_error(&precis(&["inspect", m.to_str().unwrap()]));
    assert!(
        err.contains("node '/pool/MaxPool' (MaxPool): attribute ceil_mode=1 is not supported"),
        "{err}"
    );
}

#[test]
fn malformed_and_truncated_models() {
    let dir = tmp_dir("cli-malformed");
    let junk = dir.join("junk.onnx");
    std::fs::write(&junk, b"\x08\x07garbage that is not protobuf \xff\xff\xff").unwrap();
    let x = dir.join("x.npy");
    npy::write(&x, &random_tensor(vec![1, 1, 28, 28], 1)).unwrap();
    let err = one_line_error(&precis(&[
        "infer",
        junk.to_str().unwrap(),
        "--input",
        x.to_str().unwrap(),
    ]));
    assert!(err.contains("junk.onnx: not a valid ONNX model"), "{err}");

    let bytes = zoo::lenet5(&ZooOptions::default()).bytes;
    let cut = dir.join("cut.onnx");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let err = one_line_error(&precis(&[
        "infer",
        cut.to_str().unwrap(),
        "--input",
        x.to_str().unwrap(),
    ]));
    assert!(err.contains("cut.onnx: not a valid ONNX model"), "{err}");

    let missing = dir.join("missing.onnx");
    let err = one_line_error(&precis(&["inspect", missing.to_str().unwrap()]));
    assert!(
        err.contains("cannot read") && err.contains("missing.onnx"),
        "{err}"
    );
}

#[test]
fn wrong_input_shape_in_infer() {
    let dir = tmp_dir("cli-shape");
    let m = write_lenet(&dir);
    let x = dir.join("x.npy");
    npy::write(&x, &random_tensor(vec![2, 3, 28, 28], 1)).unwrap();
    let y = dir.join("y.npy");
    let out = precis(&[
        "infer",
        m.to_str().unwrap(),
        "--input",
        x.to_str().unwrap(),
        "--output",
        y.to_str().unwrap(),
    ]);
    let err = one_line_error(&out);
    assert!(
        err.contains("x.npy holds samples of shape f32[3,28,28] but input 'input' of")
            && err.ends_with("takes [?,1,28,28]"),
        "{err}"
    );
    assert!(!y.exists());
    let flat = dir.join("flat.npy");
    npy::write(&flat, &random_tensor(vec![784], 1)).unwrap();
    let err = one_line_error(&precis(&[
        "infer",
        m.to_str().unwrap(),
        "--input",
        flat.to_str().unwrap(),
    ]));
    assert!(err.contains("no batch axis"), "{err}");
}

#[test]
fn shipped_example_runs_and_is_reproducible() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = root.join("examples/models/lenet5_demo.onnx");
    let input = root.join("examples/data/lenet5_demo.npy");
    assert_eq!(
        std::fs::read(&model).unwrap(),
        zoo::lenet5(&zoo::demo_options()).bytes,
        "examples/models/lenet5_demo.onnx differs from zoo::lenet5(demo_options()); regenerate with `cargo run --example gen_demo`"
    );
    let out = precis(&[
        "infer",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let x = npy::read(&input).unwrap();
    assert_eq!(stdout(&out).lines().count(), 1 + x.shape[0]);
}

/// `compile --alpha` writes the approximated, calibrated IR; `infer` runs it
/// and agrees with the exact model on the shipped trained LeNet-5 samples.
#[test]
fn compile_approximated_then_infer() {
    let dir = tmp_dir("cli-approx");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let model = root.join("examples/models/lenet5.onnx");
    let samples = root.join("examples/data/fmnist_test_16.npy");
    let out_file = dir.join("lenet5.a12.pir");
    std::env::set_var("PRECIS_CACHE", dir.join("cache"));
    let out = precis(&[
        "compile",
        model.to_str().unwrap(),
        "-o",
        out_file.to_str().unwrap(),
        "--alpha",
        "12",
        "--emit",
        "ir",
        "--calib",
        samples.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("approximated 6 layers"), "{text}");
    assert!(text.contains("ApproxMaxPool"), "{text}");
    let g = ir::file::load(&out_file).unwrap();
    assert_eq!(g.op_counts().get("ApproxRelu"), Some(&4));
    assert_eq!(g.op_counts().get("Relu"), None);

    let approx = precis(&[
        "infer",
        out_file.to_str().unwrap(),
        "--input",
        samples.to_str().unwrap(),
    ]);
    assert!(approx.status.success(), "{}", stderr(&approx));
    let exact = precis(&[
        "infer",
        model.to_str().unwrap(),
        "--input",
        samples.to_str().unwrap(),
    ]);
    assert_eq!(stdout(&approx), stdout(&exact));

    // A calibration file of the wrong shape is one clear error, no output.
    let bad = dir.join("bad.npy");
    npy::write(&bad, &ir::Tensor::zeros(vec![2, 3])).unwrap();
    let none = dir.join("none.pir");
    let out = precis(&[
        "compile",
        model.to_str().unwrap(),
        "-o",
        none.to_str().unwrap(),
        "--alpha",
        "12",
        "--calib",
        bad.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(!none.exists());
}

/// `compile --alpha` writes a circuit; `inspect` reports it; `infer` runs it
/// on the simulation backend and classifies the shipped samples as the
/// exact model does; damaged circuit files are refused in one line.
#[test]
fn compile_a_circuit_then_inspect_and_infer() {
    let dir = tmp_dir("cli-circuit");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let model = root.join("examples/models/lenet5.onnx");
    let samples = root.join("examples/data/fmnist_test_16.npy");
    let circuit = dir.join("lenet5.circuit");
    std::env::set_var("PRECIS_CACHE", dir.join("cache"));
    let out = precis(&[
        "compile",
        model.to_str().unwrap(),
        "-o",
        circuit.to_str().unwrap(),
        "--alpha",
        "10",
        "--calib",
        samples.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("bootstraps"), "{text}");
    assert!(text.contains("wrote"), "{text}");
    let c = ir::circuit::file::load(&circuit).unwrap();
    assert_eq!(c.params.preset, "levels16");
    assert!(c.params.secure);

    let inspect = precis(&["inspect", circuit.to_str().unwrap(), "--json"]);
    assert!(inspect.status.success(), "{}", stderr(&inspect));
    let v: serde_json::Value = serde_json::from_str(&stdout(&inspect)).unwrap();
    let t = &v["totals"];
    for key in [
        "bootstraps",
        "bootstrap_lower_bound",
        "rotations",
        "rotation_keys",
        "depth",
        "slots",
        "preset",
        "estimated_seconds",
        "estimated_peak_bytes",
        "key_bytes",
    ] {
        assert!(!t[key].is_null(), "totals lack {key}: {t}");
    }
    assert_eq!(
        t["bootstraps"].as_u64().unwrap() as usize,
        c.stats().bootstraps
    );
    assert!(v["layers"].as_array().unwrap().len() >= 12);

    let sim = precis(&[
        "infer",
        circuit.to_str().unwrap(),
        "--input",
        samples.to_str().unwrap(),
    ]);
    assert!(sim.status.success(), "{}", stderr(&sim));
    let exact = precis(&[
        "infer",
        model.to_str().unwrap(),
        "--input",
        samples.to_str().unwrap(),
    ]);
    assert_eq!(stdout(&sim), stdout(&exact));

    // Damaged copies: one line each, naming the file.
    let bytes = std::fs::read(&circuit).unwrap();
    let cut = dir.join("cut.circuit");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let mut flipped = bytes.clone();
    let mid = bytes.len() / 2;
    flipped[mid] ^= 4;
    let flip = dir.join("flip.circuit");
    std::fs::write(&flip, &flipped).unwrap();
    for (path, want) in [(&cut, "truncated circuit file"), (&flip, "checksum")] {
        for cmd in ["inspect", "infer"] {
            let mut args = vec![cmd, path.to_str().unwrap()];
            if cmd == "infer" {
                args.extend(["--input", samples.to_str().unwrap()]);
            }
            let out = precis(&args);
            let err = one_line_error(&out);
            assert!(
                err.contains(path.to_str().unwrap()) && err.contains(want),
                "{cmd}: {err}"
            );
        }
    }
    // A circuit needs --alpha.
    let out = precis(&[
        "compile",
        model.to_str().unwrap(),
        "-o",
        dir.join("x.circuit").to_str().unwrap(),
        "--emit",
        "circuit",
    ]);
    assert!(one_line_error(&out).contains("--alpha"));
}

/// `compile --alpha auto` searches α per layer on training images, records
/// each layer's α in the circuit (shown by `inspect`), never does worse than
/// uniform α = 14 in bootstraps, and refuses inconsistent options in one
/// line.
#[test]
fn compile_with_alpha_auto_records_the_plan() {
    let dir = tmp_dir("cli-auto");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let model = root.join("examples/models/lenet5.onnx");
    let circuit = dir.join("lenet5.circuit");
    std::env::set_var("PRECIS_CACHE", dir.join("cache"));
    let base = [
        "compile",
        model.to_str().unwrap(),
        "-o",
        circuit.to_str().unwrap(),
        "--alpha",
        "auto",
        "--calib-limit",
        "2000",
    ];
    let mut args = base.to_vec();
    args.extend(["--validation", "400", "--probe", "100", "--max-drop", "0.5"]);
    let out = precis(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("α search on 400 validation samples"),
        "{text}"
    );
    let totals = text
        .lines()
        .find(|l| l.starts_with("bootstraps ") && l.contains("uniform α = 14"))
        .unwrap_or_else(|| panic!("no search totals in {text}"));
    let nums: Vec<u64> = totals
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|t| t.parse().ok())
        .collect();
    let (chosen, uniform) = (nums[0], nums[2]);
    assert!(chosen <= uniform, "{totals}");

    let c = ir::circuit::file::load(&circuit).unwrap();
    assert_eq!(c.notes["alpha"], "auto");
    assert_eq!(c.stats().bootstraps as u64, chosen);
    let inspect = precis(&["inspect", circuit.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&inspect)).unwrap();
    let approximated: Vec<&serde_json::Value> = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["op"].as_str().unwrap().starts_with("Approx"))
        .collect();
    assert_eq!(approximated.len(), 6);
    for l in approximated {
        let a = l["alpha"].as_u64().unwrap_or_else(|| panic!("{l}"));
        assert!((4..=14).contains(&a), "{l}");
    }

    // Inconsistent options.
    for (extra, want) in [
        (vec!["--validation", "59000"], "at most 58000"),
        (
            vec!["--alpha-layer", "/features/features.1/Relu=9"],
            "--alpha-layer",
        ),
        (vec!["--max-drop=-1"], "--max-drop"),
    ] {
        let mut args = base.to_vec();
        args.extend(extra);
        let err = one_line_error(&precis(&args));
        assert!(err.contains(want), "{err}");
    }
    let out = precis(&[
        "compile",
        model.to_str().unwrap(),
        "-o",
        circuit.to_str().unwrap(),
        "--alpha",
        "fast",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("neither a precision α"),
        "{}",
        stderr(&out)
    );
}
