//! The numeric kernels of the reference executor. They work on actual
//! (batched) tensors, whose leading axis is a free batch axis. Shapes were
//! checked by the graph; the kernels still check the operands they index so
//! that a bad call is an error rather than a panic.

use ir::{
    ApproxMaxPool, ApproxRelu, BatchNorm, Conv2d, Linear, Pads2d, Pool2d, Shape, ShapeFmt, Tensor,
};
use rayon::prelude::*;

/// Elementwise work is split into pieces of at least this many values.
const PAR_MIN: usize = 1 << 14;

fn nchw(t: &Tensor) -> Result<[usize; 4], String> {
    if t.data.len() != ir::numel(&t.shape) {
        return Err(format!(
            "operand {} holds {} values",
            ShapeFmt(&t.shape),
            t.data.len()
        ));
    }
    match t.shape[..] {
        [n, c, h, w] => Ok([n, c, h, w]),
        _ => Err(format!(
            "expects an NCHW operand, got {}",
            ShapeFmt(&t.shape)
        )),
    }
}

/// The range of output positions `o` (of `out` total) whose input coordinate
/// `o * stride + offset - pad` falls inside `0..len`.
fn valid_range(
    out: usize,
    stride: usize,
    offset: usize,
    pad: usize,
    len: usize,
) -> std::ops::Range<usize> {
    // o * stride + offset >= pad  and  o * stride + offset < len + pad
    let lo = pad.saturating_sub(offset).div_ceil(stride);
    let hi = (len + pad).saturating_sub(offset).div_ceil(stride);
    lo.min(out)..hi.min(out).max(lo.min(out))
}

