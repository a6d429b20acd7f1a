//! The reference executor against naive, independently written f64
//! implementations of every op.

use ir::{
    ApproxMaxPool, ApproxRelu, BatchNorm, CompositeSign, Conv2d, Graph, Linear, NodeId,
    OddChebyshev, Op, Pads2d, Pool2d, Tensor,
};
use runtime::reference::synthetic::{resnet20, SplitMix64};
use runtime::reference::{run, run_traced, ExecError};

/// The executor accumulates in f64 and rounds once, so it must agree with an
/// f64 reference to f32 rounding.
fn assert_close(got: &Tensor, want: &[f64], what: &str) {
    assert_eq!(got.data.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.data.iter().zip(want).enumerate() {
        let tol = f32::EPSILON as f64 * w.abs() + 1e-12;
        assert!(
            (g as f64 - w).abs() <= tol || (g.is_nan() && w.is_nan()),
            "{what}: element {i}: got {g}, want {w}"
        );
    }
}

fn unary(op: Op, shape: Vec<usize>) -> Graph {
    let mut g = Graph::new("unary");
    let x = g.add_input("x", shape).unwrap();
    let y = g.add("y", op, &[x]).unwrap();
    g.set_outputs(vec![y]);
    g
}

fn run1(g: &Graph, x: Tensor) -> Tensor {
    let mut out = run(g, &[x]).unwrap();
    assert_eq!(out.len(), 1);
    out.pop().unwrap()
}

fn idx4(s: [usize; 4], n: usize, c: usize, y: usize, x: usize) -> usize {
    ((n * s[1] + c) * s[2] + y) * s[3] + x
}

// ---------------------------------------------------------------- conv

fn f64s(t: &Tensor) -> Vec<f64> {
    t.data.iter().map(|&v| v as f64).collect()
}

fn naive_conv(shape: &[usize], x: &[f64], cv: &Conv2d) -> (Vec<usize>, Vec<f64>) {
    let xs = [shape[0], shape[1], shape[2], shape[3]];
    let ws = [
        cv.weight.shape[0],
        cv.weight.shape[1],
        cv.weight.shape[2],
        cv.weight.shape[3],
    ];
    let (sh, sw) = (cv.stride[0] as isize, cv.stride[1] as isize);
    let (dh, dw) = (cv.dilation[0] as isize, cv.dilation[1] as isize);
    let (pt, pl) = (cv.pads.top as isize, cv.pads.left as isize);
    let ph = (xs[2] + cv.pads.top + cv.pads.bottom) as isize;
    let pw = (xs[3] + cv.pads.left + cv.pads.right) as isize;
    let oh = ((ph - dh * (ws[2] as isize - 1) - 1) / sh + 1) as usize;
    let ow = ((pw - dw * (ws[3] as isize - 1) - 1) / sw + 1) as usize;
    let og = ws[0] / cv.group;
    let mut out = Vec::new();
    for n in 0..xs[0] {
        for oc in 0..ws[0] {
            let grp = oc / og;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = cv.bias.as_ref().map_or(0.0, |b| b.data[oc] as f64);
                    for icg in 0..ws[1] {
                        let ic = grp * ws[1] + icg;
                        for ky in 0..ws[2] {
                            for kx in 0..ws[3] {
                                let iy = oy as isize * sh + ky as isize * dh - pt;
                                let ix = ox as isize * sw + kx as isize * dw - pl;
                                if iy < 0 || ix < 0 || iy >= xs[2] as isize || ix >= xs[3] as isize
                                {
                                    continue;
                                }
                                let wv = cv.weight.data[idx4(ws, oc, icg, ky, kx)] as f64;
                                let xv = x[idx4(xs, n, ic, iy as usize, ix as usize)];
                                s += wv * xv;
                            }
                        }
                    }
                    out.push(s);
                }
            }
        }
    }
    (vec![xs[0], ws[0], oh, ow], out)
}

fn check_conv(rng: &mut SplitMix64, n: usize, cin: usize, h: usize, w: usize, cv: Conv2d) {
    let desc = format!(
        "conv x[{n},{cin},{h},{w}] w{:?} stride {:?} pads {} dil {:?} group {}",
        cv.weight.shape, cv.stride, cv.pads, cv.dilation, cv.group
    );
    let g = unary(Op::Conv2d(cv.clone()), vec![1, cin, h, w]);
    let x = rng.tensor(vec![n, cin, h, w], 2.0);
    let got = run1(&g, x.clone());
    let (shape, want) = naive_conv(&x.shape, &f64s(&x), &cv);
    assert_eq!(got.shape, shape, "{desc}");
    assert_close(&got, &want, &desc);
}

#[test]
fn conv_matches_naive_on_random_geometries() {
    let mut rng = SplitMix64::new(1);
    let mut done = 0;
    while done < 80 {
        let group = match rng.range(0, 3) {
            0 | 1 => 1,
            _ => rng.range(2, 3),
        };
        let depthwise = rng.range(0, 3) == 0;
        let (cg, og) = if depthwise {
            (1, rng.range(1, 2))
        } else {
            (rng.range(1, 4), rng.range(1, 5))
        };
        let group = if depthwise { rng.range(1, 4) } else { group };
        let (kh, kw) = (rng.range(1, 4), rng.range(1, 4));
        let pads = Pads2d {
            top: rng.range(0, 3),
            left: rng.range(0, 3),
            bottom: rng.range(0, 3),
            right: rng.range(0, 3),
        };
        let cv = Conv2d {
            weight: rng.tensor(vec![og * group, cg, kh, kw], 1.0),
            bias: (rng.range(0, 1) == 1).then(|| rng.tensor(vec![og * group], 1.0)),
            stride: [rng.range(1, 3), rng.range(1, 3)],
            pads,
            dilation: [rng.range(1, 3), rng.range(1, 3)],
            group,
        };
        let (h, w) = (rng.range(1, 11), rng.range(1, 11));
        if ir::window_out([h, w], [kh, kw], cv.stride, pads, cv.dilation).is_err() {
            continue;
        }
        let n = rng.range(1, 3);
        check_conv(&mut rng, n, cg * group, h, w, cv);
        done += 1;
    }
}

