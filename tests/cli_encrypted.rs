//! Encrypted inference from the command line on the explicitly insecure
//! test preset (`insecure-n11`, levels9's chain at N = 2^11): keygen,
//! encrypt, eval (where no secret key exists), decrypt and run agree with
//! the simulation, and every misuse is refused in one line naming the file.

mod common;

use common::*;
use compiler::frontend::builder::OnnxBuilder;
use runtime::data::npy;
use std::path::{Path, PathBuf};

/// conv → ReLU → conv → ReLU → max-pool → GAP → FC on 1×8×8, deeper than a
/// fresh ciphertext at this ring, so the circuit bootstraps.
fn small_model(dir: &Path) -> PathBuf {
    let mut b = OnnxBuilder::new("small", 13, 5);
    let x = b.input("input", &[1, 1, 8, 8]);
    let y = b.conv("c1", &x, 2, 3, 1, 1, true);
    let y = b.relu("r1", &y);
    let y = b.conv("c2", &y, 2, 3, 1, 1, true);
    let y = b.relu("r2", &y);
    let y = b.max_pool("mp", &y, 2, 2, 0);
    let y = b.global_avg_pool("gap", &y);
    let y = b.flatten("flat", &y);
    let y = b.linear("fc", &y, 3);
    b.output(&y);
    let p = dir.join("small.onnx");
    std::fs::write(&p, b.to_bytes()).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = precis(args);
    assert!(out.status.success(), "precis {args:?}: {}", stderr(&out));
    stdout(&out)
}

fn class_of(text: &str) -> usize {
    let line = text.lines().find(|l| l.starts_with("class ")).expect(text);
    line[6..].trim().parse().unwrap()
}

