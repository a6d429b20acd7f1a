//! The operations of the tensor IR and their shape rules.
//!
//! Activations are NCHW (or `[N, features]` after flattening); the IR carries
//! batch 1, executors accept any batch on the leading axis.

use crate::approx::{ApproxMaxPool, ApproxRelu};
use crate::tensor::{numel, Shape, ShapeFmt, Tensor};
use crate::IrError;
use serde::{Deserialize, Serialize};
use std::fmt::{self, Write};

/// Spatial padding of a 2-D window, in ONNX's order of meaning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pads2d {
    pub top: usize,
    pub left: usize,
    pub bottom: usize,
    pub right: usize,
}

impl Pads2d {
    pub fn same(p: usize) -> Self {
        Self {
            top: p,
            left: p,
            bottom: p,
            right: p,
        }
    }

    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

impl fmt::Display for Pads2d {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},{},{},{}",
            self.top, self.left, self.bottom, self.right
        )
    }
}

/// A 2-D convolution with its weights `[out, in/group, kh, kw]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub stride: [usize; 2],
    pub pads: Pads2d,
    pub dilation: [usize; 2],
    pub group: usize,
}

impl Conv2d {
    pub fn out_channels(&self) -> usize {
        self.weight.shape[0]
    }

    /// `[kh, kw]`.
    pub fn kernel(&self) -> [usize; 2] {
        [self.weight.shape[2], self.weight.shape[3]]
    }
}

/// A pooling window (max or average); `ceil_mode` is always 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool2d {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub pads: Pads2d,
}

/// Inference-mode batch normalisation over axis 1:
/// `y = scale * (x - mean) / sqrt(var + epsilon) + bias`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchNorm {
    pub scale: Tensor,
    pub bias: Tensor,
    pub mean: Tensor,
    pub var: Tensor,
    pub epsilon: f32,
}

impl BatchNorm {
    /// The per-channel affine map `(a, b)` with `y = a * x + b`, in f64.
    pub fn affine(&self) -> (Vec<f64>, Vec<f64>) {
        let c = self.scale.len();
        let mut a = Vec::with_capacity(c);
        let mut b = Vec::with_capacity(c);
        for i in 0..c {
            let ai =
                self.scale.data[i] as f64 / (self.var.data[i] as f64 + self.epsilon as f64).sqrt();
            a.push(ai);
            b.push(self.bias.data[i] as f64 - ai * self.mean.data[i] as f64);
        }
        (a, b)
    }
}

/// A fully connected layer `y = x · weightᵀ + bias` with `weight: [out, in]`
/// (ONNX Gemm with transB, or MatMul followed by Add).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

/// One IR operation. Each node has exactly one output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// A graph input; its shape is the node's shape.
    Input,
    Constant(Tensor),
    Conv2d(Conv2d),
    BatchNorm(BatchNorm),
    Relu,
    MaxPool(Pool2d),
    AveragePool {
        pool: Pool2d,
        count_include_pad: bool,
    },
    GlobalAveragePool,
    Linear(Linear),
    /// Elementwise sum with numpy broadcasting.
    Add,
    /// Elementwise product with numpy broadcasting.
    Mul,
    /// ONNX Flatten: `[d0..d(axis-1), d(axis)..]` → 2-D.
    Flatten {
        axis: usize,
    },
    /// Reshape to a fully resolved shape.
    Reshape {
        shape: Shape,
    },
    Concat {
        axis: usize,
    },
    /// Constant padding of the two spatial axes of an NCHW tensor.
    Pad {
        pads: Pads2d,
        value: f32,
    },
    Identity,
    /// ReLU replaced by its composite-polynomial approximation.
    ApproxRelu(ApproxRelu),
    /// MaxPool replaced by a tree of approximate maxima.
    ApproxMaxPool(ApproxMaxPool),
}