#[test]
fn conv_wide_layers_batch_one_and_many() {
    // Enough output channels that the GEMM is split across threads.
    let mut rng = SplitMix64::new(2);
    for (n, stride, cin, cout) in [(1, 1, 16, 40), (3, 2, 8, 33), (5, 1, 24, 9)] {
        let cv = Conv2d {
            weight: rng.tensor(vec![cout, cin, 3, 3], 0.5),
            bias: Some(rng.tensor(vec![cout], 0.5)),
            stride: [stride; 2],
            pads: Pads2d::same(1),
            dilation: [1, 1],
            group: 1,
        };
        check_conv(&mut rng, n, cin, 13, 11, cv);
    }
    let cv = Conv2d {
        weight: rng.tensor(vec![12, 2, 3, 3], 0.5),
        bias: None,
        stride: [1, 1],
        pads: Pads2d::same(1),
        dilation: [1, 1],
        group: 4,
    };
    check_conv(&mut rng, 2, 8, 9, 9, cv);
    // Long reductions: the output positions are cut into blocks of 64 that
    // do not start at row boundaries.
    for (n, stride, dilation, h, w) in [
        (2, [1, 1], [1, 1], 13, 11),
        (1, [2, 1], [2, 1], 23, 17),
        (2, [2, 3], [1, 2], 23, 31),
    ] {
        let cv = Conv2d {
            weight: rng.tensor(vec![10, 64, 3, 3], 0.2),
            bias: Some(rng.tensor(vec![10], 0.5)),
            stride,
            pads: Pads2d {
                top: 2,
                left: 1,
                bottom: 0,
                right: 2,
            },
            dilation,
            group: 1,
        };
        check_conv(&mut rng, n, 64, h, w, cv);
    }
}

#[test]
fn conv_accumulates_in_f64() {
    // 1e8 + 1 - 1e8 is 0 in f32 but 1 in f64.
    let cv = Conv2d {
        weight: Tensor::new(vec![1, 3, 1, 1], vec![1.0, 1.0, -1.0]).unwrap(),
        bias: None,
        stride: [1, 1],
        pads: Pads2d::default(),
        dilation: [1, 1],
        group: 1,
    };
    let g = unary(Op::Conv2d(cv), vec![1, 3, 1, 1]);
    let y = run1(
        &g,
        Tensor::new(vec![1, 3, 1, 1], vec![1e8, 1.0, 1e8]).unwrap(),
    );
    assert_eq!(y.data, vec![1.0]);
}

// ---------------------------------------------------------------- pooling

fn naive_pool(shape: &[usize], x: &[f64], p: &Pool2d, mode: &str) -> (Vec<usize>, Vec<f64>) {
    let s = [shape[0], shape[1], shape[2], shape[3]];
    let oh = (s[2] + p.pads.top + p.pads.bottom - p.kernel[0]) / p.stride[0] + 1;
    let ow = (s[3] + p.pads.left + p.pads.right - p.kernel[1]) / p.stride[1] + 1;
    let mut out = Vec::new();
    for n in 0..s[0] {
        for c in 0..s[1] {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut vals = Vec::new();
                    for ky in 0..p.kernel[0] {
                        for kx in 0..p.kernel[1] {
                            let iy = (oy * p.stride[0] + ky) as isize - p.pads.top as isize;
                            let ix = (ox * p.stride[1] + kx) as isize - p.pads.left as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < s[2] && (ix as usize) < s[3] {
                                vals.push(x[idx4(s, n, c, iy as usize, ix as usize)]);
                            }
                        }
                    }
                    let area = (p.kernel[0] * p.kernel[1]) as f64;
                    out.push(match mode {
                        "max" => vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                        "avg_incl" => vals.iter().sum::<f64>() / area,
                        _ => vals.iter().sum::<f64>() / vals.len() as f64,
                    });
                }
            }
        }
    }
    (vec![s[0], s[1], oh, ow], out)
}

#[test]
fn pools_match_naive_on_random_geometries() {
    let mut rng = SplitMix64::new(3);
    for round in 0..90 {
        let kernel = [rng.range(1, 4), rng.range(1, 4)];
        let pads = Pads2d {
            top: rng.range(0, kernel[0] - 1),
            left: rng.range(0, kernel[1] - 1),
            bottom: rng.range(0, kernel[0] - 1),
            right: rng.range(0, kernel[1] - 1),
        };
        let p = Pool2d {
            kernel,
            stride: [rng.range(1, 3), rng.range(1, 3)],
            pads,
        };
        let (h, w) = (rng.range(kernel[0], 9), rng.range(kernel[1], 9));
        let (n, c) = (rng.range(1, 3), rng.range(1, 3));
        // Negative inputs: padding that acted as 0 would win a max.
        let x = {
            let t = rng.tensor(vec![n, c, h, w], 1.0);
            let data = t.data.iter().map(|v| v - 2.0).collect();
            Tensor::new(t.shape, data).unwrap()
        };
        let mode = ["max", "avg_incl", "avg_excl"][round % 3];
        let op = match mode {
            "max" => Op::MaxPool(p),
            m => Op::AveragePool {
                pool: p,
                count_include_pad: m == "avg_incl",
            },
        };
        let g = unary(op, vec![1, c, h, w]);
        let got = run1(&g, x.clone());
        let (shape, want) = naive_pool(&x.shape, &f64s(&x), &p, mode);
        let desc = format!("{mode} x{:?} {p:?}", x.shape);
        assert_eq!(got.shape, shape, "{desc}");
        assert_close(&got, &want, &desc);
    }
}