#[test]
fn keygen_encrypt_eval_decrypt_on_the_insecure_test_preset() {
    let dir = tmp_dir("cli-encrypted");
    std::env::set_var("PRECIS_CACHE", dir.join("cache"));
    let model = small_model(&dir);
    let calib = dir.join("calib.npy");
    npy::write(&calib, &random_tensor(vec![32, 1, 8, 8], 1)).unwrap();
    // Test inputs inside the calibrated range.
    let mut x = random_tensor(vec![3, 1, 8, 8], 2);
    x.data.iter_mut().for_each(|v| *v *= 0.9);
    let input = dir.join("x.npy");
    npy::write(&input, &x).unwrap();
    let circuit = dir.join("small.circuit");
    let compile = |extra: &[&str]| {
        let mut a = vec![
            "compile",
            s(&model),
            "--alpha",
            "6",
            "--calib",
            s(&calib),
            "--preset",
            "insecure-n11",
            "-o",
            s(&circuit),
        ];
        a.extend_from_slice(extra);
        precis(&a)
    };
    // Insecure parameters only when asked for.
    let refused = one_line_error(&compile(&[]));
    assert!(refused.contains("insecure"), "{refused}");
    assert!(!circuit.exists());
    let out = compile(&["--insecure"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let c = ir::circuit::file::load(&circuit).unwrap();
    assert!(!c.params.secure);
    assert!(c.stats().bootstraps >= 1, "the test must bootstrap");

    let keys = dir.join("keys");
    let e = one_line_error(&precis(&["keygen", s(&circuit), "--out", s(&keys)]));
    assert!(e.contains("insecure") && e.contains("small.circuit"), "{e}");
    ok(&["keygen", s(&circuit), "--out", s(&keys), "--insecure"]);
    let sk = keys.join("secret.key");
    let ek = keys.join("eval.keys");
    assert!(sk.exists() && ek.exists());

    // The server's directory holds the circuit, the evaluation keys and the
    // ciphertext: no secret key exists there.
    let server = dir.join("server");
    std::fs::create_dir_all(&server).unwrap();
    let server_circuit = server.join("small.circuit");
    let server_keys = server.join("eval.keys");
    std::fs::copy(&circuit, &server_circuit).unwrap();
    std::fs::rename(&ek, &server_keys).unwrap();

    let simulated = ok(&["infer", s(&circuit), "--input", s(&input)]);
    let sim_classes: Vec<usize> = simulated
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(sim_classes.len(), 3, "{simulated}");
    for (i, &want) in sim_classes.iter().enumerate().take(2) {
        let ct = server.join(format!("x{i}.ct"));
        let index = i.to_string();
        ok(&[
            "encrypt",
            s(&circuit),
            "--key",
            s(&sk),
            "--input",
            s(&input),
            "--index",
            &index,
            "-o",
            s(&ct),
            "--insecure",
        ]);
        let y = server.join(format!("y{i}.ct"));
        ok(&[
            "eval",
            s(&server_circuit),
            "--eval-keys",
            s(&server_keys),
            s(&ct),
            "-o",
            s(&y),
            "--insecure",
        ]);
        let got = ok(&["decrypt", s(&circuit), "--key", s(&sk), s(&y), "--insecure"]);
        assert_eq!(class_of(&got), want, "sample {i}: {got}");
        assert!(!got.contains("logits"), "logits only with --logits: {got}");
    }

    // Misuse, each refused in one line naming the file, writing nothing.
    let x0 = server.join("x0.ct");
    let y0 = server.join("y0.ct");
    let nothing = server.join("nothing.ct");
    let eval = |keys: &Path, ct: &Path| {
        precis(&[
            "eval",
            s(&server_circuit),
            "--eval-keys",
            s(keys),
            s(ct),
            "-o",
            s(&nothing),
            "--insecure",
        ])
    };
    let e = one_line_error(&eval(&sk, &x0));
    assert!(e.contains("secret.key") && e.contains("not"), "{e}");
    let e = one_line_error(&precis(&[
        "decrypt",
        s(&circuit),
        "--key",
        s(&server_keys),
        s(&y0),
        "--insecure",
    ]));
    assert!(e.contains("eval.keys"), "{e}");
    // The output ciphertext is at the wrong level for the circuit's input.
    let e = one_line_error(&eval(&server_keys, &y0));
    assert!(e.contains("y0.ct") && e.contains("level"), "{e}");
    // A key passed as a ciphertext.
    let e = one_line_error(&eval(&server_keys, &sk));
    assert!(e.contains("secret.key"), "{e}");
    // Truncated and corrupted files.
    let bytes = std::fs::read(&x0).unwrap();
    let cut = server.join("cut.ct");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = one_line_error(&eval(&server_keys, &cut));
    assert!(e.contains("cut.ct"), "{e}");
    let mut flipped = bytes.clone();
    let k = flipped.len() / 3;
    flipped[k] ^= 0x10;
    let bad = server.join("flipped.ct");
    std::fs::write(&bad, &flipped).unwrap();
    let e = one_line_error(&eval(&server_keys, &bad));
    assert!(e.contains("flipped.ct") && e.contains("corrupt"), "{e}");
    let key_bytes = std::fs::read(&server_keys).unwrap();
    let cut_keys = server.join("cut.keys");
    std::fs::write(&cut_keys, &key_bytes[..key_bytes.len() - 100]).unwrap();
    let e = one_line_error(&eval(&cut_keys, &x0));
    assert!(e.contains("cut.keys") && e.contains("truncated"), "{e}");
    assert!(!nothing.exists(), "a refused eval wrote its output");

    // Keys that belong to another circuit (other rotations).
    let other_model = {
        let mut b = OnnxBuilder::new("other", 13, 6);
        let x = b.input("input", &[1, 1, 8, 8]);
        let y = b.conv("c1", &x, 3, 5, 1, 2, true);
        let y = b.relu("r1", &y);
        let y = b.flatten("flat", &y);
        let y = b.linear("fc", &y, 4);
        b.output(&y);
        let p = dir.join("other.onnx");
        std::fs::write(&p, b.to_bytes()).unwrap();
        p
    };
    let other = dir.join("other.circuit");
    ok(&[
        "compile",
        s(&other_model),
        "--alpha",
        "6",
        "--calib",
        s(&calib),
        "--preset",
        "insecure-n11",
        "--insecure",
        "-o",
        s(&other),
    ]);
    let other_keys = dir.join("other-keys");
    ok(&["keygen", s(&other), "--out", s(&other_keys), "--insecure"]);
    let e = one_line_error(&eval(&other_keys.join("eval.keys"), &x0));
    assert!(e.contains("not this circuit's"), "{e}");

    // Out-of-range input is refused by the client.
    let mut big = x.clone();
    big.data[5] = 50.0;
    let big_path = dir.join("big.npy");
    npy::write(&big_path, &big).unwrap();
    let e = one_line_error(&precis(&[
        "encrypt",
        s(&circuit),
        "--key",
        s(&sk),
        "--input",
        s(&big_path),
        "-o",
        s(&nothing),
        "--insecure",
    ]));
    assert!(e.contains("range"), "{e}");
    assert!(!nothing.exists());

    // `run` on the circuit: encrypted classes equal the simulated ones.
    let out = ok(&[
        "run",
        s(&circuit),
        "--input",
        s(&input),
        "--limit",
        "1",
        "--json",
        "--insecure",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let row = &v["samples"][0];
    assert_eq!(row["encrypted_class"], row["simulated_class"], "{v}");
    assert_eq!(
        row["simulated_class"].as_u64().unwrap() as usize,
        sim_classes[0]
    );
    assert!(row["max_logit_diff"].as_f64().unwrap() < 1e-2, "{v}");
    assert!(v["peak_rss_bytes"].as_u64().is_some());
}

/// `run` and `bench e2e` on a compiled circuit classify Fashion-MNIST test
/// images, preprocessed as the circuit records (no MODEL.json beside it),
/// encrypted; the classes equal the simulation's and the timings add up.
#[test]
fn run_and_bench_e2e_classify_test_images_from_a_circuit_file() {
    let dir = tmp_dir("cli-encrypted-run");
    std::env::set_var("PRECIS_CACHE", dir.join("cache"));
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/models/lenet5.onnx");
    let circuit = dir.join("lenet5.circuit");
    ok(&[
        "compile",
        s(&model),
        "--alpha",
        "8",
        "--preset",
        "insecure-n11",
        "--insecure",
        "-o",
        s(&circuit),
    ]);
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "run",
        s(&circuit),
        "--limit",
        "2",
        "--json",
        "--insecure",
    ]))
    .unwrap();
    assert_eq!(v["agree_with_simulation"], 2, "{v}");
    for row in v["samples"].as_array().unwrap() {
        assert!(row["label"].is_u64(), "{row}");
        assert_eq!(row["encrypted_class"], row["simulated_class"], "{row}");
        let cat = &row["eval_by_category"];
        let total: f64 = ["linear", "polynomial", "bootstrap"]
            .iter()
            .map(|k| cat[k]["measured_seconds"].as_f64().unwrap())
            .sum();
        let eval = row["eval_seconds"].as_f64().unwrap();
        assert!(total <= eval * 1.01 && total >= eval * 0.9, "{row}");
    }

    let b: serde_json::Value = serde_json::from_str(&ok(&[
        "bench",
        "e2e",
        s(&circuit),
        "--index",
        "3",
        "--threads",
        "1",
        "--json",
        "--insecure",
    ]))
    .unwrap();
    assert_eq!(b["threads"], 1);
    assert_eq!(b["image"], 3);
    assert_eq!(b["encrypted_class"], b["simulated_class"], "{b}");
    assert!(b["bootstraps"].as_u64().unwrap() > 0);
    let layers = b["layers"].as_array().unwrap();
    let boots: u64 = layers
        .iter()
        .map(|l| l["bootstraps"].as_u64().unwrap())
        .sum();
    assert_eq!(boots, b["bootstraps"].as_u64().unwrap());
    let measured: f64 = layers
        .iter()
        .map(|l| l["measured_seconds"].as_f64().unwrap())
        .sum();
    let eval = b["eval_seconds"].as_f64().unwrap();
    assert!(measured <= eval * 1.01 && measured >= eval * 0.9, "{b}");
    // Without --insecure, a circuit for the test ring is refused.
    let refused = one_line_error(&precis(&["bench", "e2e", s(&circuit)]));
    assert!(refused.contains("insecure"), "{refused}");
}

/// The README's main job at 128-bit security (`levels16`, N = 2^16): the
/// shipped LeNet-5 classifies a Fashion-MNIST test image encrypted as the
/// simulation does, within a few times the noisy simulation's predicted
/// logit error. Minutes and ~14 GiB: `cargo test --release -- --ignored`.
#[test]
#[ignore]
fn lenet5_encrypted_end_to_end_at_128_bits() {
    let dir = tmp_dir("cli-encrypted-lenet5");
    std::env::set_var("PRECIS_CACHE", dir.join("cache"));
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/models/lenet5.onnx");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["run", s(&model), "--limit", "2", "--json"])).unwrap();
    assert_eq!(v["preset"], "levels16", "{v}");
    assert_eq!(v["agree_with_simulation"], 2, "{v}");
    for row in v["samples"].as_array().unwrap() {
        let diff = row["max_logit_diff"].as_f64().unwrap();
        let predicted = row["noise_predicted_max_logit_diff"].as_f64().unwrap();
        assert!(diff < 4.0 * predicted && diff < 1e-3, "{row}");
    }
}