impl Op {
    /// The op's name as printed in the text form and in reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Input => "Input",
            Op::Constant(_) => "Constant",
            Op::Conv2d(_) => "Conv2d",
            Op::BatchNorm(_) => "BatchNorm",
            Op::Relu => "Relu",
            Op::MaxPool(_) => "MaxPool",
            Op::AveragePool { .. } => "AveragePool",
            Op::GlobalAveragePool => "GlobalAveragePool",
            Op::Linear(_) => "Linear",
            Op::Add => "Add",
            Op::Mul => "Mul",
            Op::Flatten { .. } => "Flatten",
            Op::Reshape { .. } => "Reshape",
            Op::Concat { .. } => "Concat",
            Op::Pad { .. } => "Pad",
            Op::Identity => "Identity",
            Op::ApproxRelu(_) => "ApproxRelu",
            Op::ApproxMaxPool(_) => "ApproxMaxPool",
        }
    }

    /// How many operands the op takes (`None`: any number ≥ 1).
    pub fn arity(&self) -> Option<usize> {
        match self {
            Op::Input | Op::Constant(_) => Some(0),
            Op::Add | Op::Mul => Some(2),
            Op::Concat { .. } => None,
            _ => Some(1),
        }
    }

    /// Number of trainable parameters the op carries.
    pub fn param_count(&self) -> usize {
        match self {
            Op::Conv2d(c) => c.weight.len() + c.bias.as_ref().map_or(0, Tensor::len),
            Op::Linear(l) => l.weight.len() + l.bias.as_ref().map_or(0, Tensor::len),
            Op::BatchNorm(b) => b.scale.len() + b.bias.len(),
            _ => 0,
        }
    }

    /// The output shape from the operand shapes, checking every constraint
    /// the executors rely on.
    pub fn infer_shape(&self, inputs: &[&[usize]]) -> Result<Shape, String> {
        if let Some(n) = self.arity() {
            if inputs.len() != n {
                return Err(format!("expects {n} operand(s), got {}", inputs.len()));
            }
        } else if inputs.is_empty() {
            return Err("expects at least one operand".into());
        }
        let nchw = |s: &[usize]| -> Result<[usize; 4], String> {
            match s {
                [n, c, h, w] => Ok([*n, *c, *h, *w]),
                _ => Err(format!("expects an NCHW operand, got {}", ShapeFmt(s))),
            }
        };
        match self {
            Op::Input => Err("Input has no inferable shape".into()),
            Op::Constant(t) => Ok(t.shape.clone()),
            Op::Conv2d(c) => {
                let [n, ci, h, w] = nchw(inputs[0])?;
                let ws = &c.weight.shape;
                if ws.len() != 4 {
                    return Err(format!("weight must be 4-D, got {}", ShapeFmt(ws)));
                }
                if c.group == 0 || ci % c.group != 0 || ws[0] % c.group != 0 {
                    return Err(format!(
                        "group {} does not divide channels in {ci} / out {}",
                        c.group, ws[0]
                    ));
                }
                if ws[1] * c.group != ci {
                    return Err(format!(
                        "weight {} expects {} input channels, operand has {ci}",
                        ShapeFmt(ws),
                        ws[1] * c.group
                    ));
                }
                if let Some(b) = &c.bias {
                    if b.shape != [ws[0]] {
                        return Err(format!("bias shape {} != [{}]", ShapeFmt(&b.shape), ws[0]));
                    }
                }
                let (oh, ow) = window_out([h, w], c.kernel(), c.stride, c.pads, c.dilation)?;
                Ok(vec![n, ws[0], oh, ow])
            }
            Op::BatchNorm(b) => {
                let s = inputs[0];
                if s.len() < 2 {
                    return Err(format!("expects rank ≥ 2, got {}", ShapeFmt(s)));
                }
                for (name, t) in [
                    ("scale", &b.scale),
                    ("bias", &b.bias),
                    ("mean", &b.mean),
                    ("var", &b.var),
                ] {
                    if t.shape != [s[1]] {
                        return Err(format!("{name} shape {} != [{}]", ShapeFmt(&t.shape), s[1]));
                    }
                }
                Ok(s.to_vec())
            }
            Op::Relu | Op::Identity => Ok(inputs[0].to_vec()),
            Op::ApproxRelu(a) => {
                check_sign(a.bound, &a.sign)?;
                Ok(inputs[0].to_vec())
            }
            Op::ApproxMaxPool(a) => {
                check_sign(a.bound, &a.sign)?;
                if !(a.input_scale.is_finite() && a.input_scale > 0.0) {
                    return Err(format!("input_scale {} must be positive", a.input_scale));
                }
                Op::MaxPool(a.pool).infer_shape(inputs)
            }
            Op::MaxPool(p) | Op::AveragePool { pool: p, .. } => {
                let [n, c, h, w] = nchw(inputs[0])?;
                if p.pads.top >= p.kernel[0]
                    || p.pads.bottom >= p.kernel[0]
                    || p.pads.left >= p.kernel[1]
                    || p.pads.right >= p.kernel[1]
                {
                    return Err(format!("pads {} not smaller than the kernel", p.pads));
                }
                let (oh, ow) = window_out([h, w], p.kernel, p.stride, p.pads, [1, 1])?;
                Ok(vec![n, c, oh, ow])
            }
            Op::GlobalAveragePool => {
                let [n, c, _, _] = nchw(inputs[0])?;
                Ok(vec![n, c, 1, 1])
            }
            Op::Linear(l) => {
                let s = inputs[0];
                let ws = &l.weight.shape;
                if ws.len() != 2 {
                    return Err(format!("weight must be 2-D, got {}", ShapeFmt(ws)));
                }
                if s.len() != 2 || s[1] != ws[1] {
                    return Err(format!(
                        "operand {} does not match weight {} (expects [N,{}])",
                        ShapeFmt(s),
                        ShapeFmt(ws),
                        ws[1]
                    ));
                }
                if let Some(b) = &l.bias {
                    if b.shape != [ws[0]] {
                        return Err(format!("bias shape {} != [{}]", ShapeFmt(&b.shape), ws[0]));
                    }
                }
                Ok(vec![s[0], ws[0]])
            }
            Op::Add | Op::Mul => broadcast(inputs[0], inputs[1]),
            Op::Flatten { axis } => {
                let s = inputs[0];
                if *axis > s.len() {
                    return Err(format!("axis {axis} out of range for {}", ShapeFmt(s)));
                }
                Ok(vec![numel(&s[..*axis]), numel(&s[*axis..])])
            }
            Op::Reshape { shape } => {
                if numel(shape) != numel(inputs[0]) {
                    return Err(format!(
                        "cannot reshape {} to {}",
                        ShapeFmt(inputs[0]),
                        ShapeFmt(shape)
                    ));
                }
                Ok(shape.clone())
            }
            Op::Concat { axis } => {
                let first = inputs[0];
                if *axis >= first.len() {
                    return Err(format!("axis {axis} out of range for {}", ShapeFmt(first)));
                }
                let mut out = first.to_vec();
                for s in &inputs[1..] {
                    let same_rest = s.len() == first.len()
                        && s.iter()
                            .zip(first)
                            .enumerate()
                            .all(|(i, (a, b))| i == *axis || a == b);
                    if !same_rest {
                        return Err(format!(
                            "operands {} and {} differ off axis {axis}",
                            ShapeFmt(first),
                            ShapeFmt(s)
                        ));
                    }
                    out[*axis] = out[*axis]
                        .checked_add(s[*axis])
                        .ok_or("concatenated extent overflows")?;
                }
                Ok(out)
            }
            Op::Pad { pads, .. } => {
                let [n, c, h, w] = nchw(inputs[0])?;
                let grow = |x: usize, a: usize, b: usize| {
                    x.checked_add(a)
                        .and_then(|x| x.checked_add(b))
                        .ok_or_else(|| "padded extent overflows".to_string())
                };
                Ok(vec![
                    n,
                    c,
                    grow(h, pads.top, pads.bottom)?,
                    grow(w, pads.left, pads.right)?,
                ])
            }
        }
    }

    /// The op's attributes as printed after its operands in the text form.
    pub(crate) fn write_attrs(&self, out: &mut String) {
        let _ = match self {
            Op::Input | Op::Relu | Op::GlobalAveragePool | Op::Add | Op::Mul | Op::Identity => {
                Ok(())
            }
            Op::Constant(t) => write!(out, " value={t:?}"),
            Op::Conv2d(c) => {
                let _ = write!(
                    out,
                    " kernel={}x{} stride={}x{} pads={} dilation={}x{} group={} weight={:?}",
                    c.kernel()[0],
                    c.kernel()[1],
                    c.stride[0],
                    c.stride[1],
                    c.pads,
                    c.dilation[0],
                    c.dilation[1],
                    c.group,
                    c.weight
                );
                match &c.bias {
                    Some(b) => write!(out, " bias={b:?}"),
                    None => write!(out, " bias=none"),
                }
            }
            Op::BatchNorm(b) => write!(
                out,
                " epsilon={:e} scale={:?} bias={:?} mean={:?} var={:?}",
                b.epsilon, b.scale, b.bias, b.mean, b.var
            ),
            Op::MaxPool(p) => write_pool(out, p),
            Op::AveragePool {
                pool,
                count_include_pad,
            } => {
                let _ = write_pool(out, pool);
                write!(out, " count_include_pad={count_include_pad}")
            }
            Op::Linear(l) => {
                let _ = write!(out, " weight={:?}", l.weight);
                match &l.bias {
                    Some(b) => write!(out, " bias={b:?}"),
                    None => write!(out, " bias=none"),
                }
            }
            Op::Flatten { axis } => write!(out, " axis={axis}"),
            Op::Reshape { shape } => write!(out, " shape={}", ShapeFmt(shape)),
            Op::Concat { axis } => write!(out, " axis={axis}"),
            Op::Pad { pads, value } => write!(out, " pads={pads} value={value:?}"),
            Op::ApproxRelu(a) => write_sign(out, a.bound, &a.sign),
            Op::ApproxMaxPool(a) => {
                let _ = write_pool(out, &a.pool);
                let _ = write!(out, " input_scale={:e}", a.input_scale);
                write_sign(out, a.bound, &a.sign)
            }
        };
    }
}