#[test]
fn maxpool_padding_is_minus_infinity_and_nan_propagates() {
    let p = Pool2d {
        kernel: [2, 2],
        stride: [2, 2],
        pads: Pads2d::same(1),
    };
    let g = unary(Op::MaxPool(p), vec![1, 1, 2, 2]);
    let y = run1(
        &g,
        Tensor::new(vec![1, 1, 2, 2], vec![-1.0, -2.0, f32::NAN, -4.0]).unwrap(),
    );
    assert_eq!(y.shape, vec![1, 1, 2, 2]);
    assert_eq!(&y.data[..2], &[-1.0, -2.0]);
    assert!(y.data[2].is_nan());
    assert_eq!(y.data[3], -4.0);
}

#[test]
fn global_average_pool_matches_naive() {
    let mut rng = SplitMix64::new(4);
    let x = rng.tensor(vec![3, 5, 7, 6], 3.0);
    let g = unary(Op::GlobalAveragePool, vec![1, 5, 7, 6]);
    let got = run1(&g, x.clone());
    let want: Vec<f64> = x
        .data
        .chunks(42)
        .map(|p| p.iter().map(|&v| v as f64).sum::<f64>() / 42.0)
        .collect();
    assert_eq!(got.shape, vec![3, 5, 1, 1]);
    assert_close(&got, &want, "gap");
}

// ---------------------------------------------------------------- others

#[test]
fn linear_matches_naive() {
    let mut rng = SplitMix64::new(5);
    for (n, fin, out, bias) in [(1, 7, 3, true), (4, 130, 70, false), (2, 1, 129, true)] {
        let l = Linear {
            weight: rng.tensor(vec![out, fin], 1.0),
            bias: bias.then(|| rng.tensor(vec![out], 1.0)),
        };
        let g = unary(Op::Linear(l.clone()), vec![1, fin]);
        let x = rng.tensor(vec![n, fin], 1.0);
        let got = run1(&g, x.clone());
        let mut want = Vec::new();
        for s in 0..n {
            for j in 0..out {
                let mut acc = l.bias.as_ref().map_or(0.0, |b| b.data[j] as f64);
                for i in 0..fin {
                    acc += x.data[s * fin + i] as f64 * l.weight.data[j * fin + i] as f64;
                }
                want.push(acc);
            }
        }
        assert_eq!(got.shape, vec![n, out]);
        assert_close(&got, &want, &format!("linear {fin}->{out} batch {n}"));
    }
}

#[test]
fn batch_norm_matches_naive() {
    let mut rng = SplitMix64::new(6);
    for shape in [vec![1, 4, 3, 5], vec![1, 6], vec![1, 3, 7]] {
        let c = shape[1];
        let mut pos = |a: f64| {
            let t = rng.tensor(vec![c], a);
            Tensor::new(vec![c], t.data.iter().map(|v| v.abs() + 0.1).collect()).unwrap()
        };
        let bn = BatchNorm {
            scale: pos(2.0),
            bias: pos(1.0),
            mean: pos(1.0),
            var: pos(3.0),
            epsilon: 1e-3,
        };
        let g = unary(Op::BatchNorm(bn.clone()), shape.clone());
        let mut xs = shape.clone();
        xs[0] = 2;
        let x = rng.tensor(xs, 4.0);
        let got = run1(&g, x.clone());
        let inner: usize = shape[2..].iter().product();
        let want: Vec<f64> = x
            .data
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let ch = (i / inner) % c;
                let sd = (bn.var.data[ch] as f64 + bn.epsilon as f64).sqrt();
                (v as f64 - bn.mean.data[ch] as f64) / sd * bn.scale.data[ch] as f64
                    + bn.bias.data[ch] as f64
            })
            .collect();
        // The affine form a·x + b differs from (x − m)/s·γ + β by a few f64
        // roundings: compare with a slightly wider tolerance.
        for (g, w) in got.data.iter().zip(&want) {
            assert!(((*g as f64) - w).abs() <= 2.0 * f32::EPSILON as f64 * w.abs() + 1e-9);
        }
    }
}

#[test]
fn relu_pad_identity() {
    let x = Tensor::new(vec![1, 1, 2, 2], vec![-1.5, 0.0, 2.5, f32::NEG_INFINITY]).unwrap();
    let y = run1(&unary(Op::Relu, vec![1, 1, 2, 2]), x.clone());
    assert_eq!(y.data, vec![0.0, 0.0, 2.5, 0.0]);
    let y = run1(&unary(Op::Identity, vec![1, 1, 2, 2]), x.clone());
    assert_eq!(y, x);
    let pads = Pads2d {
        top: 1,
        left: 0,
        bottom: 0,
        right: 2,
    };
    let y = run1(&unary(Op::Pad { pads, value: 7.0 }, vec![1, 1, 2, 2]), x);
    assert_eq!(y.shape, vec![1, 1, 3, 4]);
    assert_eq!(
        y.data,
        vec![
            7.0,
            7.0,
            7.0,
            7.0,
            -1.5,
            0.0,
            7.0,
            7.0,
            2.5,
            f32::NEG_INFINITY,
            7.0,
            7.0
        ]
    );
}

