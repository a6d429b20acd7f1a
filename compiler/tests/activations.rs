//! The ops the default exporter and users' networks add — Clip (ReLU6,
//! hardtanh, clamp), LeakyRelu, PRelu, Max/Min by a constant, ReduceMean over
//! H and W, Sub/Div/Neg, Squeeze/Unsqueeze/Transpose that only reshape — read
//! into existing IR ops: the structure and names the frontend gives them, the
//! values against tract's own execution of the ONNX model, the refusals, and
//! the approximation pipeline on them.

use compiler::frontend::builder::{Attr, OnnxBuilder, Rng};
use compiler::frontend::{load_bytes, oracle};
use compiler::minimax::{Cache, Objective};
use compiler::passes::{collect_ranges, AlphaPlan};
use compiler::pipeline::{self, MinimaxSource, PipelineOptions, DEFAULT_MARGIN};
use ir::{Graph, Op, Tensor};

fn count(g: &Graph, kind: &str) -> usize {
    g.op_counts().get(kind).copied().unwrap_or(0)
}

fn err_of(bytes: &[u8]) -> String {
    load_bytes(bytes, None).expect_err("must fail").to_string()
}

fn random(shape: &[usize], lo: f32, hi: f32, seed: u64) -> Tensor {
    let n = shape.iter().product();
    Tensor::new(shape.to_vec(), Rng::new(seed).uniform_vec(n, lo, hi)).unwrap()
}

/// Reads the model, runs it with the reference executor and with tract on a
/// batch of 3 inputs in `[-8, 8)`, returns the graph and the largest
/// absolute difference.
fn against_tract(bytes: &[u8], input: &[usize], seed: u64) -> (Graph, f32) {
    let g = load_bytes(bytes, None).unwrap_or_else(|e| panic!("{e}"));
    let mut shape = input.to_vec();
    shape[0] = 3;
    let x = random(&shape, -8.0, 8.0, seed);
    let ours = runtime::reference::run(&g, std::slice::from_ref(&x)).unwrap();
    let want = oracle::run(bytes, std::slice::from_ref(&x)).unwrap();
    assert_eq!(ours[0].shape, want[0].shape);
    let diff = ours[0]
        .data
        .iter()
        .zip(&want[0].data)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    (g, diff)
}

/// A one-node model `op(input, extra…)` over `[1, 4, 5, 5]`.
fn one_op(
    opset: i64,
    op: &str,
    consts: &[(&str, Vec<usize>, Vec<f32>)],
    attrs: &[(&str, Attr)],
) -> Vec<u8> {
    let mut b = OnnxBuilder::new("act", opset, 1);
    let x = b.input("input", &[1, 4, 5, 5]);
    let mut inputs = vec![x];
    for (name, shape, data) in consts {
        if name.is_empty() {
            inputs.push(String::new());
        } else {
            inputs.push(b.init_f32(name, shape, data.clone()));
        }
    }
    let refs: Vec<&str> = inputs.iter().map(|s| s.as_str()).collect();
    let y = b.node("act", op, &refs, attrs, Some(vec![1, 4, 5, 5]));
    b.output(&y);
    b.to_bytes()
}

fn names(g: &Graph, kind: &str) -> Vec<String> {
    let mut v: Vec<String> = g
        .node_ids()
        .into_iter()
        .filter(|&i| g.node(i).op.kind() == kind)
        .map(|i| g.node(i).name.clone())
        .collect();
    v.sort();
    v
}

