//! Writes ONNX models the way `torch.onnx.export` does, for tests and for the
//! example models: deterministic pseudo-random weights, realistic BatchNorm
//! statistics, torch-style names (`/layer1/0/conv1/Conv`, `layer1.0.conv1.weight`)
//! and the opset-dependent encodings (Unsqueeze axes, Pad, Dropout, BN).
//!
//! The builder tracks every activation's shape (batch 1) so layers only need
//! their output size.

use ir::Pads2d;
use prost::Message;
use runtime::reference::synthetic::SplitMix64;
use std::collections::{HashMap, HashSet};
use tract_onnx::pb::{
    self, attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension,
};

/// How fully connected layers are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinearStyle {
    /// `Gemm(x, W, b)` with `transB=1` (`nn.Linear` at batch > 1).
    Gemm,
    /// `MatMul(x, Wᵀ)` then `Add(·, b)` (what some exporters write).
    MatMulAdd,
}

/// How the activation is flattened before the classifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlattenStyle {
    /// `Flatten(axis=1)` (`torch.flatten(x, 1)`).
    Flatten,
    /// `x.view(x.size(0), -1)`: `Shape → Gather → Unsqueeze → Concat → Reshape`.
    View,
}

/// An attribute value for [`OnnxBuilder::node`].
#[derive(Clone, Debug)]
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
    Str(String),
}