/// Numpy broadcasting over IR shapes, one sample at a time.
fn naive_broadcast(a: &[f64], sa: &[usize], b: &[f64], sb: &[usize], mul: bool) -> Vec<f64> {
    let r = sa.len().max(sb.len());
    let pad = |s: &[usize]| {
        let mut p = vec![1; r - s.len()];
        p.extend_from_slice(s);
        p
    };
    let (pa, pb) = (pad(sa), pad(sb));
    let out: Vec<usize> = (0..r).map(|i| pa[i].max(pb[i])).collect();
    let total: usize = out.iter().product();
    let flat = |p: &[usize], idx: &[usize]| {
        idx.iter()
            .zip(p)
            .fold(0, |acc, (&i, &d)| acc * d + if d == 1 { 0 } else { i })
    };
    (0..total)
        .map(|mut k| {
            let mut idx = vec![0; r];
            for d in (0..r).rev() {
                idx[d] = k % out[d];
                k /= out[d];
            }
            let (x, y) = (a[flat(&pa, &idx)], b[flat(&pb, &idx)]);
            if mul {
                x * y
            } else {
                x + y
            }
        })
        .collect()
}

#[test]
fn add_and_mul_broadcast_like_numpy() {
    let mut rng = SplitMix64::new(7);
    let cases: &[(&[usize], &[usize])] = &[
        (&[1, 3, 4, 4], &[1, 3, 4, 4]),
        (&[1, 3, 4, 4], &[1, 3, 1, 1]),
        (&[1, 3, 4, 4], &[3, 1, 1]),
        (&[1, 5], &[1]),
        (&[1, 1, 4], &[1, 3, 1]),
        (&[1, 2, 1, 3], &[4, 1]),
        (&[2, 1, 3], &[1, 4, 1]),
        (&[1, 3, 2, 2], &[]),
        (&[1, 1, 1, 4], &[1, 3, 2, 4]),
        (&[3, 1], &[1, 3, 5]),
    ];
    for &(sa, sb) in cases {
        for mul in [false, true] {
            for b_is_const in [false, true] {
                let batch = 3;
                let mut g = Graph::new("bcast");
                let a = g.add_input("a", sa.to_vec()).unwrap();
                let cb = rng.tensor(sb.to_vec(), 2.0);
                let b = if b_is_const {
                    g.add("b", Op::Constant(cb.clone()), &[]).unwrap()
                } else {
                    g.add_input("b", sb.to_vec()).unwrap()
                };
                let op = if mul { Op::Mul } else { Op::Add };
                let y = g.add("y", op, &[a, b]).unwrap();
                g.set_outputs(vec![y]);
                let mut xa_shape = sa.to_vec();
                xa_shape[0] *= batch;
                let xa = rng.tensor(xa_shape, 2.0);
                let (inputs, xb) = if b_is_const || sb.is_empty() {
                    if sb.is_empty() && !b_is_const {
                        continue; // a rank-0 input cannot carry a batch
                    }
                    (vec![xa.clone()], cb.clone())
                } else {
                    let mut s = sb.to_vec();
                    s[0] *= batch;
                    let xb = rng.tensor(s, 2.0);
                    (vec![xa.clone(), xb.clone()], xb)
                };
                let got = run(&g, &inputs).unwrap().pop().unwrap();
                let (na, nb) = (ir::numel(sa), ir::numel(sb));
                let (xa64, xb64) = (f64s(&xa), f64s(&xb));
                let mut want = Vec::new();
                for s in 0..batch {
                    let bs = if b_is_const {
                        &xb64[..]
                    } else {
                        &xb64[s * nb..(s + 1) * nb]
                    };
                    want.extend(naive_broadcast(
                        &xa64[s * na..(s + 1) * na],
                        sa,
                        bs,
                        sb,
                        mul,
                    ));
                }
                let mut shape = g.node(y).shape.clone();
                shape[0] *= batch;
                let desc = format!(
                    "{sa:?} {} {sb:?} (const {b_is_const})",
                    if mul { "*" } else { "+" }
                );
                assert_eq!(got.shape, shape, "{desc}");
                assert_close(&got, &want, &desc);
            }
        }
    }
}

#[test]
fn flatten_and_reshape_scale_the_leading_axis() {
    let mut rng = SplitMix64::new(8);
    let x = rng.tensor(vec![2, 2, 3, 4], 1.0);
    for (op, want) in [
        (Op::Flatten { axis: 1 }, vec![2, 24]),
        (Op::Flatten { axis: 0 }, vec![2, 24]),
        (Op::Flatten { axis: 2 }, vec![4, 12]),
        (
            Op::Reshape {
                shape: vec![1, 6, 4],
            },
            vec![2, 6, 4],
        ),
        (Op::Reshape { shape: vec![6, 4] }, vec![12, 4]),
    ] {
        let y = run1(&unary(op.clone(), vec![1, 2, 3, 4]), x.clone());
        assert_eq!(y.shape, want, "{op:?}");
        assert_eq!(y.data, x.data, "{op:?}");
    }
}