#[test]
fn clip_is_two_relus_and_matches_tract() {
    // (min, max, ReLU names)
    let cases: Vec<(Option<f32>, Option<f32>, Vec<&str>)> = vec![
        (Some(0.0), Some(6.0), vec!["/act/Clip.hi", "/act/Clip.lo"]),
        (Some(-1.0), Some(2.0), vec!["/act/Clip.hi", "/act/Clip.lo"]),
        (Some(0.5), None, vec!["/act/Clip.lo"]),
        (Some(0.0), None, vec!["/act/Clip"]),
        (None, Some(1.5), vec!["/act/Clip.hi"]),
        (Some(-3.0), Some(-3.0), vec!["/act/Clip.hi", "/act/Clip.lo"]),
        (None, None, vec![]),
    ];
    for (lo, hi, relus) in cases {
        // Opset 13: bounds as inputs ('' when absent); opset 10: attributes.
        let mut consts = Vec::new();
        match (lo, hi) {
            (None, None) => {}
            (Some(l), None) => consts.push(("min", vec![], vec![l])),
            (lo, Some(h)) => {
                consts.push(lo.map_or(("", vec![], vec![]), |l| ("min", vec![], vec![l])));
                consts.push(("max", vec![], vec![h]));
            }
        }
        let mut attrs = Vec::new();
        if let Some(l) = lo {
            attrs.push(("min", Attr::Float(l)));
        }
        if let Some(h) = hi {
            attrs.push(("max", Attr::Float(h)));
        }
        for bytes in [
            one_op(13, "Clip", &consts, &[]),
            one_op(10, "Clip", &[], &attrs),
        ] {
            let (g, diff) = against_tract(&bytes, &[1, 4, 5, 5], 3);
            assert_eq!(names(&g, "Relu"), relus, "clip({lo:?}, {hi:?})");
            assert!(diff <= 1e-6, "clip({lo:?}, {hi:?}): diff {diff}");
            if !relus.is_empty() && relus != ["/act/Clip"] {
                // The result carries the ONNX node's name.
                let out = g.node(g.outputs()[0]);
                assert_eq!(out.name, "/act/Clip");
                assert_eq!(out.op.kind(), "Add");
            }
        }
    }
}

#[test]
fn clip_with_min_above_max_is_refused() {
    let bytes = one_op(
        13,
        "Clip",
        &[("min", vec![], vec![2.0]), ("max", vec![], vec![1.0])],
        &[],
    );
    assert_eq!(
        err_of(&bytes),
        "node '/act/Clip' (Clip): min 2 > max 1 makes the output constant; not supported"
    );
}

#[test]
fn leaky_relu_and_prelu_match_tract() {
    let slope: Vec<f32> = vec![0.25, -0.5, 0.0, 1.5];
    let cases: Vec<(Vec<u8>, usize)> = vec![
        (
            one_op(13, "LeakyRelu", &[], &[("alpha", Attr::Float(0.1))]),
            1,
        ),
        (one_op(13, "LeakyRelu", &[], &[]), 1),
        (
            one_op(18, "PRelu", &[("slope", vec![4, 1, 1], slope.clone())], &[]),
            1,
        ),
        (
            one_op(
                20,
                "PRelu",
                &[("slope", vec![1, 4, 1, 1], slope.clone())],
                &[],
            ),
            1,
        ),
        (
            one_op(13, "PRelu", &[("slope", vec![1], vec![0.2])], &[]),
            1,
        ),
        (
            one_op(13, "PRelu", &[("slope", vec![1, 1, 1], vec![0.0])], &[]),
            1,
        ),
        (
            one_op(13, "LeakyRelu", &[], &[("alpha", Attr::Float(1.0))]),
            0,
        ),
    ];
    for (i, (bytes, relus)) in cases.into_iter().enumerate() {
        let (g, diff) = against_tract(&bytes, &[1, 4, 5, 5], i as u64);
        assert!(diff <= 1e-5, "case {i}: diff {diff}");
        assert_eq!(count(&g, "Relu"), relus, "case {i}");
    }
    let g = load_bytes(
        &one_op(13, "LeakyRelu", &[], &[("alpha", Attr::Float(0.1))]),
        None,
    )
    .unwrap();
    assert_eq!(names(&g, "Relu"), ["/act/LeakyRelu.relu"]);
    assert_eq!(g.node(g.outputs()[0]).name, "/act/LeakyRelu");
    // Slope 0 is a plain ReLU under the ONNX node's name.
    let g = load_bytes(
        &one_op(13, "PRelu", &[("slope", vec![1], vec![0.0])], &[]),
        None,
    )
    .unwrap();
    assert_eq!(names(&g, "Relu"), ["/act/PRelu"]);
    assert_eq!(g.node_count(), 2);
}