/// 2-D convolution (any stride, padding, dilation, group), f64 accumulation.
pub fn conv2d(x: &Tensor, c: &Conv2d) -> Result<Tensor, String> {
    let [n, ci, h, w] = nchw(x)?;
    let ws = &c.weight.shape;
    let [o, cg, kh, kw] = match ws[..] {
        [o, cg, kh, kw] => [o, cg, kh, kw],
        _ => return Err(format!("weight must be 4-D, got {}", ShapeFmt(ws))),
    };
    let g = c.group;
    if c.weight.data.len() != ir::numel(ws) {
        return Err(format!(
            "weight {} holds {} values",
            ShapeFmt(ws),
            c.weight.data.len()
        ));
    }
    if g == 0 || cg * g != ci || o % g != 0 {
        return Err(format!(
            "weight {} with group {g} does not fit {ci} input channels",
            ShapeFmt(ws)
        ));
    }
    let (oh, ow) = ir::window_out([h, w], [kh, kw], c.stride, c.pads, c.dilation)?;
    let og = o / g;
    let p = oh * ow;
    let k = cg * kh * kw;
    let bias: Vec<f64> = match &c.bias {
        Some(b) if b.data.len() == o => b.data.iter().map(|&v| v as f64).collect(),
        Some(b) => return Err(format!("bias {} != [{o}]", ShapeFmt(&b.shape))),
        None => vec![0.0; o],
    };
    let mut y = vec![0f32; n * o * p];
    if y.is_empty() {
        return Tensor::new(vec![n, o, oh, ow], y).map_err(|e| e.to_string());
    }
    let w64: Vec<f64> = c.weight.data.iter().map(|&v| v as f64).collect();
    let geo = Geometry {
        h,
        w,
        kh,
        kw,
        oh,
        ow,
        stride: c.stride,
        dilation: c.dilation,
        pads: c.pads,
    };

    if og == 1 {
        // One output channel per group (depthwise and the like): a GEMM with
        // a single row is a poor fit, sum directly.
        y.par_chunks_mut(p).enumerate().for_each(|(plane, out)| {
            let (s, oc) = (plane / o, plane % o);
            let xs = &x.data[(s * ci + oc * cg) * h * w..(s * ci + (oc + 1) * cg) * h * w];
            direct_conv_plane(xs, cg, &w64[oc * k..(oc + 1) * k], bias[oc], &geo, out);
        });
    } else {
        // Tasks: (sample, group, block of output positions, block of output
        // channels). A position block keeps its im2col slab (k × pb f64)
        // within ~256 KiB so it stays in L2 while the GEMM streams it; the
        // channel split only happens when there are too few tasks for the
        // pool (small batches), at the cost of redoing the slab's im2col.
        let pb = (32_768 / k.max(1)).clamp(64, 1024).min(p);
        let pblocks = p.div_ceil(pb);
        let base = n * g * pblocks;
        let threads = rayon::current_num_threads();
        let splits = (2 * threads).div_ceil(base).clamp(1, og.div_ceil(8));
        let rows = og.div_ceil(splits);
        let splits = og.div_ceil(rows);
        let out = OutPtr(y.as_mut_ptr());
        (0..base * splits).into_par_iter().for_each_init(
            || (Vec::new(), Vec::new()),
            |(col, acc): &mut (Vec<f64>, Vec<f64>), task| {
                let (rest, split) = (task / splits, task % splits);
                let (rest, blk) = (rest / pblocks, rest % pblocks);
                let (s, grp) = (rest / g, rest % g);
                let (p0, p1) = (blk * pb, ((blk + 1) * pb).min(p));
                let r0 = grp * og + split * rows;
                let m = rows.min(grp * og + og - r0);
                let xs = &x.data[(s * ci + grp * cg) * h * w..(s * ci + (grp + 1) * cg) * h * w];
                let width = p1 - p0;
                col.resize(k * width, 0.0);
                im2col(xs, cg, &geo, p0, p1, col);
                acc.resize(m * width, 0.0);
                gemm(
                    m,
                    k,
                    width,
                    (&w64[r0 * k..(r0 + m) * k], k, 1),
                    (col, width, 1),
                    acc,
                );
                for (r, ar) in acc.chunks(width).enumerate() {
                    let b = bias[r0 + r];
                    let start = (s * o + r0 + r) * p + p0;
                    // SAFETY: tasks partition (sample, channel, position)
                    // space, so this row segment of `y` is written by this
                    // task only; it lies inside `y` (s < n, r0 + r < o,
                    // p1 <= p), which outlives the parallel loop.
                    let yr = unsafe { out.slice(start, width) };
                    for (yv, av) in yr.iter_mut().zip(ar) {
                        *yv = (av + b) as f32;
                    }
                }
            },
        );
    }
    Tensor::new(vec![n, o, oh, ow], y).map_err(|e| e.to_string())
}

/// Window geometry of one convolution.
struct Geometry {
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    stride: [usize; 2],
    dilation: [usize; 2],
    pads: Pads2d,
}

/// Columns `p0..p1` (output positions `oy * ow + ox`) of the im2col matrix:
/// `col[(c, ky, kx), p - p0]` = the input under kernel tap (ky, kx) of
/// channel c for output position p, 0 in the padding; `xs` holds `cg` planes.
fn im2col(xs: &[f32], cg: usize, g: &Geometry, p0: usize, p1: usize, col: &mut [f64]) {
    let width = p1 - p0;
    let (sy, sx) = (g.stride[0], g.stride[1]);
    for c in 0..cg {
        let plane = &xs[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..g.kh {
            let ys = valid_range(g.oh, sy, ky * g.dilation[0], g.pads.top, g.h);
            for kx in 0..g.kw {
                let xr = valid_range(g.ow, sx, kx * g.dilation[1], g.pads.left, g.w);
                let row = &mut col[((c * g.kh + ky) * g.kw + kx) * width..][..width];
                row.fill(0.0);
                let x0 = kx * g.dilation[1];
                for oy in p0 / g.ow..=(p1 - 1) / g.ow {
                    if !ys.contains(&oy) {
                        continue;
                    }
                    let iy = oy * sy + ky * g.dilation[0] - g.pads.top;
                    let src = &plane[iy * g.w..(iy + 1) * g.w];
                    // Output columns of this row inside the block and the image.
                    let lo = xr.start.max(p0.saturating_sub(oy * g.ow));
                    let hi = xr.end.min(p1 - oy * g.ow);
                    if lo >= hi {
                        continue;
                    }
                    let dst = &mut row[oy * g.ow + lo - p0..oy * g.ow + hi - p0];
                    let first = lo * sx + x0 - g.pads.left;
                    if sx == 1 {
                        for (d, &v) in dst.iter_mut().zip(&src[first..first + (hi - lo)]) {
                            *d = v as f64;
                        }
                    } else {
                        for (d, &v) in dst.iter_mut().zip(src[first..].iter().step_by(sx)) {
                            *d = v as f64;
                        }
                    }
                }
            }
        }
    }
}

/// The output buffer of a convolution, shared by tasks writing disjoint parts.
struct OutPtr(*mut f32);
// SAFETY: only used to write disjoint regions from different tasks.
unsafe impl Sync for OutPtr {}
unsafe impl Send for OutPtr {}

impl OutPtr {
    /// # Safety
    /// `start + len` must lie inside the buffer, and no other live slice may
    /// overlap `start..start + len`.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, start: usize, len: usize) -> &mut [f32] {
        std::slice::from_raw_parts_mut(self.0.add(start), len)
    }
}