#[test]
fn concat_with_constants_per_sample() {
    let mut rng = SplitMix64::new(9);
    for axis in 0..3 {
        let mut g = Graph::new("cat");
        let a = g.add_input("a", vec![1, 2, 3]).unwrap();
        let cs = match axis {
            0 => vec![2, 2, 3],
            1 => vec![1, 4, 3],
            _ => vec![1, 2, 1],
        };
        let c = rng.tensor(cs.clone(), 1.0);
        let k = g.add("k", Op::Constant(c.clone()), &[]).unwrap();
        let y = g.add("y", Op::Concat { axis }, &[k, a, a]).unwrap();
        g.set_outputs(vec![y]);
        let x = rng.tensor(vec![3, 2, 3], 1.0);
        let got = run(&g, std::slice::from_ref(&x)).unwrap().pop().unwrap();
        // Per sample, the naive way: along `axis` copy k, then a, then a.
        let os = g.node(y).shape.clone();
        let mut want = Vec::new();
        for s in 0..3 {
            let xs = &x.data[s * 6..(s + 1) * 6];
            let outer: usize = os[..axis].iter().product();
            let (ck, ca) = (
                cs[axis..].iter().product::<usize>(),
                [1usize, 2, 3][axis..].iter().product::<usize>(),
            );
            for q in 0..outer {
                want.extend(c.data[q * ck..(q + 1) * ck].iter().map(|&v| v as f64));
                want.extend(xs[q * ca..(q + 1) * ca].iter().map(|&v| v as f64));
                want.extend(xs[q * ca..(q + 1) * ca].iter().map(|&v| v as f64));
            }
        }
        let mut shape = os;
        shape[0] *= 3;
        assert_eq!(got.shape, shape, "axis {axis}");
        assert_close(&got, &want, &format!("concat axis {axis}"));
    }
}

// ---------------------------------------------------------------- approximations

/// `k` steps of `u ↦ 1.5u − 0.5u³`, written in the Chebyshev basis
/// (`1.125·T1 − 0.125·T3`): a crude composite sign.
fn cubic_sign(k: usize) -> CompositeSign {
    CompositeSign {
        alpha: 8,
        epsilon: 0.05,
        components: vec![
            OddChebyshev {
                half_width: 1.0,
                coeffs: vec![0.0, 1.125, 0.0, -0.125],
            };
            k
        ],
    }
}

fn cubic_power(mut u: f64, k: usize) -> f64 {
    for _ in 0..k {
        u = 1.5 * u - 0.5 * u * u * u;
    }
    u
}

#[test]
fn approx_relu_applies_the_composite_polynomial() {
    let a = ApproxRelu {
        bound: 4.0,
        sign: cubic_sign(3),
    };
    let g = unary(Op::ApproxRelu(a), vec![1, 9]);
    let x = Tensor::new(
        vec![2, 9],
        (0..18).map(|i| (i as f32 - 8.5) * 0.55).collect(),
    )
    .unwrap();
    let got = run1(&g, x.clone());
    let want: Vec<f64> = x
        .data
        .iter()
        .map(|&v| {
            let v = v as f64;
            v * (1.0 + cubic_power(v / 4.0, 3)) / 2.0
        })
        .collect();
    assert_close(&got, &want, "approx relu");
}

/// Balanced pairwise reduction: (0,1), (2,3), … with an odd last carried up.
fn pairwise(mut v: Vec<f64>, f: &dyn Fn(f64, f64) -> f64) -> f64 {
    while v.len() > 1 {
        v = v
            .chunks(2)
            .map(|c| if c.len() == 2 { f(c[0], c[1]) } else { c[0] })
            .collect();
    }
    v[0]
}

#[test]
fn approx_max_pool_reduces_rows_then_columns_by_trees() {
    let mut rng = SplitMix64::new(15);
    for (k, steps, pads) in [(2, 2, 0), (3, 3, 1), (3, 9, 1)] {
        let bound = 3.0;
        let a = ApproxMaxPool {
            pool: Pool2d {
                kernel: [k, k],
                stride: [2, 2],
                pads: Pads2d::same(pads),
            },
            bound,
            input_scale: 0.45 / bound,
            sign: cubic_sign(steps),
        };
        let g = unary(Op::ApproxMaxPool(a.clone()), vec![1, 2, 7, 7]);
        let x = rng.tensor(vec![2, 2, 7, 7], bound);
        let got = run1(&g, x.clone());
        let max2 = |p: f64, q: f64| ((p + q) + (p - q) * cubic_power(p - q, steps)) / 2.0;
        let oh = (7 + 2 * pads - k) / 2 + 1;
        let mut want = Vec::new();
        let mut exact = Vec::new();
        for plane in x.data.chunks(49) {
            for oy in 0..oh {
                for ox in 0..oh {
                    let mut mapped = Vec::new();
                    let mut m = f64::NEG_INFINITY;
                    for ky in 0..k {
                        for kx in 0..k {
                            let (iy, ix) = (
                                (oy * 2 + ky) as isize - pads as isize,
                                (ox * 2 + kx) as isize - pads as isize,
                            );
                            if (0..7).contains(&iy) && (0..7).contains(&ix) {
                                let v = plane[iy as usize * 7 + ix as usize] as f64;
                                m = m.max(v);
                                mapped.push(v * a.input_scale + 0.5);
                            } else {
                                mapped.push(0.0);
                            }
                        }
                    }
                    // Each row of the window first, then the rows' results.
                    let rows: Vec<f64> = mapped
                        .chunks(k)
                        .map(|r| pairwise(r.to_vec(), &max2))
                        .collect();
                    want.push((pairwise(rows, &max2) - 0.5) / a.input_scale);
                    exact.push(m);
                }
            }
        }
        assert_eq!(got.shape, vec![2, 2, oh, oh]);
        assert_close(&got, &want, &format!("approx maxpool k{k} steps{steps}"));
        if steps == 9 {
            // A sharp enough sign makes it a max-pool up to the sign's error.
            let worst = got
                .data
                .iter()
                .zip(&exact)
                .map(|(g, e)| (*g as f64 - e).abs())
                .fold(0.0, f64::max);
            assert!(worst < 0.05 * bound, "worst error {worst}");
        }
    }
}