#[test]
fn prelu_slope_that_broadcasts_the_activation_is_refused() {
    let bytes = one_op(
        13,
        "PRelu",
        &[("slope", vec![2, 4, 1, 1], vec![0.1; 8])],
        &[],
    );
    assert_eq!(
        err_of(&bytes),
        "node '/act/PRelu' (PRelu): slope of shape f32[2,4,1,1] does not broadcast to the activation f32[1,4,5,5]"
    );
}

#[test]
fn max_min_by_a_constant_are_one_sided_clips() {
    let mut b = OnnxBuilder::new("mm", 13, 1);
    let x = b.input("input", &[1, 4, 5, 5]);
    let zero = b.init_f32("zero", &[], vec![0.0]);
    let one = b.init_f32("one", &[1], vec![1.0]);
    let y = b.node("max", "Max", &[&x, &zero], &[], Some(vec![1, 4, 5, 5]));
    let z = b.node("min", "Min", &[&one, &y], &[], Some(vec![1, 4, 5, 5]));
    b.output(&z);
    let bytes = b.to_bytes();
    let (g, diff) = against_tract(&bytes, &[1, 4, 5, 5], 5);
    assert!(diff <= 1e-6, "diff {diff}");
    assert_eq!(names(&g, "Relu"), ["/max/Max", "/min/Min.hi"]);

    let mut b = OnnxBuilder::new("mm", 13, 1);
    let x = b.input("input", &[1, 4, 5, 5]);
    let r = b.relu("relu", &x);
    let y = b.node("max", "Max", &[&x, &r], &[], Some(vec![1, 4, 5, 5]));
    b.output(&y);
    assert_eq!(
        err_of(&b.to_bytes()),
        "node '/max/Max' (Max): supported only as Max(activation, scalar constant)"
    );
}

/// `ReduceMean(x)` with axes as an attribute (opset < 18) or an input.
fn reduce_mean(opset: i64, axes: &[i64], keepdims: i64, out: Vec<usize>) -> Vec<u8> {
    let mut b = OnnxBuilder::new("mean", opset, 1);
    let x = b.input("input", &[1, 4, 5, 6]);
    let r = b.relu("relu", &x);
    let mut attrs = vec![("keepdims", Attr::Int(keepdims))];
    let y = if opset >= 18 {
        let a = b.init_i64("axes", &[axes.len()], axes.to_vec());
        b.node("pool", "ReduceMean", &[&r, &a], &attrs, Some(out))
    } else {
        attrs.push(("axes", Attr::Ints(axes.to_vec())));
        b.node("pool", "ReduceMean", &[&r], &attrs, Some(out))
    };
    b.output(&y);
    b.to_bytes()
}

#[test]
fn spatial_reduce_mean_is_global_average_pooling() {
    for opset in [13, 18, 20] {
        for axes in [[2, 3], [-1, -2]] {
            let bytes = reduce_mean(opset, &axes, 1, vec![1, 4, 1, 1]);
            let (g, diff) = against_tract(&bytes, &[1, 4, 5, 6], 7);
            assert!(diff <= 1e-6, "diff {diff}");
            assert_eq!(count(&g, "GlobalAveragePool"), 1);
            assert_eq!(g.node(g.outputs()[0]).name, "/pool/ReduceMean");
            assert_eq!(g.node(g.outputs()[0]).shape, vec![1, 4, 1, 1]);

            let bytes = reduce_mean(opset, &axes, 0, vec![1, 4]);
            let (g, diff) = against_tract(&bytes, &[1, 4, 5, 6], 8);
            assert!(diff <= 1e-6, "diff {diff}");
            let out = g.node(g.outputs()[0]);
            assert_eq!((out.op.kind(), out.shape.clone()), ("Reshape", vec![1, 4]));
            assert_eq!(names(&g, "GlobalAveragePool"), ["/pool/ReduceMean.pool"]);
        }
    }
}

#[test]
fn other_reductions_are_refused() {
    for (axes, out) in [(vec![1], vec![1, 1, 5, 6]), (vec![3], vec![1, 4, 5, 1])] {
        let err = err_of(&reduce_mean(18, &axes, 1, out));
        assert!(
            err.starts_with(&format!(
                "node '/pool/ReduceMean' (ReduceMean): the mean over axes {axes:?} of f32[1,4,5,6] is not supported; only the mean over H and W"
            )),
            "{err}"
        );
    }
}