/// One output plane of a convolution by direct summation over `cg` input
/// planes `xs` with weights `wk` (`[cg, kh, kw]`, f64).
fn direct_conv_plane(xs: &[f32], cg: usize, wk: &[f64], bias: f64, g: &Geometry, out: &mut [f32]) {
    let mut acc = vec![bias; g.oh * g.ow];
    for c in 0..cg {
        let plane = &xs[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..g.kh {
            let ys = valid_range(g.oh, g.stride[0], ky * g.dilation[0], g.pads.top, g.h);
            for kx in 0..g.kw {
                let wv = wk[(c * g.kh + ky) * g.kw + kx];
                let xr = valid_range(g.ow, g.stride[1], kx * g.dilation[1], g.pads.left, g.w);
                let x0 = kx * g.dilation[1];
                for oy in ys.clone() {
                    let iy = oy * g.stride[0] + ky * g.dilation[0] - g.pads.top;
                    let src = &plane[iy * g.w..(iy + 1) * g.w];
                    let dst = &mut acc[oy * g.ow..(oy + 1) * g.ow];
                    for ox in xr.clone() {
                        dst[ox] += wv * src[ox * g.stride[1] + x0 - g.pads.left] as f64;
                    }
                }
            }
        }
    }
    for (o, a) in out.iter_mut().zip(&acc) {
        *o = *a as f32;
    }
}

/// `c[m×n] = a[m×k] · b[k×n]` in f64; operands are `(data, row stride,
/// column stride)`, `c` is dense row-major.
fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: (&[f64], usize, usize),
    b: (&[f64], usize, usize),
    c: &mut [f64],
) {
    assert!(c.len() >= m * n, "gemm output too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c[..m * n].fill(0.0);
        return;
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(a.0.len() > last(m, k, a.1, a.2), "gemm operand a too small");
    assert!(b.0.len() > last(k, n, b.1, b.2), "gemm operand b too small");
    // SAFETY: the asserts above keep every index dgemm touches in bounds:
    // a[i*rsa + l*csa] for i < m, l < k; b[l*rsb + j*csb] for l < k, j < n;
    // c[i*n + j] for i < m, j < n; `c` is exclusively borrowed.
    unsafe {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            1.0,
            a.0.as_ptr(),
            a.1 as isize,
            a.2 as isize,
            b.0.as_ptr(),
            b.1 as isize,
            b.2 as isize,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// `y = x · Wᵀ + b` for `x: [N, in]`, f64 accumulation.
pub fn linear(x: &Tensor, l: &Linear) -> Result<Tensor, String> {
    let (n, fin) = match x.shape[..] {
        [n, f] => (n, f),
        _ => return Err(format!("expects [N, features], got {}", ShapeFmt(&x.shape))),
    };
    let (out, win) = match l.weight.shape[..] {
        [o, i] => (o, i),
        _ => {
            return Err(format!(
                "weight must be 2-D, got {}",
                ShapeFmt(&l.weight.shape)
            ))
        }
    };
    if win != fin {
        return Err(format!(
            "operand {} does not match weight {}",
            ShapeFmt(&x.shape),
            ShapeFmt(&l.weight.shape)
        ));
    }
    if let Some(b) = &l.bias {
        if b.data.len() != out {
            return Err(format!("bias {} != [{out}]", ShapeFmt(&b.shape)));
        }
    }
    if x.data.len() != n * fin || l.weight.data.len() != out * win {
        return Err("operand or weight data does not match its shape".into());
    }
    let x64: Vec<f64> = x.data.iter().map(|&v| v as f64).collect();
    // Weights are converted to f64 a block of rows at a time, so a large
    // layer never needs a full f64 copy.
    const ROWS: usize = 64;
    let blocks: Vec<Vec<f64>> = (0..out.div_ceil(ROWS))
        .into_par_iter()
        .map(|blk| {
            let j0 = blk * ROWS;
            let rb = ROWS.min(out - j0);
            let w64: Vec<f64> = l.weight.data[j0 * fin..(j0 + rb) * fin]
                .iter()
                .map(|&v| v as f64)
                .collect();
            let mut acc = vec![0f64; n * rb];
            gemm(n, fin, rb, (&x64, fin, 1), (&w64, 1, fin), &mut acc);
            acc
        })
        .collect();
    let mut y = vec![0f32; n * out];
    for (blk, acc) in blocks.iter().enumerate() {
        let j0 = blk * ROWS;
        let rb = acc.len() / n.max(1);
        for s in 0..n {
            for j in 0..rb {
                let b = l.bias.as_ref().map_or(0.0, |b| b.data[j0 + j] as f64);
                y[s * out + j0 + j] = (acc[s * rb + j] + b) as f32;
            }
        }
    }
    Tensor::new(vec![n, out], y).map_err(|e| e.to_string())
}

/// Inference batch normalisation over axis 1, in place, computed in f64.
pub fn batch_norm(t: &mut Tensor, bn: &BatchNorm) -> Result<(), String> {
    if t.shape.len() < 2 {
        return Err(format!("expects rank ≥ 2, got {}", ShapeFmt(&t.shape)));
    }
    let c = t.shape[1];
    let (a, b) = bn.affine();
    if a.len() != c {
        return Err(format!("{} parameters for {c} channels", a.len()));
    }
    let inner: usize = t.shape[2..].iter().product();
    if inner == 0 || c == 0 {
        return Ok(());
    }
    t.data
        .par_chunks_mut(inner)
        .with_min_len(PAR_MIN.div_ceil(inner))
        .enumerate()
        .for_each(|(i, chunk)| {
            let ch = i % c;
            for v in chunk {
                *v = (a[ch] * *v as f64 + b[ch]) as f32;
            }
        });
    Ok(())
}

/// `max(x, 0)` in place; NaN stays NaN.
pub fn relu(data: &mut [f32]) {
    data.par_chunks_mut(PAR_MIN).for_each(|chunk| {
        for v in chunk {
            // A select, not a branch: vectorises and keeps NaN.
            *v = if *v < 0.0 { 0.0 } else { *v };
        }
    });
}

/// The composite-polynomial ReLU of the IR ([`ApproxRelu::eval`], in f64),
/// in place. Inputs outside `[−bound, bound]` are evaluated all the same:
/// the result is what an encrypted run would compute.
pub fn approx_relu(data: &mut [f32], a: &ApproxRelu) {
    let plan = a.sign.plan();
    data.par_chunks_mut(PAR_MIN / 16)
        .for_each(|chunk| a.eval_f32_in_place(&plan, chunk));
}

fn check_pool(p: &Pool2d) -> Result<(), String> {
    let pd = p.pads;
    if pd.top >= p.kernel[0]
        || pd.bottom >= p.kernel[0]
        || pd.left >= p.kernel[1]
        || pd.right >= p.kernel[1]
    {
        return Err(format!("pads {pd} not smaller than the kernel"));
    }
    Ok(())
}

/// Runs `f(input plane, output plane)` over every (sample, channel) plane.
fn per_plane(
    x: &Tensor,
    p: &Pool2d,
    f: impl Fn(&[f32], &mut [f32], &Geometry) + Sync,
) -> Result<Tensor, String> {
    let [n, c, h, w] = nchw(x)?;
    check_pool(p)?;
    let (oh, ow) = ir::window_out([h, w], p.kernel, p.stride, p.pads, [1, 1])?;
    let geo = Geometry {
        h,
        w,
        kh: p.kernel[0],
        kw: p.kernel[1],
        oh,
        ow,
        stride: p.stride,
        dilation: [1, 1],
        pads: p.pads,
    };
    let mut y = vec![0f32; n * c * oh * ow];
    if h * w == 0 {
        // Every window lies in the padding.
        for out in y.chunks_mut(oh * ow) {
            f(&[], out, &geo);
        }
    } else if !y.is_empty() {
        y.par_chunks_mut(oh * ow)
            .zip(x.data.par_chunks(h * w))
            .for_each(|(out, plane)| f(plane, out, &geo));
    }
    Tensor::new(vec![n, c, oh, ow], y).map_err(|e| e.to_string())
}

/// Max pooling; padding never wins (acts as −∞); NaN propagates.
pub fn max_pool(x: &Tensor, p: &Pool2d) -> Result<Tensor, String> {
    per_plane(x, p, |plane, out, g| {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let mut m = f32::NEG_INFINITY;
                for iy in window(oy, g.stride[0], g.kh, g.pads.top, g.h) {
                    for ix in window(ox, g.stride[1], g.kw, g.pads.left, g.w) {
                        let v = plane[iy * g.w + ix];
                        if v > m || v.is_nan() {
                            m = v;
                            if v.is_nan() {
                                break;
                            }
                        }
                    }
                    if m.is_nan() {
                        break;
                    }
                }
                out[oy * g.ow + ox] = m;
            }
        }
    })
}

/// Average pooling, f64 sums; the divisor is the kernel area when
/// `count_include_pad`, else the number of non-padding values.
pub fn avg_pool(x: &Tensor, p: &Pool2d, count_include_pad: bool) -> Result<Tensor, String> {
    per_plane(x, p, |plane, out, g| {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let mut sum = 0f64;
                let mut count = 0usize;
                for iy in window(oy, g.stride[0], g.kh, g.pads.top, g.h) {
                    for ix in window(ox, g.stride[1], g.kw, g.pads.left, g.w) {
                        sum += plane[iy * g.w + ix] as f64;
                        count += 1;
                    }
                }
                let div = if count_include_pad {
                    g.kh * g.kw
                } else {
                    count
                };
                out[oy * g.ow + ox] = (sum / div as f64) as f32;
            }
        }
    })
}