// ---------------------------------------------------------------- graphs

fn per_sample_concat(g: &Graph, x: &Tensor) -> Vec<Tensor> {
    let n = x.shape[0];
    let per = x.data.len() / n;
    let mut outs: Vec<Tensor> = Vec::new();
    for s in 0..n {
        let mut shape = x.shape.clone();
        shape[0] = 1;
        let xs = Tensor::new(shape, x.data[s * per..(s + 1) * per].to_vec()).unwrap();
        let ys = run(g, &[xs]).unwrap();
        if outs.is_empty() {
            outs = ys;
        } else {
            for (o, y) in outs.iter_mut().zip(ys) {
                o.shape[0] += y.shape[0];
                o.data.extend(y.data);
            }
        }
    }
    outs
}

/// Every op in one graph, with a constant-only output.
fn mixed_graph(rng: &mut SplitMix64) -> Graph {
    let mut g = Graph::new("mixed");
    let x = g.add_input("x", vec![1, 3, 9, 9]).unwrap();
    let c = g
        .add(
            "conv",
            Op::Conv2d(Conv2d {
                weight: rng.tensor(vec![6, 3, 3, 3], 0.5),
                bias: Some(rng.tensor(vec![6], 0.5)),
                stride: [1, 1],
                pads: Pads2d::same(1),
                dilation: [1, 1],
                group: 1,
            }),
            &[x],
        )
        .unwrap();
    let dw = g
        .add(
            "dw",
            Op::Conv2d(Conv2d {
                weight: rng.tensor(vec![6, 1, 3, 3], 0.5),
                bias: None,
                stride: [2, 2],
                pads: Pads2d::same(1),
                dilation: [1, 1],
                group: 6,
            }),
            &[c],
        )
        .unwrap();
    let bn = g
        .add(
            "bn",
            Op::BatchNorm(BatchNorm {
                scale: rng.tensor(vec![6], 1.0),
                bias: rng.tensor(vec![6], 1.0),
                mean: rng.tensor(vec![6], 1.0),
                var: Tensor::new(vec![6], vec![1.0; 6]).unwrap(),
                epsilon: 1e-5,
            }),
            &[dw],
        )
        .unwrap();
    let r = g.add("relu", Op::Relu, &[bn]).unwrap();
    let pad = g
        .add(
            "pad",
            Op::Pad {
                pads: Pads2d::same(1),
                value: 0.0,
            },
            &[r],
        )
        .unwrap();
    let mp = g
        .add(
            "mp",
            Op::MaxPool(Pool2d {
                kernel: [3, 3],
                stride: [2, 2],
                pads: Pads2d::same(1),
            }),
            &[pad],
        )
        .unwrap();
    let ap = g
        .add(
            "ap",
            Op::AveragePool {
                pool: Pool2d {
                    kernel: [2, 2],
                    stride: [1, 1],
                    pads: Pads2d::default(),
                },
                count_include_pad: false,
            },
            &[mp],
        )
        .unwrap();
    let k = g
        .add("k", Op::Constant(rng.tensor(vec![1, 6, 1, 1], 1.0)), &[])
        .unwrap();
    let m = g.add("mul", Op::Mul, &[ap, k]).unwrap();
    let cat = g.add("cat", Op::Concat { axis: 1 }, &[m, ap]).unwrap();
    let gap = g.add("gap", Op::GlobalAveragePool, &[cat]).unwrap();
    let fl = g.add("flat", Op::Flatten { axis: 1 }, &[gap]).unwrap();
    let lin = g
        .add(
            "fc",
            Op::Linear(Linear {
                weight: rng.tensor(vec![4, 12], 1.0),
                bias: Some(rng.tensor(vec![4], 1.0)),
            }),
            &[fl],
        )
        .unwrap();
    let rs = g
        .add("rs", Op::Reshape { shape: vec![2, 2] }, &[lin])
        .unwrap();
    let id = g.add("id", Op::Identity, &[rs]).unwrap();
    g.set_outputs(vec![id, k, c]);
    g
}

#[test]
fn batch_equals_per_sample_runs() {
    let mut rng = SplitMix64::new(10);
    let g = mixed_graph(&mut rng);
    let x = rng.tensor(vec![5, 3, 9, 9], 1.0);
    let batched = run(&g, std::slice::from_ref(&x)).unwrap();
    let single = per_sample_concat(&g, &x);
    assert_eq!(batched.len(), 3);
    assert_eq!(batched[0].shape, vec![10, 2]);
    assert_eq!(
        batched[1].shape,
        vec![5, 6, 1, 1],
        "constant output carries the batch"
    );
    assert_eq!(batched[2].shape, vec![5, 6, 9, 9]);
    assert_eq!(batched, single);

    let net = resnet20([3, 16, 16], 10, 11).unwrap();
    let x = rng.tensor(vec![3, 3, 16, 16], 1.0);
    assert_eq!(
        run(&net, std::slice::from_ref(&x)).unwrap(),
        per_sample_concat(&net, &x)
    );

    let net = runtime::reference::synthetic::lenet5(10, 12).unwrap();
    assert_eq!(net.param_count(), 61_706);
    let x = rng.tensor(vec![4, 1, 28, 28], 1.0);
    let out = run(&net, std::slice::from_ref(&x)).unwrap();
    assert_eq!(out[0].shape, vec![4, 10]);
    assert_eq!(out, per_sample_concat(&net, &x));
}