fn write_sign(out: &mut String, bound: f64, sign: &crate::approx::CompositeSign) -> fmt::Result {
    let degrees: Vec<String> = sign.degrees().iter().map(|d| d.to_string()).collect();
    let digest = sign
        .components
        .iter()
        .flat_map(|c| std::iter::once(c.half_width).chain(c.coeffs.iter().copied()))
        .fold(0x811c_9dc5u32, |h, v| {
            v.to_bits()
                .to_le_bytes()
                .iter()
                .fold(h, |h, &b| (h ^ b as u32).wrapping_mul(0x0100_0193))
        });
    write!(
        out,
        " alpha={} bound={:e} degrees={{{}}} depth={} coeffs=#{digest:08x}",
        sign.alpha,
        bound,
        degrees.join(","),
        sign.depth()
    )
}

fn check_sign(bound: f64, sign: &crate::approx::CompositeSign) -> Result<(), String> {
    if !(bound.is_finite() && bound > 0.0) {
        return Err(format!("bound {bound} must be positive"));
    }
    if sign.components.is_empty() {
        return Err("sign approximation has no components".into());
    }
    for (i, c) in sign.components.iter().enumerate() {
        if !(c.half_width.is_finite() && c.half_width > 0.0) || c.coeffs.is_empty() {
            return Err(format!("sign component {i} is malformed"));
        }
        if c.coeffs.iter().any(|v| !v.is_finite()) {
            return Err(format!("sign component {i} has a non-finite coefficient"));
        }
        if c.coeffs.iter().step_by(2).any(|&v| v != 0.0) {
            return Err(format!(
                "sign component {i} is not odd (an even coefficient is nonzero)"
            ));
        }
    }
    Ok(())
}