/// The polynomial max-pooling of the IR: each window, in row-major kernel
/// order with padding as `None`, reduced as [`ApproxMaxPool::reduce_window`]
/// does, all windows of a plane at once ([`ApproxMaxPool::reduce_windows`]).
pub fn approx_max_pool(x: &Tensor, a: &ApproxMaxPool) -> Result<Tensor, String> {
    let plan = a.sign.plan();
    per_plane(x, &a.pool, |plane, out, g| {
        let len = g.kh * g.kw;
        let mut windows = Vec::with_capacity(g.oh * g.ow * len);
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                for ky in 0..g.kh {
                    let iy = (oy * g.stride[0] + ky).checked_sub(g.pads.top);
                    for kx in 0..g.kw {
                        let ix = (ox * g.stride[1] + kx).checked_sub(g.pads.left);
                        windows.push(match (iy, ix) {
                            (Some(iy), Some(ix)) if iy < g.h && ix < g.w => {
                                Some(plane[iy * g.w + ix] as f64)
                            }
                            _ => None,
                        });
                    }
                }
            }
        }
        let mut result = vec![0.0f64; g.oh * g.ow];
        a.reduce_windows(&plan, &windows, &mut result);
        for (o, r) in out.iter_mut().zip(&result) {
            *o = *r as f32;
        }
    })
}