#[test]
fn empty_batch_gives_empty_outputs() {
    let mut rng = SplitMix64::new(12);
    let g = mixed_graph(&mut rng);
    let out = run(&g, &[Tensor::zeros(vec![0, 3, 9, 9])]).unwrap();
    assert_eq!(out[0].shape, vec![0, 2]);
    assert_eq!(out[1].shape, vec![0, 6, 1, 1]);
    assert!(out.iter().all(|t| t.data.is_empty()));
}

#[test]
fn trace_sees_every_node_in_topological_order() {
    let mut rng = SplitMix64::new(13);
    let g = mixed_graph(&mut rng);
    let x = rng.tensor(vec![2, 3, 9, 9], 1.0);
    let mut seen: Vec<(NodeId, Vec<usize>)> = Vec::new();
    let out = run_traced(&g, std::slice::from_ref(&x), &mut |n, t| {
        assert_eq!(t.data.len(), ir::numel(&t.shape));
        seen.push((n, t.shape.clone()));
    })
    .unwrap();
    assert_eq!(out, run(&g, &[x]).unwrap());
    let order: Vec<NodeId> = seen.iter().map(|s| s.0).collect();
    assert_eq!(order, g.topo_order());
    for (n, shape) in &seen {
        let node = g.node(*n);
        let mut want = node.shape.clone();
        if !matches!(node.op, Op::Constant(_)) {
            want[0] *= 2;
        }
        assert_eq!(shape, &want, "%{}", node.name);
    }
}

#[test]
fn outputs_read_by_other_nodes_are_not_clobbered() {
    // relu would work in place on its operand if it were the last reader.
    let mut g = Graph::new("shared");
    let x = g.add_input("x", vec![1, 4]).unwrap();
    let id = g.add("id", Op::Identity, &[x]).unwrap();
    let r = g.add("r", Op::Relu, &[id]).unwrap();
    let s = g.add("s", Op::Add, &[id, id]).unwrap();
    g.set_outputs(vec![r, id, s, id, x]);
    let xv = Tensor::new(vec![1, 4], vec![-1.0, 2.0, -3.0, 4.0]).unwrap();
    let out = run(&g, std::slice::from_ref(&xv)).unwrap();
    assert_eq!(out[0].data, vec![0.0, 2.0, 0.0, 4.0]);
    assert_eq!(out[1], xv);
    assert_eq!(out[2].data, vec![-2.0, 4.0, -6.0, 8.0]);
    assert_eq!(out[3], xv, "an output listed twice");
    assert_eq!(out[4], xv, "an input as output");
}

// ---------------------------------------------------------------- errors

#[test]
fn wrong_inputs_are_refused_with_names_and_shapes() {
    let g = resnet20([1, 8, 8], 10, 14).unwrap();
    let err = run(&g, &[]).unwrap_err();
    assert!(
        matches!(
            err,
            ExecError::InputCount {
                expected: 1,
                got: 0,
                ..
            }
        ),
        "{err}"
    );

    let err = run(&g, &[Tensor::zeros(vec![2, 1, 8, 9])])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("%input") && err.contains("f32[2,1,8,9]") && err.contains("f32[1,1,8,8]"),
        "{err}"
    );
    let err = run(&g, &[Tensor::zeros(vec![1, 8, 8])])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("%input") && err.contains("f32[1,8,8]"),
        "{err}"
    );

    let bad = Tensor {
        shape: vec![1, 1, 8, 8],
        data: vec![0.0; 3],
    };
    let err = run(&g, &[bad]).unwrap_err().to_string();
    assert!(err.contains("%input") && err.contains("3 values"), "{err}");

    let mut two = Graph::new("two");
    let a = two.add_input("a", vec![1, 2]).unwrap();
    let b = two.add_input("b", vec![1, 2]).unwrap();
    let s = two.add("s", Op::Add, &[a, b]).unwrap();
    two.set_outputs(vec![s]);
    let err = run(
        &two,
        &[Tensor::zeros(vec![2, 2]), Tensor::zeros(vec![3, 2])],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("%b has batch 3") && err.contains("%a has batch 2"),
        "{err}"
    );
}

#[test]
fn invalid_graphs_are_refused() {
    let mut g = Graph::new("noout");
    g.add_input("x", vec![1, 2]).unwrap();
    let err = run(&g, &[Tensor::zeros(vec![1, 2])]).unwrap_err();
    assert!(matches!(err, ExecError::InvalidGraph { .. }), "{err}");
    assert!(err.to_string().contains("noout"), "{err}");
}