/// A deterministic f32 stream over [`SplitMix64`].
#[derive(Clone, Debug)]
pub struct Rng(SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(SplitMix64::new(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }

    pub fn uniform_vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
}

/// Builds one ONNX model.
pub struct OnnxBuilder {
    opset: i64,
    graph_name: String,
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
    inputs: Vec<pb::ValueInfoProto>,
    outputs: Vec<pb::ValueInfoProto>,
    shapes: HashMap<String, Vec<usize>>,
    names: HashSet<String>,
    rng: Rng,
    /// Graph inputs and outputs get a symbolic batch axis `batch`.
    pub symbolic_batch: bool,
    pub linear_style: LinearStyle,
    pub flatten_style: FlattenStyle,
}

impl OnnxBuilder {
    pub fn new(graph_name: &str, opset: i64, seed: u64) -> Self {
        Self {
            opset,
            graph_name: graph_name.to_string(),
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            shapes: HashMap::new(),
            names: HashSet::new(),
            rng: Rng::new(seed),
            symbolic_batch: true,
            linear_style: LinearStyle::Gemm,
            flatten_style: FlattenStyle::Flatten,
        }
    }

    pub fn opset(&self) -> i64 {
        self.opset
    }

    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// The batch-1 shape of an activation built so far.
    pub fn shape(&self, name: &str) -> &[usize] {
        &self.shapes[name]
    }

    fn unique(&mut self, base: String) -> String {
        let mut name = base.clone();
        let mut i = 1;
        while !self.names.insert(name.clone()) {
            name = format!("{base}_{i}");
            i += 1;
        }
        name
    }

    /// Dims of a graph input/output: the batch symbolic if asked.
    fn io_dims(&self, shape: &[usize]) -> Vec<Option<usize>> {
        shape
            .iter()
            .enumerate()
            .map(|(i, &d)| (i > 0 || !self.symbolic_batch).then_some(d))
            .collect()
    }

    /// A float tensor's type; `None` dims are symbolic (`batch` on axis 0,
    /// `d{axis}` elsewhere); no shape at all when `dims` is `None`.
    fn value_info(&self, name: &str, dims: Option<&[Option<usize>]>) -> pb::ValueInfoProto {
        let shape = dims.map(|dims| pb::TensorShapeProto {
            dim: dims
                .iter()
                .enumerate()
                .map(|(i, d)| pb::tensor_shape_proto::Dimension {
                    value: Some(match d {
                        Some(v) => dimension::Value::DimValue(*v as i64),
                        None if i == 0 => dimension::Value::DimParam("batch".into()),
                        None => dimension::Value::DimParam(format!("d{i}")),
                    }),
                    ..Default::default()
                })
                .collect(),
        });
        pb::ValueInfoProto {
            name: name.to_string(),
            r#type: Some(pb::TypeProto {
                value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                    elem_type: DataType::Float as i32,
                    shape,
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A float32 graph input of the given (batch-1) shape.
    pub fn input(&mut self, name: &str, shape: &[usize]) -> String {
        let dims = self.io_dims(shape);
        self.input_dims(name, &dims, shape)
    }

    /// A float32 graph input declared with `dims` (`None`: symbolic); the
    /// builder assumes the batch-1 shape `nominal` for the layers after it.
    pub fn input_dims(&mut self, name: &str, dims: &[Option<usize>], nominal: &[usize]) -> String {
        let name = self.unique(name.to_string());
        self.inputs.push(self.value_info(&name, Some(dims)));
        self.shapes.insert(name.clone(), nominal.to_vec());
        name
    }

    /// Marks a tensor as a graph output (declared without a shape when the
    /// builder does not know it).
    pub fn output(&mut self, name: &str) {
        let dims = self.shapes.get(name).map(|s| self.io_dims(s));
        self.outputs.push(self.value_info(name, dims.as_deref()));
    }

    /// A float32 initializer; returns its (unique) name.
    pub fn init_f32(&mut self, name: &str, shape: &[usize], data: Vec<f32>) -> String {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "initializer {name}"
        );
        let name = self.unique(name.to_string());
        self.initializers.push(pb::TensorProto {
            name: name.clone(),
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Float as i32,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    /// An int64 initializer; returns its (unique) name.
    pub fn init_i64(&mut self, name: &str, shape: &[usize], data: Vec<i64>) -> String {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "initializer {name}"
        );
        let name = self.unique(name.to_string());
        self.initializers.push(pb::TensorProto {
            name: name.clone(),
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Int64 as i32,
            int64_data: data,
            ..Default::default()
        });
        name
    }

    /// A raw node: `/{scope with . as /}/{op}` with one output
    /// `{node name}_output_0` of the given shape (`None` for shape-only
    /// tensors). Returns the output name.
    pub fn node(
        &mut self,
        scope: &str,
        op: &str,
        inputs: &[&str],
        attrs: &[(&str, Attr)],
        out_shape: Option<Vec<usize>>,
    ) -> String {
        let path = if scope.is_empty() {
            String::new()
        } else {
            format!("/{}", scope.replace('.', "/"))
        };
        let name = self.unique(format!("{path}/{op}"));
        let out = self.unique(format!("{name}_output_0"));
        let attribute = attrs
            .iter()
            .map(|(n, a)| {
                let mut p = pb::AttributeProto {
                    name: n.to_string(),
                    ..Default::default()
                };
                match a {
                    Attr::Int(i) => {
                        p.r#type = AttributeType::Int as i32;
                        p.i = *i;
                    }
                    Attr::Ints(v) => {
                        p.r#type = AttributeType::Ints as i32;
                        p.ints = v.clone();
                    }
                    Attr::Float(f) => {
                        p.r#type = AttributeType::Float as i32;
                        p.f = *f;
                    }
                    Attr::Str(s) => {
                        p.r#type = AttributeType::String as i32;
                        p.s = s.as_bytes().to_vec();
                    }
                }
                p
            })
            .collect();
        self.nodes.push(pb::NodeProto {
            name,
            op_type: op.to_string(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            attribute,
            ..Default::default()
        });
        if let Some(s) = out_shape {
            self.shapes.insert(out.clone(), s);
        }
        out
    }

    fn param_name(scope: &str, what: &str) -> String {
        format!("{scope}.{what}")
    }

    /// A square-kernel convolution with He-uniform weights.
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &mut self,
        scope: &str,
        x: &str,
        out_c: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
        bias: bool,
    ) -> String {
        self.conv_full(
            scope,
            x,
            out_c,
            [kernel, kernel],
            [stride, stride],
            Pads2d::same(pad),
            1,
            bias,
        )
    }

    /// A general 2-D convolution.
    #[allow(clippy::too_many_arguments)]
    pub fn conv_full(
        &mut self,
        scope: &str,
        x: &str,
        out_c: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        pads: Pads2d,
        group: usize,
        bias: bool,
    ) -> String {
        let [n, c, h, w] = self.shapes[x][..] else {
            panic!("conv {scope}: input {x} is not NCHW");
        };
        let fan_in = c / group * kernel[0] * kernel[1];
        let bound = (6.0 / fan_in as f32).sqrt();
        let wdata = self.rng.uniform_vec(out_c * fan_in, -bound, bound);
        let wname = self.init_f32(
            &Self::param_name(scope, "weight"),
            &[out_c, c / group, kernel[0], kernel[1]],
            wdata,
        );
        let mut inputs = vec![x.to_string(), wname];
        if bias {
            let b = self.rng.uniform_vec(out_c, -0.1, 0.1);
            inputs.push(self.init_f32(&Self::param_name(scope, "bias"), &[out_c], b));
        }
        let oh = (h + pads.top + pads.bottom - kernel[0]) / stride[0] + 1;
        let ow = (w + pads.left + pads.right - kernel[1]) / stride[1] + 1;
        let refs: Vec<&str> = inputs.iter().map(|s| s.as_str()).collect();
        self.node(
            scope,
            "Conv",
            &refs,
            &[
                ("dilations", Attr::Ints(vec![1, 1])),
                ("group", Attr::Int(group as i64)),
                (
                    "kernel_shape",
                    Attr::Ints(vec![kernel[0] as i64, kernel[1] as i64]),
                ),
                (
                    "pads",
                    Attr::Ints(vec![
                        pads.top as i64,
                        pads.left as i64,
                        pads.bottom as i64,
                        pads.right as i64,
                    ]),
                ),
                (
                    "strides",
                    Attr::Ints(vec![stride[0] as i64, stride[1] as i64]),
                ),
            ],
            Some(vec![n, out_c, oh, ow]),
        )
    }

    /// BatchNormalization with realistic statistics: scale in `[lo, hi)`,
    /// shift in ±0.2, mean in ±0.3, variance in `[0.5, 2)`.
    pub fn batch_norm_scaled(&mut self, scope: &str, x: &str, lo: f32, hi: f32) -> String {
        let c = self.shapes[x][1];
        let scale = self.rng.uniform_vec(c, lo, hi);
        let shift = self.rng.uniform_vec(c, -0.2, 0.2);
        let mean = self.rng.uniform_vec(c, -0.3, 0.3);
        let var = self.rng.uniform_vec(c, 0.5, 2.0);
        let s = self.init_f32(&Self::param_name(scope, "weight"), &[c], scale);
        let b = self.init_f32(&Self::param_name(scope, "bias"), &[c], shift);
        let m = self.init_f32(&Self::param_name(scope, "running_mean"), &[c], mean);
        let v = self.init_f32(&Self::param_name(scope, "running_var"), &[c], var);
        let mut attrs = vec![
            ("epsilon", Attr::Float(1e-5)),
            ("momentum", Attr::Float(0.9)),
        ];
        if self.opset >= 14 {
            attrs.push(("training_mode", Attr::Int(0)));
        }
        let shape = self.shapes[x].clone();
        self.node(
            scope,
            "BatchNormalization",
            &[x, &s, &b, &m, &v],
            &attrs,
            Some(shape),
        )
    }

    /// BatchNormalization with scale in `[0.5, 1.5)`.
    pub fn batch_norm(&mut self, scope: &str, x: &str) -> String {
        self.batch_norm_scaled(scope, x, 0.5, 1.5)
    }

    pub fn relu(&mut self, scope: &str, x: &str) -> String {
        let shape = self.shapes[x].clone();
        self.node(scope, "Relu", &[x], &[], Some(shape))
    }

    fn pool_attrs(k: usize, s: usize, p: usize) -> Vec<(&'static str, Attr)> {
        vec![
            ("ceil_mode", Attr::Int(0)),
            ("kernel_shape", Attr::Ints(vec![k as i64; 2])),
            ("pads", Attr::Ints(vec![p as i64; 4])),
            ("strides", Attr::Ints(vec![s as i64; 2])),
        ]
    }

    fn pooled(&self, x: &str, k: usize, s: usize, p: usize) -> Vec<usize> {
        let [n, c, h, w] = self.shapes[x][..] else {
            panic!("pool: input {x} is not NCHW");
        };
        vec![n, c, (h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1]
    }

    pub fn max_pool(&mut self, scope: &str, x: &str, k: usize, s: usize, p: usize) -> String {
        let shape = self.pooled(x, k, s, p);
        let attrs = Self::pool_attrs(k, s, p);
        self.node(scope, "MaxPool", &[x], &attrs, Some(shape))
    }

    pub fn avg_pool(
        &mut self,
        scope: &str,
        x: &str,
        k: usize,
        s: usize,
        p: usize,
        count_include_pad: bool,
    ) -> String {
        let shape = self.pooled(x, k, s, p);
        let mut attrs = Self::pool_attrs(k, s, p);
        attrs.push(("count_include_pad", Attr::Int(count_include_pad as i64)));
        self.node(scope, "AveragePool", &[x], &attrs, Some(shape))
    }

    pub fn global_avg_pool(&mut self, scope: &str, x: &str) -> String {
        let s = &self.shapes[x];
        let shape = vec![s[0], s[1], 1, 1];
        self.node(scope, "GlobalAveragePool", &[x], &[], Some(shape))
    }

    /// `[N, ...] → [N, features]` in the builder's [`FlattenStyle`].
    pub fn flatten(&mut self, scope: &str, x: &str) -> String {
        let s = &self.shapes[x];
        let shape = vec![s[0], s[1..].iter().product()];
        match self.flatten_style {
            FlattenStyle::Flatten => self.node(
                scope,
                "Flatten",
                &[x],
                &[("axis", Attr::Int(1))],
                Some(shape),
            ),
            FlattenStyle::View => {
                let sh = self.node(scope, "Shape", &[x], &[], None);
                let zero = self.constant_i64(scope, &[], vec![0]);
                let n = self.node(
                    scope,
                    "Gather",
                    &[&sh, &zero],
                    &[("axis", Attr::Int(0))],
                    None,
                );
                let n = self.unsqueeze0(scope, &n);
                let minus = self.constant_i64(scope, &[1], vec![-1]);
                let target = self.node(
                    scope,
                    "Concat",
                    &[&n, &minus],
                    &[("axis", Attr::Int(0))],
                    None,
                );
                self.reshape_to(scope, x, &target, shape)
            }
        }
    }

    /// A `Constant` node holding int64 values.
    pub fn constant_i64(&mut self, scope: &str, shape: &[usize], data: Vec<i64>) -> String {
        let t = pb::TensorProto {
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Int64 as i32,
            int64_data: data,
            ..Default::default()
        };
        let out = self.node(scope, "Constant", &[], &[], None);
        let node = self.nodes.last_mut().expect("just added");
        node.attribute.push(pb::AttributeProto {
            name: "value".into(),
            r#type: AttributeType::Tensor as i32,
            t: Some(t),
            ..Default::default()
        });
        out
    }

    /// `Unsqueeze(x, axes=[0])`, attribute before opset 13, input from 13.
    fn unsqueeze0(&mut self, scope: &str, x: &str) -> String {
        if self.opset >= 13 {
            let axes = self.constant_i64(scope, &[1], vec![0]);
            self.node(scope, "Unsqueeze", &[x, &axes], &[], None)
        } else {
            self.node(
                scope,
                "Unsqueeze",
                &[x],
                &[("axes", Attr::Ints(vec![0]))],
                None,
            )
        }
    }

    /// `Reshape(x, shape)` where `shape` is a tensor name; `out` is the
    /// resulting batch-1 shape.
    pub fn reshape_to(&mut self, scope: &str, x: &str, target: &str, out: Vec<usize>) -> String {
        let attrs = if self.opset >= 14 {
            vec![("allowzero", Attr::Int(0))]
        } else {
            vec![]
        };
        self.node(scope, "Reshape", &[x, target], &attrs, Some(out))
    }

    /// `Reshape` to a constant target (may contain -1 and 0).
    pub fn reshape(&mut self, scope: &str, x: &str, target: &[i64], out: Vec<usize>) -> String {
        let t = self.constant_i64(scope, &[target.len()], target.to_vec());
        self.reshape_to(scope, x, &t, out)
    }

    /// A fully connected layer in the builder's [`LinearStyle`].
    pub fn linear(&mut self, scope: &str, x: &str, out_f: usize) -> String {
        let [n, in_f] = self.shapes[x][..] else {
            panic!("linear {scope}: input {x} is not [N, features]");
        };
        let bound = (6.0 / in_f as f32).sqrt();
        let w = self.rng.uniform_vec(out_f * in_f, -bound, bound);
        let b = self.rng.uniform_vec(out_f, -0.1, 0.1);
        match self.linear_style {
            LinearStyle::Gemm => {
                let wn = self.init_f32(&Self::param_name(scope, "weight"), &[out_f, in_f], w);
                let bn = self.init_f32(&Self::param_name(scope, "bias"), &[out_f], b);
                self.node(
                    scope,
                    "Gemm",
                    &[x, &wn, &bn],
                    &[
                        ("alpha", Attr::Float(1.0)),
                        ("beta", Attr::Float(1.0)),
                        ("transB", Attr::Int(1)),
                    ],
                    Some(vec![n, out_f]),
                )
            }
            LinearStyle::MatMulAdd => {
                // MatMul reads the weight as [in, out].
                let mut wt = vec![0.0; w.len()];
                for o in 0..out_f {
                    for i in 0..in_f {
                        wt[i * out_f + o] = w[o * in_f + i];
                    }
                }
                let wn = self.init_f32(&format!("onnx::MatMul_{}", scope), &[in_f, out_f], wt);
                let bn = self.init_f32(&Self::param_name(scope, "bias"), &[out_f], b);
                let mm = self.node(scope, "MatMul", &[x, &wn], &[], Some(vec![n, out_f]));
                self.node(scope, "Add", &[&bn, &mm], &[], Some(vec![n, out_f]))
            }
        }
    }

    /// Constant zero-padding of H and W, `[top, left, bottom, right]`, in the
    /// opset's encoding (attribute before 11, inputs from 11, axes from 18).
    pub fn pad(&mut self, scope: &str, x: &str, p: [usize; 4], value: f32) -> String {
        let [n, c, h, w] = self.shapes[x][..] else {
            panic!("pad {scope}: input {x} is not NCHW");
        };
        let shape = Some(vec![n, c, h + p[0] + p[2], w + p[1] + p[3]]);
        let [t, l, b, r] = p.map(|v| v as i64);
        if self.opset < 11 {
            return self.node(
                scope,
                "Pad",
                &[x],
                &[
                    ("mode", Attr::Str("constant".into())),
                    ("pads", Attr::Ints(vec![0, 0, t, l, 0, 0, b, r])),
                    ("value", Attr::Float(value)),
                ],
                shape,
            );
        }
        let v = self.init_f32(&format!("{scope}.value"), &[], vec![value]);
        if self.opset >= 18 {
            let pads = self.constant_i64(scope, &[4], vec![t, l, b, r]);
            let axes = self.constant_i64(scope, &[2], vec![2, 3]);
            self.node(
                scope,
                "Pad",
                &[x, &pads, &v, &axes],
                &[("mode", Attr::Str("constant".into()))],
                shape,
            )
        } else {
            let pads = self.constant_i64(scope, &[8], vec![0, 0, t, l, 0, 0, b, r]);
            self.node(
                scope,
                "Pad",
                &[x, &pads, &v],
                &[("mode", Attr::Str("constant".into()))],
                shape,
            )
        }
    }

    /// Inference Dropout (identity), in the opset's encoding.
    pub fn dropout(&mut self, scope: &str, x: &str) -> String {
        let shape = self.shapes[x].clone();
        if self.opset >= 12 {
            let ratio = self.init_f32(&format!("{scope}.ratio"), &[], vec![0.5]);
            self.node(scope, "Dropout", &[x, &ratio], &[], Some(shape))
        } else {
            self.node(
                scope,
                "Dropout",
                &[x],
                &[("ratio", Attr::Float(0.5))],
                Some(shape),
            )
        }
    }

    pub fn softmax(&mut self, scope: &str, x: &str) -> String {
        let shape = self.shapes[x].clone();
        self.node(
            scope,
            "Softmax",
            &[x],
            &[("axis", Attr::Int(1))],
            Some(shape),
        )
    }

    pub fn add(&mut self, scope: &str, a: &str, b: &str) -> String {
        let shape = self.shapes[a].clone();
        self.node(scope, "Add", &[a, b], &[], Some(shape))
    }

    /// The serialized `ModelProto`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let model = pb::ModelProto {
            ir_version: 8,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: self.opset,
            }],
            producer_name: "precis-builder".into(),
            graph: Some(pb::GraphProto {
                name: self.graph_name.clone(),
                node: self.nodes.clone(),
                initializer: self.initializers.clone(),
                input: self.inputs.clone(),
                output: self.outputs.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        model.encode_to_vec()
    }
}