/// Input coordinates (inside `0..len`) of output position `o`'s window.
fn window(o: usize, stride: usize, k: usize, pad: usize, len: usize) -> std::ops::Range<usize> {
    let start = o * stride;
    let lo = start.max(pad) - pad;
    let hi = (start + k).min(len + pad).saturating_sub(pad);
    lo..hi.max(lo)
}

/// Mean over each (sample, channel) plane, f64 sums.
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor, String> {
    let [n, c, h, w] = nchw(x)?;
    let hw = h * w;
    let y: Vec<f32> = if hw == 0 {
        vec![f32::NAN; n * c]
    } else {
        x.data
            .par_chunks(hw)
            .map(|plane| (plane.iter().map(|&v| v as f64).sum::<f64>() / hw as f64) as f32)
            .collect()
    };
    Tensor::new(vec![n, c, 1, 1], y).map_err(|e| e.to_string())
}

/// Numpy broadcasting of two operands of equal rank.
pub fn broadcast_binary<F>(
    a: (&[usize], &[f32]),
    b: (&[usize], &[f32]),
    f: F,
) -> Result<(Shape, Vec<f32>), String>
where
    F: Fn(f32, f32) -> f32 + Sync,
{
    let out = ir::broadcast(a.0, b.0)?;
    if a.0.len() != b.0.len() {
        return Err(format!(
            "internal error: ranks of {} and {} differ",
            ShapeFmt(a.0),
            ShapeFmt(b.0)
        ));
    }
    for (s, d) in [a, b] {
        if d.len() != ir::numel(s) {
            return Err(format!("operand {} holds {} values", ShapeFmt(s), d.len()));
        }
    }
    let total = ir::numel(&out);
    if a.0 == out && b.0 == out {
        let mut data = vec![0f32; total];
        data.par_chunks_mut(PAR_MIN)
            .zip(a.1.par_chunks(PAR_MIN).zip(b.1.par_chunks(PAR_MIN)))
            .for_each(|(o, (x, y))| {
                for ((o, x), y) in o.iter_mut().zip(x).zip(y) {
                    *o = f(*x, *y);
                }
            });
        return Ok((out, data));
    }
    let r = out.len();
    let (sa, sb) = (broadcast_strides(a.0, r), broadcast_strides(b.0, r));
    let mut data = vec![0f32; total];
    if total == 0 {
        return Ok((out, data));
    }
    let inner = out[r - 1];
    let (ia, ib) = (sa[r - 1], sb[r - 1]);
    let (mut ia_idx, mut ib_idx) = (vec![0usize; r], vec![0usize; r]);
    let (mut oa, mut ob) = (0usize, 0usize);
    for row in data.chunks_mut(inner) {
        for (j, o) in row.iter_mut().enumerate() {
            *o = f(a.1[oa + j * ia], b.1[ob + j * ib]);
        }
        advance(&mut ia_idx, &out, &sa, &mut oa);
        advance(&mut ib_idx, &out, &sb, &mut ob);
    }
    Ok((out, data))
}