fn write_pool(out: &mut String, p: &Pool2d) -> fmt::Result {
    write!(
        out,
        " kernel={}x{} stride={}x{} pads={}",
        p.kernel[0], p.kernel[1], p.stride[0], p.stride[1], p.pads
    )
}

/// Output extent of a sliding window (floor mode).
pub fn window_out(
    input: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    pads: Pads2d,
    dilation: [usize; 2],
) -> Result<(usize, usize), String> {
    let one = |i: usize, k: usize, s: usize, p0: usize, p1: usize, d: usize| {
        if k == 0 || s == 0 || d == 0 {
            return Err("kernel, stride and dilation must be positive".to_string());
        }
        // Sizes come from files: overflow is an error, not a panic.
        let overflow = || "window sizes overflow".to_string();
        let span = d
            .checked_mul(k - 1)
            .and_then(|x| x.checked_add(1))
            .ok_or_else(overflow)?;
        let padded = i
            .checked_add(p0)
            .and_then(|x| x.checked_add(p1))
            .ok_or_else(overflow)?;
        if padded < span {
            return Err(format!("window {span} larger than padded input {padded}"));
        }
        Ok((padded - span) / s + 1)
    };
    Ok((
        one(
            input[0],
            kernel[0],
            stride[0],
            pads.top,
            pads.bottom,
            dilation[0],
        )?,
        one(
            input[1],
            kernel[1],
            stride[1],
            pads.left,
            pads.right,
            dilation[1],
        )?,
    ))
}