/// An independent f64 interpreter of the IR for one sample, built from the
/// naive ops above: the whole-graph oracle (operand order, value lifetimes,
/// in-place reuse).
fn naive_graph(g: &Graph, x: &Tensor) -> Vec<(Vec<usize>, Vec<f64>)> {
    let mut vals: std::collections::HashMap<NodeId, (Vec<usize>, Vec<f64>)> =
        std::collections::HashMap::new();
    for n in g.topo_order() {
        let node = g.node(n);
        let args: Vec<&(Vec<usize>, Vec<f64>)> = g.operands(n).iter().map(|o| &vals[o]).collect();
        let same = |f: &dyn Fn(f64) -> f64| {
            (
                node.shape.clone(),
                args[0].1.iter().map(|&v| f(v)).collect(),
            )
        };
        let v: (Vec<usize>, Vec<f64>) = match &node.op {
            Op::Input => (x.shape.clone(), f64s(x)),
            Op::Constant(t) => (t.shape.clone(), f64s(t)),
            Op::Conv2d(c) => naive_conv(&args[0].0, &args[0].1, c),
            Op::BatchNorm(bn) => {
                let c = node.shape[1];
                let inner: usize = node.shape[2..].iter().product();
                let data = args[0]
                    .1
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        let ch = (i / inner) % c;
                        let sd = (bn.var.data[ch] as f64 + bn.epsilon as f64).sqrt();
                        (v - bn.mean.data[ch] as f64) / sd * bn.scale.data[ch] as f64
                            + bn.bias.data[ch] as f64
                    })
                    .collect();
                (node.shape.clone(), data)
            }
            Op::Relu => same(&|v| v.max(0.0)),
            Op::Flatten { .. } | Op::Reshape { .. } | Op::Identity => same(&|v| v),
            Op::MaxPool(p) => naive_pool(&args[0].0, &args[0].1, p, "max"),
            Op::AveragePool {
                pool,
                count_include_pad,
            } => {
                let mode = if *count_include_pad {
                    "avg_incl"
                } else {
                    "avg_excl"
                };
                naive_pool(&args[0].0, &args[0].1, pool, mode)
            }
            Op::GlobalAveragePool => {
                let s = &args[0].0;
                let hw = s[2] * s[3];
                let data = args[0]
                    .1
                    .chunks(hw)
                    .map(|p| p.iter().sum::<f64>() / hw as f64);
                (node.shape.clone(), data.collect())
            }
            Op::Linear(l) => {
                let (fin, out) = (l.weight.shape[1], l.weight.shape[0]);
                let mut data = Vec::new();
                for row in args[0].1.chunks(fin) {
                    for j in 0..out {
                        let mut acc = l.bias.as_ref().map_or(0.0, |b| b.data[j] as f64);
                        for (i, &v) in row.iter().enumerate() {
                            acc += v * l.weight.data[j * fin + i] as f64;
                        }
                        data.push(acc);
                    }
                }
                (node.shape.clone(), data)
            }
            Op::Add | Op::Mul => {
                let mul = matches!(node.op, Op::Mul);
                let data = naive_broadcast(&args[0].1, &args[0].0, &args[1].1, &args[1].0, mul);
                (node.shape.clone(), data)
            }
            Op::Concat { axis } => {
                let outer: usize = node.shape[..*axis].iter().product();
                let mut data = Vec::new();
                for q in 0..outer {
                    for (s, d) in &args {
                        let len: usize = s[*axis..].iter().product();
                        data.extend_from_slice(&d[q * len..(q + 1) * len]);
                    }
                }
                (node.shape.clone(), data)
            }
            Op::Pad { pads, value } => {
                let s = &args[0].0;
                let (h, w) = (s[2], s[3]);
                let (ph, pw) = (node.shape[2], node.shape[3]);
                let mut data = vec![*value as f64; ir::numel(&node.shape)];
                for (plane, src) in args[0].1.chunks(h * w).enumerate() {
                    for y in 0..h {
                        for x in 0..w {
                            data[plane * ph * pw + (y + pads.top) * pw + x + pads.left] =
                                src[y * w + x];
                        }
                    }
                }
                (node.shape.clone(), data)
            }
            other => panic!("the naive interpreter lacks {}", other.kind()),
        };
        vals.insert(n, v);
    }
    g.outputs().iter().map(|o| vals[o].clone()).collect()
}

#[test]
fn whole_graphs_match_the_naive_interpreter() {
    let mut rng = SplitMix64::new(16);
    let graphs = [
        (mixed_graph(&mut rng), 2),
        (resnet20([3, 16, 16], 10, 17).unwrap(), 2),
        (runtime::reference::synthetic::lenet5(10, 18).unwrap(), 3),
    ];
    for (g, batch) in graphs {
        let mut shape = g.node(g.inputs()[0]).shape.clone();
        shape[0] = batch;
        let x = rng.tensor(shape.clone(), 1.0);
        let got = run(&g, std::slice::from_ref(&x)).unwrap();
        let per = x.data.len() / batch;
        for s in 0..batch {
            shape[0] = 1;
            let xs = Tensor::new(shape.clone(), x.data[s * per..(s + 1) * per].to_vec()).unwrap();
            let want = naive_graph(&g, &xs);
            for (k, (out, (wshape, w))) in got.iter().zip(&want).enumerate() {
                let n = w.len();
                assert_eq!(out.shape[1..], wshape[1..], "{} output {k}", g.name);
                let o = &out.data[s * n..(s + 1) * n];
                // Intermediates are rounded to f32 layer after layer.
                let scale = w.iter().fold(1.0f64, |m, v| m.max(v.abs()));
                for (i, (&a, &b)) in o.iter().zip(w).enumerate() {
                    assert!(
                        (a as f64 - b).abs() <= 1e-4 * scale,
                        "{} output {k} sample {s} element {i}: {a} vs {b}",
                        g.name
                    );
                }
            }
        }
    }
}

#[test]
fn inputs_with_a_leading_axis_above_one_take_multiples_of_it() {
    let mut g = Graph::new("rows");
    let x = g.add_input("x", vec![2, 3]).unwrap();
    let r = g.add("r", Op::Relu, &[x]).unwrap();
    let f = g.add("f", Op::Reshape { shape: vec![1, 6] }, &[r]).unwrap();
    g.set_outputs(vec![f]);
    let xv = Tensor::new(vec![4, 3], (0..12).map(|i| i as f32 - 6.0).collect()).unwrap();
    let out = run(&g, &[xv]).unwrap();
    assert_eq!(out[0].shape, vec![2, 6], "two samples of [2, 3]");
    assert_eq!(
        out[0].data,
        vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    );
    let err = run(&g, &[Tensor::zeros(vec![3, 3])])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("%x") && err.contains("f32[3,3]") && err.contains("f32[2,3]"),
        "{err}"
    );
}