#[test]
fn sub_div_neg_become_add_and_mul() {
    let mut b = OnnxBuilder::new("arith", 18, 1);
    let x = b.input("input", &[1, 3, 4, 4]);
    let mean = b.init_f32("mean", &[1, 3, 1, 1], vec![0.1, 0.2, 0.3]);
    let std = b.init_f32("std", &[1, 3, 1, 1], vec![0.5, 0.6, 0.7]);
    let s = b.node("", "Sub", &[&x, &mean], &[], Some(vec![1, 3, 4, 4]));
    let d = b.node("", "Div", &[&s, &std], &[], Some(vec![1, 3, 4, 4]));
    let r = b.relu("relu", &d);
    // activation − activation, constant − activation, −activation
    let e = b.node("diff", "Sub", &[&d, &r], &[], Some(vec![1, 3, 4, 4]));
    let two = b.init_f32("two", &[], vec![2.0]);
    let f = b.node("flip", "Sub", &[&two, &e], &[], Some(vec![1, 3, 4, 4]));
    let n = b.node("neg", "Neg", &[&f], &[], Some(vec![1, 3, 4, 4]));
    b.output(&n);
    let bytes = b.to_bytes();
    let (g, diff) = against_tract(&bytes, &[1, 3, 4, 4], 9);
    assert!(diff <= 1e-5, "diff {diff}");
    for kind in ["Sub", "Div", "Neg"] {
        assert_eq!(count(&g, kind), 0);
    }
    match &g.node(g.find("/Div.recip").expect("reciprocal")).op {
        Op::Constant(t) => {
            let recip = |v: f32| (1.0 / v as f64) as f32;
            assert_eq!(t.data, [2.0, recip(0.6), recip(0.7)])
        }
        other => panic!("{other:?}"),
    }
    match &g.node(g.find("/Sub.neg").expect("negated mean")).op {
        Op::Constant(t) => assert_eq!(t.data, [-0.1, -0.2, -0.3]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn division_by_an_activation_or_by_zero_is_refused() {
    let mut b = OnnxBuilder::new("div", 13, 1);
    let x = b.input("input", &[1, 3, 4, 4]);
    let r = b.relu("relu", &x);
    let d = b.node("", "Div", &[&x, &r], &[], Some(vec![1, 3, 4, 4]));
    b.output(&d);
    assert_eq!(
        err_of(&b.to_bytes()),
        "node '/Div' (Div): division by an activation is not supported (only by constants)"
    );
    let bytes = one_op(
        13,
        "Div",
        &[("c", vec![4, 1, 1], vec![1.0, 0.0, 2.0, 3.0])],
        &[],
    );
    assert_eq!(
        err_of(&bytes),
        "node '/act/Div' (Div): the divisor has a zero"
    );
}

#[test]
fn squeeze_unsqueeze_transpose_that_only_reshape() {
    for opset in [11, 13, 18] {
        let mut b = OnnxBuilder::new("shape", opset, 1);
        let x = b.input("input", &[1, 6, 2, 2]);
        let p = b.global_avg_pool("pool", &x);
        // [1,6,1,1] → perm [0,3,2,1] → [1,1,1,6]: only size-1 axes move.
        let t = b.node(
            "t",
            "Transpose",
            &[&p],
            &[("perm", Attr::Ints(vec![0, 3, 2, 1]))],
            Some(vec![1, 1, 1, 6]),
        );
        let axes = |b: &mut OnnxBuilder, v: Vec<i64>| b.init_i64("axes", &[v.len()], v);
        let sq = if opset >= 13 {
            let a = axes(&mut b, vec![1, 2]);
            b.node("sq", "Squeeze", &[&t, &a], &[], Some(vec![1, 6]))
        } else {
            let at = [("axes", Attr::Ints(vec![1, 2]))];
            b.node("sq", "Squeeze", &[&t], &at, Some(vec![1, 6]))
        };
        let un = if opset >= 13 {
            let a = axes(&mut b, vec![-1]);
            b.node("un", "Unsqueeze", &[&sq, &a], &[], Some(vec![1, 6, 1]))
        } else {
            let at = [("axes", Attr::Ints(vec![-1]))];
            b.node("un", "Unsqueeze", &[&sq], &at, Some(vec![1, 6, 1]))
        };
        let id = b.node(
            "same",
            "Transpose",
            &[&un],
            &[("perm", Attr::Ints(vec![0, 2, 1]))],
            Some(vec![1, 1, 6]),
        );
        b.output(&id);
        let (g, diff) = against_tract(&b.to_bytes(), &[1, 6, 2, 2], 11);
        assert!(diff <= 1e-6, "opset {opset}: diff {diff}");
        assert_eq!(count(&g, "Reshape"), 4, "opset {opset}\n{}", g.to_text());
        assert_eq!(g.node(g.outputs()[0]).shape, vec![1, 1, 6]);
    }
}

#[test]
fn reshapes_that_move_data_or_the_batch_are_refused() {
    let mut b = OnnxBuilder::new("t", 13, 1);
    let x = b.input("input", &[1, 4, 5, 5]);
    let t = b.node(
        "t",
        "Transpose",
        &[&x],
        &[("perm", Attr::Ints(vec![0, 2, 3, 1]))],
        Some(vec![1, 5, 5, 4]),
    );
    b.output(&t);
    assert_eq!(
        err_of(&b.to_bytes()),
        "node '/t/Transpose' (Transpose): perm [0, 2, 3, 1] of f32[1,4,5,5] moves data; only transposes that keep the batch first and move size-1 axes (reshapes) are supported"
    );

    let mut b = OnnxBuilder::new("sq", 13, 1);
    let x = b.input("input", &[1, 4, 1, 1]);
    let a = b.init_i64("axes", &[1], vec![0]);
    let s = b.node("sq", "Squeeze", &[&x, &a], &[], Some(vec![4, 1, 1]));
    b.output(&s);
    assert_eq!(
        err_of(&b.to_bytes()),
        "node '/sq/Squeeze' (Squeeze): Squeeze of axis 0 moves the batch axis; the first dimension must stay the batch"
    );

    let mut b = OnnxBuilder::new("sq", 13, 1);
    let x = b.input("input", &[1, 4, 1, 1]);
    let s = b.node("sq", "Squeeze", &[&x], &[], Some(vec![4]));
    b.output(&s);
    let err = err_of(&b.to_bytes());
    assert!(err.contains("would remove the batch axis too"), "{err}");
}

#[test]
fn transpose_before_gather_names_the_adaptive_pooling_workaround() {
    // What the default exporter writes for nn.AdaptiveAvgPool2d(7) on a 2×2
    // map starts with Transpose(perm [2,3,0,1]) → GatherND.
    let mut b = OnnxBuilder::new("adaptive", 18, 1);
    let x = b.input("input", &[1, 4, 2, 2]);
    let t = b.node(
        "",
        "Transpose",
        &[&x],
        &[("perm", Attr::Ints(vec![2, 3, 0, 1]))],
        Some(vec![2, 2, 1, 4]),
    );
    let idx = b.init_i64("idx", &[1, 1], vec![0]);
    let g = b.node("", "GatherND", &[&t, &idx], &[], None);
    b.output(&g);
    let err = err_of(&b.to_bytes());
    assert!(
        err.starts_with(
            "node '/Transpose' (Transpose): perm [2, 3, 0, 1] of f32[1,4,2,2] moves data;"
        ),
        "{err}"
    );
    assert!(
        err.contains("adaptive average pooling whose output size does not divide its input (f32[1,4,2,2] here): export at an input size for which it divides"),
        "{err}"
    );
    assert!(!err.contains('\n'));
}

#[test]
fn unsupported_activations_say_what_to_use() {
    let bytes = one_op(13, "Sigmoid", &[], &[]);
    assert_eq!(
        err_of(&bytes),
        "node '/act/Sigmoid' (Sigmoid): unsupported op; precis approximates only piecewise-linear activations (Relu, Clip/ReLU6/hardtanh, LeakyRelu, PRelu); replace this activation by one of them (e.g. nn.ReLU) and fine-tune"
    );
}

/// Conv → ReLU6 → Conv → LeakyReLU → Conv → PReLU → clamp(min) → GAP → FC.
fn activations_net(opset: i64) -> (Vec<u8>, Vec<usize>) {
    let mut b = OnnxBuilder::new("acts", opset, 3);
    let x = b.input("input", &[1, 3, 12, 12]);
    let c = b.conv("conv1", &x, 8, 3, 1, 1, true);
    let c = b.batch_norm("bn1", &c);
    let six = b.init_f32("six", &[], vec![6.0]);
    let zero = b.init_f32("zero", &[], vec![0.0]);
    let a = b.node(
        "relu6",
        "Clip",
        &[&c, &zero, &six],
        &[],
        Some(vec![1, 8, 12, 12]),
    );
    let c = b.conv("conv2", &a, 8, 3, 2, 1, true);
    let a = b.node(
        "leaky",
        "LeakyRelu",
        &[&c],
        &[("alpha", Attr::Float(0.1))],
        Some(vec![1, 8, 6, 6]),
    );
    let c = b.conv("conv3", &a, 8, 3, 1, 1, true);
    let slope = b.rng().uniform_vec(8, 0.0, 0.5);
    let s = b.init_f32("prelu.weight", &[8, 1, 1], slope);
    let a = b.node("prelu", "PRelu", &[&c, &s], &[], Some(vec![1, 8, 6, 6]));
    let m = b.init_f32("minus", &[], vec![-0.25]);
    let a = b.node("clamp", "Clip", &[&a, &m], &[], Some(vec![1, 8, 6, 6]));
    let p = b.global_avg_pool("pool", &a);
    let f = b.flatten("", &p);
    let y = b.linear("fc", &f, 10);
    b.output(&y);
    (b.to_bytes(), vec![1, 3, 12, 12])
}

/// The approximation pipeline treats the new activations' ReLUs like any
/// other: each is calibrated under its name, replaced at α = 14, and the
/// approximated model keeps the exact argmax with no overflow.
#[test]
fn pipeline_approximates_the_new_activations() {
    let (bytes, input) = activations_net(18);
    let g = load_bytes(&bytes, None).unwrap();
    let (_, diff) = against_tract(&bytes, &input, 13);
    assert!(diff <= 1e-4, "diff {diff}");
    let mut shape = input.clone();
    shape[0] = 32;
    let calib = random(&shape, -2.0, 2.0, 21);
    let dir = std::env::temp_dir().join(format!("precis-acts-{}", std::process::id()));
    let source = MinimaxSource {
        cache: Cache::at(&dir),
        objective: Objective::MinDepth,
    };
    let options = PipelineOptions {
        alphas: AlphaPlan::uniform(14),
        margin: DEFAULT_MARGIN,
    };
    let stages = pipeline::run(&g, [calib.clone()], &options, &source).unwrap();
    let layers: Vec<&str> = stages
        .report
        .calibration
        .layers
        .keys()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(
        layers,
        [
            "/clamp/Clip.lo",
            "/leaky/LeakyRelu.relu",
            "/prelu/PRelu.relu",
            "/relu6/Clip.hi",
            "/relu6/Clip.lo"
        ]
    );
    assert_eq!(stages.report.approximated, 5);
    let out = stages.output();
    assert_eq!(count(out, "Relu"), 0);
    assert_eq!(count(out, "ApproxRelu"), 5);
    let check = collect_ranges(out, [calib.clone()], None).unwrap();
    assert_eq!(check.total_overflows(), 0, "{check:?}");
    let exact = runtime::reference::run(&g, std::slice::from_ref(&calib)).unwrap();
    let approx = runtime::reference::run(out, std::slice::from_ref(&calib)).unwrap();
    let top = |t: &Tensor| runtime::data::top1(t).unwrap();
    assert_eq!(top(&approx[0]), top(&exact[0]));
    let scale = exact[0].data.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = exact[0]
        .data
        .iter()
        .zip(&approx[0].data)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(err < 1e-2 * scale, "max diff {err} vs scale {scale}");
    std::fs::remove_dir_all(&dir).ok();
}