/// Numpy-style broadcast of two shapes.
pub fn broadcast(a: &[usize], b: &[usize]) -> Result<Shape, String> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(format!(
                    "shapes {} and {} do not broadcast",
                    ShapeFmt(a),
                    ShapeFmt(b)
                ))
            }
        };
    }
    Ok(out)
}

impl From<String> for IrError {
    fn from(s: String) -> Self {
        IrError::Invalid(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(o: usize, i: usize, k: usize, stride: usize, pad: usize) -> Op {
        Op::Conv2d(Conv2d {
            weight: Tensor::zeros(vec![o, i, k, k]),
            bias: None,
            stride: [stride; 2],
            pads: Pads2d::same(pad),
            dilation: [1, 1],
            group: 1,
        })
    }

    #[test]
    fn conv_shapes() {
        assert_eq!(
            conv(16, 3, 3, 1, 1)
                .infer_shape(&[&[1, 3, 32, 32]])
                .unwrap(),
            vec![1, 16, 32, 32]
        );
        assert_eq!(
            conv(64, 3, 7, 2, 3)
                .infer_shape(&[&[1, 3, 224, 224]])
                .unwrap(),
            vec![1, 64, 112, 112]
        );
        assert!(conv(16, 4, 3, 1, 1)
            .infer_shape(&[&[1, 3, 32, 32]])
            .is_err());
    }

    #[test]
    fn maxpool_resnet_stem() {
        let p = Op::MaxPool(Pool2d {
            kernel: [3, 3],
            stride: [2, 2],
            pads: Pads2d::same(1),
        });
        assert_eq!(
            p.infer_shape(&[&[1, 64, 112, 112]]).unwrap(),
            vec![1, 64, 56, 56]
        );
    }

    #[test]
    fn broadcasting() {
        assert_eq!(
            broadcast(&[1, 3, 4, 4], &[3, 1, 1]).unwrap(),
            vec![1, 3, 4, 4]
        );
        assert!(broadcast(&[2, 3], &[3, 2]).is_err());
    }

    #[test]
    fn linear_and_flatten() {
        let l = Op::Linear(Linear {
            weight: Tensor::zeros(vec![10, 400]),
            bias: Some(Tensor::zeros(vec![10])),
        });
        let flat = Op::Flatten { axis: 1 }
            .infer_shape(&[&[1, 16, 5, 5]])
            .unwrap();
        assert_eq!(flat, vec![1, 400]);
        assert_eq!(l.infer_shape(&[&flat]).unwrap(), vec![1, 10]);
        assert!(l.infer_shape(&[&[1, 399]]).is_err());
    }
}