/// `dst ← f(dst, other)` elementwise, `other` broadcast to `shape` (the
/// shape of `dst`; equal ranks). Only for commutative `f`, as the result
/// may replace either operand of the IR op.
pub fn binary_in_place<F>(
    dst: &mut [f32],
    shape: &[usize],
    other: (&[usize], &[f32]),
    f: F,
) -> Result<(), String>
where
    F: Fn(f32, f32) -> f32 + Sync,
{
    let (os, od) = other;
    if ir::broadcast(shape, os)? != shape || os.len() != shape.len() {
        return Err(format!(
            "internal error: {} does not broadcast to {}",
            ShapeFmt(os),
            ShapeFmt(shape)
        ));
    }
    if dst.len() != ir::numel(shape) || od.len() != ir::numel(os) {
        return Err("operand data does not match its shape".into());
    }
    if dst.is_empty() {
        return Ok(());
    }
    if os == shape {
        dst.par_chunks_mut(PAR_MIN)
            .zip(od.par_chunks(PAR_MIN))
            .for_each(|(d, o)| {
                for (d, o) in d.iter_mut().zip(o) {
                    *d = f(*d, *o);
                }
            });
        return Ok(());
    }
    let r = shape.len();
    let st = broadcast_strides(os, r);
    let inner = shape[r - 1];
    let io = st[r - 1];
    let mut idx = vec![0usize; r];
    let mut off = 0usize;
    for row in dst.chunks_mut(inner) {
        for (j, d) in row.iter_mut().enumerate() {
            *d = f(*d, od[off + j * io]);
        }
        advance(&mut idx, shape, &st, &mut off);
    }
    Ok(())
}

/// Row-major strides of `s` with 0 on its broadcast (size-1) axes.
fn broadcast_strides(s: &[usize], r: usize) -> Vec<usize> {
    let mut st = vec![0; r];
    let mut acc = 1;
    for d in (0..r).rev() {
        st[d] = if s[d] == 1 { 0 } else { acc };
        acc *= s[d];
    }
    st
}

/// Steps the multi-index `idx` over all but the last axis of `shape`,
/// keeping `off` = Σ idx·strides.
fn advance(idx: &mut [usize], shape: &[usize], strides: &[usize], off: &mut usize) {
    let r = shape.len();
    for d in (0..r - 1).rev() {
        idx[d] += 1;
        *off += strides[d];
        if idx[d] < shape[d] {
            return;
        }
        *off -= strides[d] * shape[d];
        idx[d] = 0;
    }
}

/// Concatenation along `axis` of parts `[b_i, ...]` whose leading (batch)
/// extent is `batch` or 1 (broadcast over the batch).
pub fn concat(parts: &[(Shape, &[f32])], axis: usize, batch: usize) -> Result<Vec<f32>, String> {
    let first = &parts.first().ok_or("no operands")?.0;
    if axis == 0 || axis >= first.len() {
        return Err(format!(
            "internal error: concat axis {axis} for {}",
            ShapeFmt(first)
        ));
    }
    let outer: usize = first[1..axis].iter().product();
    let mut chunks = Vec::with_capacity(parts.len());
    for (s, d) in parts {
        if s.len() != first.len()
            || s[1..axis] != first[1..axis]
            || s[axis + 1..] != first[axis + 1..]
            || (s[0] != 1 && s[0] != batch)
            || d.len() != ir::numel(s)
        {
            return Err(format!(
                "operands {} and {} do not concatenate on axis {}",
                ShapeFmt(first),
                ShapeFmt(s),
                axis - 1
            ));
        }
        chunks.push(s[axis..].iter().product::<usize>());
    }
    let row: usize = chunks.iter().sum();
    let mut out = Vec::with_capacity(batch * outer * row);
    for bi in 0..batch {
        for q in 0..outer {
            for ((s, d), &len) in parts.iter().zip(&chunks) {
                let src = if s[0] == 1 { 0 } else { bi };
                let off = (src * outer + q) * len;
                out.extend_from_slice(&d[off..off + len]);
            }
        }
    }
    Ok(out)
}

/// Constant padding of the two spatial axes.
pub fn pad(x: &Tensor, pads: &Pads2d, value: f32) -> Result<Tensor, String> {
    let [n, c, h, w] = nchw(x)?;
    let (ph, pw) = (h + pads.top + pads.bottom, w + pads.left + pads.right);
    let mut y = vec![value; n * c * ph * pw];
    if !y.is_empty() && h * w > 0 {
        y.par_chunks_mut(ph * pw)
            .zip(x.data.par_chunks(h * w))
            .for_each(|(out, plane)| {
                for iy in 0..h {
                    let o = (iy + pads.top) * pw + pads.left;
                    out[o..o + w].copy_from_slice(&plane[iy * w..(iy + 1) * w]);
                }
            });
    }
    Tensor::new(vec![n, c, ph, pw], y).map_err(|e| e.to_string())
}
