//! The translation proper: ONNX protobuf nodes (structure) + tract's analysed
//! facts (shapes and constant values) → [`ir::Graph`].

use super::{one_line, FrontendError};
use ir::{Conv2d, Graph, Linear, NodeId, Op, Pads2d, Pool2d, ShapeFmt};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use tract_onnx::pb::{self, attribute_proto::AttributeType, NodeProto};
use tract_onnx::prelude::{
    Datum, DatumType, InferenceFact, InferenceModel, InferenceModelExt, OutletId,
};
use tract_onnx::tract_hir::infer::Factoid;

type TTensor = tract_onnx::prelude::Tensor;

/// ONNX `TensorProto.DataType.FLOAT`.
const ONNX_FLOAT: i32 = 1;

/// The opsets this frontend knows the semantics of.
const OPSETS: std::ops::RangeInclusive<i64> = 9..=21;

/// Ops that carry activations, with the attributes precis understands.
fn data_op_attrs(op: &str) -> Option<&'static [&'static str]> {
    Some(match op {
        "Conv" => &[
            "auto_pad",
            "dilations",
            "group",
            "kernel_shape",
            "pads",
            "strides",
        ],
        "BatchNormalization" => &["epsilon", "momentum", "spatial", "training_mode"],
        "Relu" | "GlobalAveragePool" | "MatMul" | "Add" | "Mul" | "Sub" | "Div" | "Neg" | "Max"
        | "Min" | "PRelu" | "Identity" => &[],
        "Clip" => &["min", "max"],
        "LeakyRelu" => &["alpha"],
        "ReduceMean" => &["axes", "keepdims", "noop_with_empty_axes"],
        "Squeeze" | "Unsqueeze" => &["axes"],
        "Transpose" => &["perm"],
        "MaxPool" => &[
            "auto_pad",
            "ceil_mode",
            "dilations",
            "kernel_shape",
            "pads",
            "storage_order",
            "strides",
        ],
        "AveragePool" => &[
            "auto_pad",
            "ceil_mode",
            "count_include_pad",
            "dilations",
            "kernel_shape",
            "pads",
            "strides",
        ],
        "Gemm" => &["alpha", "beta", "transA", "transB"],
        "Flatten" | "Concat" | "Softmax" | "LogSoftmax" => &["axis"],
        "Reshape" => &["allowzero"],
        "Pad" => &["mode", "pads", "value"],
        "Dropout" => &["ratio", "seed", "is_test"],
        _ => return None,
    })
}

/// Ops accepted only where tract finds their outputs constant once the input
/// shape is pinned (shape arithmetic, constant folding material). Their
/// attributes are interpreted by tract. (Data ops above are accepted on
/// constants too: `Sub`, `Div`, `Squeeze`, … appear in shape arithmetic.)
const CONSTANT_ONLY_OPS: &[&str] = &[
    "Abs",
    "Cast",
    "Ceil",
    "Constant",
    "ConstantOfShape",
    "Equal",
    "Expand",
    "Floor",
    "Gather",
    "GatherND",
    "Range",
    "ReduceProd",
    "Shape",
    "Size",
    "Slice",
    "Where",
];

/// What to do instead, for ops users' networks commonly contain.
fn unsupported_hint(op: &str) -> Option<&'static str> {
    Some(match op {
        "Sigmoid" | "HardSigmoid" | "HardSwish" | "Tanh" | "Elu" | "Selu" | "Celu" | "Softplus"
        | "Softsign" | "Mish" | "Gelu" | "Erf" | "Silu" | "Swish" => {
            "precis approximates only piecewise-linear activations (Relu, Clip/ReLU6/hardtanh, \
             LeakyRelu, PRelu); replace this activation by one of them (e.g. nn.ReLU) and fine-tune"
        }
        "GatherND" | "Gather" | "Slice" => {
            "torch.onnx.export writes it for tensor indexing, and for an adaptive average \
             pooling whose output size does not divide its input: for that one, export at an \
             input size for which it divides, or use nn.AdaptiveAvgPool2d(1) or nn.AvgPool2d"
        }
        "ReduceMax" | "ReduceSum" | "ReduceL2" | "ReduceLogSumExp" => {
            "of the reductions only ReduceMean over H and W (global average pooling) is supported"
        }
        "Resize" | "Upsample" => "upsampling is not supported",
        "LayerNormalization" | "InstanceNormalization" | "GroupNormalization" => {
            "only inference BatchNormalization is supported (it is an affine map per channel)"
        }
        _ => return None,
    })
}

pub(super) fn convert(
    bytes: &[u8],
    file_name: Option<String>,
    dir: Option<&Path>,
    input_shape: Option<Vec<usize>>,
) -> Result<Graph, FrontendError> {
    let proto = pb::ModelProto::decode(bytes).map_err(|e| FrontendError::Decode(one_line(&e)))?;
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| FrontendError::Model("the model has no graph".into()))?;
    let opset = proto
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .ok_or_else(|| FrontendError::Model("the model imports no ai.onnx opset".into()))?;
    if !OPSETS.contains(&opset) {
        return Err(FrontendError::Model(format!(
            "opset {opset} is not supported (supported: {}..={})",
            OPSETS.start(),
            OPSETS.end()
        )));
    }
    check_names(graph)?;
    for node in &graph.node {
        precheck(node)?;
    }
    check_external_data(graph, dir)?;
    let inputs = pinned_inputs(graph, input_shape)?;

    // tract: parse the same protobuf, pin the inputs, analyse. tract panics
    // on some malformed models instead of returning an error (found by
    // fuzzing: an output naming no tensor, pads shorter than the kernel's
    // rank, a kernel larger than its padded input); that is a refusal too.
    let tract = || -> Result<_, FrontendError> {
        let onnx = tract_onnx::onnx().with_ignore_value_info(true);
        let dir = dir.and_then(|d| d.to_str());
        let parsed = onnx
            .parse(&proto, dir)
            .map_err(|e| FrontendError::Tract(one_line(&e)))?;
        if !parsed.unresolved_inputs.is_empty() {
            return Err(FrontendError::Model(format!(
                "tensor(s) {} are used but never defined",
                parsed.unresolved_inputs.join(", ")
            )));
        }
        let mut model = parsed.model;
        for (ix, (_, shape)) in inputs.iter().enumerate() {
            model
                .set_input_fact(
                    ix,
                    InferenceFact::dt_shape(f32::datum_type(), shape.clone()),
                )
                .map_err(|e| FrontendError::Tract(one_line(&e)))?;
        }
        model
            .analyse(false)
            .map_err(|e| FrontendError::Tract(one_line(&e)))?;
        Ok((model, parsed.outlets_by_name))
    };
    let (model, outlets_by_name) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(tract))
        .map_err(|panic| {
        let msg = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        FrontendError::Tract(format!("internal error on this model: {}", one_line(&msg)))
    })??;

    let name = file_name
        .or_else(|| Some(graph.name.clone()).filter(|n| !n.is_empty()))
        .unwrap_or_else(|| "model".into());
    let mut walker = Walker {
        model: &model,
        outlets: &outlets_by_name,
        opset,
        g: Graph::new(name),
        vals: HashMap::new(),
        const_nodes: HashMap::new(),
        readers: HashMap::new(),
    };
    for node in &graph.node {
        for input in node.input.iter().filter(|i| !i.is_empty()) {
            walker
                .readers
                .entry(input.clone())
                .or_default()
                .push(node.op_type.clone());
        }
    }
    walker.run(graph, &inputs)?;
    let mut g = walker.g;
    g.remove_dead();
    g.validate()?;
    Ok(g)
}

/// `TensorProto.DataLocation.EXTERNAL`.
const EXTERNAL: i32 = 1;

/// Initializers stored outside the model (what `torch.onnx.export` writes by
/// default, in `<model>.onnx.data`) must be reachable: the model was read
/// from a file and the data file is beside it.
fn check_external_data(graph: &pb::GraphProto, dir: Option<&Path>) -> Result<(), FrontendError> {
    for t in &graph.initializer {
        if t.data_location != Some(EXTERNAL) {
            continue;
        }
        let location = t
            .external_data
            .iter()
            .find(|e| e.key == "location")
            .map(|e| e.value.as_str())
            .ok_or_else(|| {
                FrontendError::Model(format!(
                    "initializer '{}' is stored externally but names no location",
                    t.name
                ))
            })?;
        let Some(dir) = dir else {
            return Err(FrontendError::Model(format!(
                "initializer '{}' is stored in the external file '{location}'; read the model from its file, with '{location}' beside it",
                t.name
            )));
        };
        let path = dir.join(location);
        if !path.is_file() {
            return Err(FrontendError::Model(format!(
                "initializer '{}' is stored in '{}', which does not exist; torch.onnx.export writes the weights there: keep that file beside the .onnx",
                t.name,
                path.display()
            )));
        }
    }
    Ok(())
}

/// Refuses names and string attributes with control characters up front
/// (found by fuzzing: a newline in a node name split the error that named
/// the node over two lines), so every message that quotes one is one line.
fn check_names(graph: &pb::GraphProto) -> Result<(), FrontendError> {
    let check = |what: &str, s: &str| {
        if s.chars().any(char::is_control) {
            Err(FrontendError::Model(format!(
                "{what} {:?} contains control characters",
                s
            )))
        } else {
            Ok(())
        }
    };
    check("graph name", &graph.name)?;
    for v in graph
        .input
        .iter()
        .chain(&graph.output)
        .chain(&graph.value_info)
    {
        check("tensor name", &v.name)?;
    }
    for t in &graph.initializer {
        check("initializer name", &t.name)?;
    }
    for n in &graph.node {
        check("node name", &n.name)?;
        check("op type", &n.op_type)?;
        check("op domain", &n.domain)?;
        for t in n.input.iter().chain(&n.output) {
            check("tensor name", t)?;
        }
        for a in &n.attribute {
            check("attribute name", &a.name)?;
            for s in std::iter::once(&a.s).chain(&a.strings) {
                check("string attribute", &String::from_utf8_lossy(s))?;
            }
        }
    }
    Ok(())
}

/// The graph inputs that are not initializers, with the shape each is pinned
/// to (batch 1).
fn pinned_inputs(
    graph: &pb::GraphProto,
    input_shape: Option<Vec<usize>>,
) -> Result<Vec<(String, Vec<usize>)>, FrontendError> {
    let inits: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<&pb::ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !inits.contains(i.name.as_str()))
        .collect();
    if inputs.is_empty() {
        return Err(FrontendError::Model("the graph has no input".into()));
    }
    if input_shape.is_some() && inputs.len() != 1 {
        return Err(FrontendError::Model(format!(
            "an input shape was given but the graph has {} inputs",
            inputs.len()
        )));
    }
    let mut out = Vec::new();
    for input in inputs {
        let name = &input.name;
        let Some(pb::type_proto::Value::TensorType(tt)) =
            input.r#type.as_ref().and_then(|t| t.value.as_ref())
        else {
            return Err(FrontendError::Model(format!(
                "graph input '{name}' is not a tensor"
            )));
        };
        if tt.elem_type != ONNX_FLOAT {
            return Err(FrontendError::Model(format!(
                "graph input '{name}' has element type {}; only float32 inputs are supported",
                elem_type_name(tt.elem_type)
            )));
        }
        // The model's dims: Some(d) when fixed, None when symbolic or absent.
        let dims: Option<Vec<Option<usize>>> = tt.shape.as_ref().map(|s| {
            s.dim
                .iter()
                .map(|d| match d.value {
                    Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) if v > 0 => {
                        Some(v as usize)
                    }
                    _ => None,
                })
                .collect()
        });
        let fmt_dims = |dims: &[Option<usize>]| {
            let parts: Vec<String> = dims
                .iter()
                .map(|d| d.map_or("?".into(), |v| v.to_string()))
                .collect();
            format!("[{}]", parts.join(","))
        };
        let shape = match (&input_shape, dims) {
            (Some(given), dims) => {
                if given.first() != Some(&1) {
                    return Err(FrontendError::Model(format!(
                        "input shape {}: the batch axis must be 1 (executors batch along axis 0)",
                        ShapeFmt(given)
                    )));
                }
                if let Some(dims) = dims {
                    let conflict = dims.len() != given.len()
                        || dims
                            .iter()
                            .zip(given)
                            .skip(1)
                            .any(|(d, g)| d.is_some_and(|d| d != *g));
                    if conflict {
                        return Err(FrontendError::InputShape {
                            input: name.clone(),
                            given: given.clone(),
                            model: fmt_dims(&dims),
                        });
                    }
                }
                given.clone()
            }
            (None, Some(dims)) => {
                if dims.is_empty() {
                    return Err(FrontendError::Model(format!(
                        "graph input '{name}' is a scalar; a batch axis is required"
                    )));
                }
                let mut shape = vec![1];
                for (axis, d) in dims.iter().enumerate().skip(1) {
                    shape.push(d.ok_or_else(|| {
                        FrontendError::Model(format!(
                            "graph input '{name}' has shape {} with axis {axis} unknown; give the input shape explicitly",
                            fmt_dims(&dims)
                        ))
                    })?);
                }
                shape
            }
            (None, None) => {
                return Err(FrontendError::Model(format!(
                    "graph input '{name}' has no shape; give the input shape explicitly"
                )))
            }
        };
        out.push((name.clone(), shape));
    }
    Ok(out)
}

fn elem_type_name(t: i32) -> String {
    pb::tensor_proto::DataType::try_from(t)
        .map(|d| d.as_str_name().to_string())
        .unwrap_or_else(|_| format!("#{t}"))
}

/// The name a node is reported and created under: its ONNX name, or its
/// first output's name when it has none.
fn display_name(node: &NodeProto) -> &str {
    if !node.name.is_empty() {
        &node.name
    } else {
        node.output
            .iter()
            .find(|o| !o.is_empty())
            .map_or("<unnamed>", |s| s.as_str())
    }
}

fn node_err(node: &NodeProto, msg: impl Into<String>) -> FrontendError {
    FrontendError::Node {
        node: display_name(node).to_string(),
        op: node.op_type.clone(),
        msg: msg.into(),
    }
}

/// `unsupported op`, with what to do instead where there is something.
fn unsupported_op(node: &NodeProto) -> FrontendError {
    match unsupported_hint(&node.op_type) {
        Some(hint) => node_err(node, format!("unsupported op; {hint}")),
        None => node_err(node, "unsupported op"),
    }
}

/// Attribute access with errors that name the node and the attribute.
struct Attrs<'a> {
    node: &'a NodeProto,
}

impl<'a> Attrs<'a> {
    fn get(&self, name: &str) -> Option<&'a pb::AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    fn check_type(&self, a: &pb::AttributeProto, want: AttributeType) -> Result<(), FrontendError> {
        // Type 0 (UNDEFINED) comes from old exporters: trust the name.
        if a.r#type != 0 && a.r#type != want as i32 {
            let got = AttributeType::try_from(a.r#type)
                .map(|t| t.as_str_name().to_string())
                .unwrap_or_else(|_| format!("#{}", a.r#type));
            return Err(node_err(
                self.node,
                format!(
                    "attribute {} has type {got}, expected {}",
                    a.name,
                    want.as_str_name()
                ),
            ));
        }
        Ok(())
    }

    fn int(&self, name: &str, default: i64) -> Result<i64, FrontendError> {
        match self.get(name) {
            None => Ok(default),
            Some(a) => {
                self.check_type(a, AttributeType::Int)?;
                Ok(a.i)
            }
        }
    }

    fn float(&self, name: &str, default: f32) -> Result<f32, FrontendError> {
        match self.get(name) {
            None => Ok(default),
            Some(a) => {
                self.check_type(a, AttributeType::Float)?;
                Ok(a.f)
            }
        }
    }

    fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, FrontendError> {
        match self.get(name) {
            None => Ok(None),
            Some(a) => {
                self.check_type(a, AttributeType::Ints)?;
                Ok(Some(a.ints.clone()))
            }
        }
    }

    fn string(&self, name: &str) -> Result<Option<String>, FrontendError> {
        match self.get(name) {
            None => Ok(None),
            Some(a) => {
                self.check_type(a, AttributeType::String)?;
                Ok(Some(String::from_utf8_lossy(&a.s).into_owned()))
            }
        }
    }

    /// `ints` of length 2 with every value ≥ `min`, or the default.
    fn pair(&self, name: &str, default: [usize; 2], min: i64) -> Result<[usize; 2], FrontendError> {
        match self.ints(name)? {
            None => Ok(default),
            Some(v) if v.len() == 2 && v.iter().all(|&x| x >= min) => {
                Ok([v[0] as usize, v[1] as usize])
            }
            Some(v) => Err(node_err(
                self.node,
                format!("attribute {name}={v:?} must be 2 values ≥ {min} (2-D only)"),
            )),
        }
    }
}

/// Shape-independent checks, run before tract sees the model: the op is
/// supported, every attribute is known, attribute values are supported.
fn precheck(node: &NodeProto) -> Result<(), FrontendError> {
    if !(node.domain.is_empty() || node.domain == "ai.onnx") {
        return Err(node_err(
            node,
            format!("unsupported op (domain '{}')", node.domain),
        ));
    }
    let op = node.op_type.as_str();
    let Some(allowed) = data_op_attrs(op) else {
        if CONSTANT_ONLY_OPS.contains(&op) {
            return Ok(());
        }
        return Err(unsupported_op(node));
    };
    for a in &node.attribute {
        if !allowed.contains(&a.name.as_str()) {
            return Err(node_err(
                node,
                format!("attribute {} is not supported", a.name),
            ));
        }
    }
    let at = Attrs { node };
    let unsupported_value = |name: &str, value: String, only: &str| {
        Err(node_err(
            node,
            format!("attribute {name}={value} is not supported (only {only})"),
        ))
    };
    match op {
        "Conv" | "MaxPool" | "AveragePool" => {
            if let Some(mode) = at.string("auto_pad")? {
                if !["NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER", ""].contains(&mode.as_str()) {
                    return unsupported_value(
                        "auto_pad",
                        mode,
                        "NOTSET, VALID, SAME_UPPER, SAME_LOWER",
                    );
                }
            }
            if op != "Conv" {
                if at.ints("kernel_shape")?.is_none() {
                    return Err(node_err(node, "attribute kernel_shape is missing"));
                }
                if let Some(d) = at.ints("dilations")? {
                    if d.iter().any(|&x| x != 1) {
                        return unsupported_value("dilations", format!("{d:?}"), "1");
                    }
                }
            }
            if op == "MaxPool" {
                let so = at.int("storage_order", 0)?;
                if so != 0 {
                    return unsupported_value("storage_order", so.to_string(), "0");
                }
                if node.output.iter().skip(1).any(|o| !o.is_empty()) {
                    return Err(node_err(node, "the Indices output is not supported"));
                }
            }
            let ceil = at.int("ceil_mode", 0)?;
            if ceil != 0 && ceil != 1 {
                return unsupported_value("ceil_mode", ceil.to_string(), "0");
            }
        }
        "BatchNormalization" => {
            let spatial = at.int("spatial", 1)?;
            if spatial != 1 {
                return unsupported_value("spatial", spatial.to_string(), "1");
            }
            let training = at.int("training_mode", 0)?;
            if training != 0 {
                return unsupported_value("training_mode", training.to_string(), "0");
            }
            if node.output.iter().skip(1).any(|o| !o.is_empty()) {
                return Err(node_err(
                    node,
                    "training outputs (running mean/var) are not supported",
                ));
            }
        }
        "Gemm" => {
            let ta = at.int("transA", 0)?;
            if ta != 0 {
                return unsupported_value("transA", ta.to_string(), "0");
            }
            at.int("transB", 0)?;
            at.float("alpha", 1.0)?;
            at.float("beta", 1.0)?;
        }
        "Pad" => {
            if let Some(mode) = at.string("mode")? {
                if mode != "constant" {
                    return unsupported_value("mode", format!("'{mode}'"), "'constant'");
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// What an ONNX tensor name stands for while walking.
#[derive(Clone)]
enum Val {
    /// An activation computed by an IR node.
    Data(NodeId),
    /// A constant (tract knows its value).
    Const,
    /// The output of a removed Softmax: allowed only as a graph output.
    Softmax(NodeId),
    /// A tensor precis does not compute; the string says what it is.
    Unavailable(&'static str),
}

struct Walker<'a> {
    model: &'a InferenceModel,
    outlets: &'a HashMap<String, OutletId>,
    opset: i64,
    g: Graph,
    vals: HashMap<String, Val>,
    /// IR Constant nodes already made for constant tensors used as operands.
    const_nodes: HashMap<String, NodeId>,
    /// The op types of the nodes reading each tensor (for error hints).
    readers: HashMap<String, Vec<String>>,
}

impl Walker<'_> {
    fn fact(&self, name: &str) -> Option<&InferenceFact> {
        let outlet = self.outlets.get(name)?;
        self.model.outlet_fact(*outlet).ok()
    }

    fn konst(&self, name: &str) -> Option<Arc<TTensor>> {
        self.fact(name)?.value.concretize()
    }

    /// tract's shape of a tensor, fully known once the input is pinned.
    fn tract_shape(&self, node: &NodeProto, name: &str) -> Result<Vec<usize>, FrontendError> {
        self.fact(name)
            .and_then(|f| f.shape.as_concrete_finite().ok().flatten())
            .map(|s| s.to_vec())
            .ok_or_else(|| node_err(node, format!("tract could not infer the shape of '{name}'")))
    }

    fn run(
        &mut self,
        graph: &pb::GraphProto,
        inputs: &[(String, Vec<usize>)],
    ) -> Result<(), FrontendError> {
        for (name, shape) in inputs {
            let id = self.g.add_input(name.clone(), shape.clone())?;
            self.vals.insert(name.clone(), Val::Data(id));
        }
        for init in &graph.initializer {
            self.vals.insert(init.name.clone(), Val::Const);
        }
        for node in &graph.node {
            for input in node.input.iter().filter(|i| !i.is_empty()) {
                if !self.vals.contains_key(input) {
                    return Err(node_err(
                        node,
                        format!("input '{input}' is not defined before the node (nodes must be in topological order)"),
                    ));
                }
            }
            let outputs: Vec<&String> = node.output.iter().filter(|o| !o.is_empty()).collect();
            if !outputs.is_empty() && outputs.iter().all(|o| self.konst(o).is_some()) {
                for o in outputs {
                    self.vals.insert(o.clone(), Val::Const);
                }
                continue;
            }
            self.node(node)?;
        }
        let mut outs = Vec::new();
        for o in &graph.output {
            let id = match self.vals.get(&o.name) {
                Some(Val::Data(id)) | Some(Val::Softmax(id)) => *id,
                Some(Val::Const) => self.const_node(&o.name)?,
                Some(Val::Unavailable(what)) => {
                    return Err(FrontendError::Model(format!(
                        "graph output '{}' is {what}",
                        o.name
                    )))
                }
                None => {
                    return Err(FrontendError::Model(format!(
                        "graph output '{}' is not computed by any node",
                        o.name
                    )))
                }
            };
            outs.push(id);
        }
        if outs.is_empty() {
            return Err(FrontendError::Model("the graph has no outputs".into()));
        }
        self.g.set_outputs(outs);
        Ok(())
    }

    /// An IR Constant node holding a constant tensor (one per tensor name).
    fn const_node(&mut self, name: &str) -> Result<NodeId, FrontendError> {
        if let Some(&id) = self.const_nodes.get(name) {
            return Ok(id);
        }
        let t = self
            .konst(name)
            .ok_or_else(|| FrontendError::Model(format!("constant '{name}' has no value")))?;
        let t =
            to_ir(&t).map_err(|msg| FrontendError::Model(format!("constant '{name}': {msg}")))?;
        let node_name = self.g.fresh_name(name);
        let id = self.g.add(node_name, Op::Constant(t), &[])?;
        self.const_nodes.insert(name.to_string(), id);
        Ok(id)
    }

    /// The name of input `ix`, which must be present.
    fn input_name<'n>(&self, node: &'n NodeProto, ix: usize) -> Result<&'n str, FrontendError> {
        node.input
            .get(ix)
            .map(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| node_err(node, format!("input #{ix} is missing")))
    }

    fn has_input(node: &NodeProto, ix: usize) -> bool {
        node.input.get(ix).is_some_and(|s| !s.is_empty())
    }

    /// Operand `ix` as an IR node (constants become Constant nodes).
    fn operand(&mut self, node: &NodeProto, ix: usize) -> Result<NodeId, FrontendError> {
        let name = self.input_name(node, ix)?;
        match self.vals.get(name).cloned() {
            Some(Val::Data(id)) => Ok(id),
            Some(Val::Const) => self.const_node(name),
            Some(Val::Softmax(_)) => Err(node_err(
                node,
                format!("input '{name}' is a Softmax output; Softmax is supported only as the last op of the graph"),
            )),
            Some(Val::Unavailable(what)) => {
                Err(node_err(node, format!("input '{name}' is {what}")))
            }
            None => Err(node_err(node, format!("input '{name}' is not defined"))),
        }
    }

    /// Operand `ix` as an activation (not a constant).
    fn data(&mut self, node: &NodeProto, ix: usize) -> Result<NodeId, FrontendError> {
        let name = self.input_name(node, ix)?;
        if matches!(self.vals.get(name), Some(Val::Const)) {
            return Err(node_err(
                node,
                format!("input #{ix} ('{name}') is a constant; precis expects an activation there"),
            ));
        }
        self.operand(node, ix)
    }

    /// Input `ix` as a constant tensor.
    fn konst_input(
        &self,
        node: &NodeProto,
        ix: usize,
        what: &str,
    ) -> Result<Arc<TTensor>, FrontendError> {
        let name = self.input_name(node, ix)?;
        self.konst(name).ok_or_else(|| {
            node_err(
                node,
                format!("input #{ix} ('{name}', the {what}) must be a constant"),
            )
        })
    }

    fn konst_f32(
        &self,
        node: &NodeProto,
        ix: usize,
        what: &str,
    ) -> Result<ir::Tensor, FrontendError> {
        let t = self.konst_input(node, ix, what)?;
        to_ir(&t).map_err(|msg| node_err(node, format!("{what}: {msg}")))
    }

    fn konst_i64(
        &self,
        node: &NodeProto,
        ix: usize,
        what: &str,
    ) -> Result<Vec<i64>, FrontendError> {
        let t = self.konst_input(node, ix, what)?;
        to_i64(&t).map_err(|msg| node_err(node, format!("{what}: {msg}")))
    }

    fn shape_of(&self, id: NodeId) -> Vec<usize> {
        self.g.node(id).shape.clone()
    }

    /// Adds the IR node for `node`'s first output and checks its shape
    /// against tract's.
    fn emit(
        &mut self,
        node: &NodeProto,
        op: Op,
        operands: &[NodeId],
    ) -> Result<NodeId, FrontendError> {
        let out = self.input_output(node)?;
        let name = self.g.fresh_name(display_name(node));
        let id = self.g.add(name, op, operands)?;
        self.check_shape(node, id, &out)?;
        self.vals.insert(out, Val::Data(id));
        Ok(id)
    }

    /// Like [`Self::emit`], for an intermediate node of a multi-node
    /// translation (no ONNX tensor of its own).
    fn emit_part(
        &mut self,
        node: &NodeProto,
        suffix: &str,
        op: Op,
        operands: &[NodeId],
    ) -> Result<NodeId, FrontendError> {
        let name = self
            .g
            .fresh_name(&format!("{}{suffix}", display_name(node)));
        Ok(self.g.add(name, op, operands)?)
    }

    fn input_output(&self, node: &NodeProto) -> Result<String, FrontendError> {
        node.output
            .first()
            .filter(|o| !o.is_empty())
            .cloned()
            .ok_or_else(|| node_err(node, "the node has no output"))
    }

    /// Compares an IR node's shape with tract's for the same tensor. tract's
    /// inference does not always reach a shape (e.g. after an opset-18 `Pad`
    /// with `axes`); the IR's own shape inference stands alone there.
    fn check_shape(&self, node: &NodeProto, id: NodeId, out: &str) -> Result<(), FrontendError> {
        let Ok(tract) = self.tract_shape(node, out) else {
            return Ok(());
        };
        let ours = &self.g.node(id).shape;
        if *ours != tract {
            return Err(node_err(
                node,
                format!(
                    "precis infers shape {} for '{out}' but tract infers {}",
                    ShapeFmt(ours),
                    ShapeFmt(&tract)
                ),
            ));
        }
        Ok(())
    }

    /// Makes `node`'s first output stand for `val`.
    fn alias(&mut self, node: &NodeProto, val: Val) -> Result<(), FrontendError> {
        let out = self.input_output(node)?;
        self.vals.insert(out, val);
        Ok(())
    }

    fn node(&mut self, node: &NodeProto) -> Result<(), FrontendError> {
        let at = Attrs { node };
        match node.op_type.as_str() {
            "Conv" => self.conv(node, &at),
            "BatchNormalization" => {
                let x = self.data(node, 0)?;
                let bn = ir::BatchNorm {
                    scale: self.konst_f32(node, 1, "scale")?,
                    bias: self.konst_f32(node, 2, "bias")?,
                    mean: self.konst_f32(node, 3, "mean")?,
                    var: self.konst_f32(node, 4, "variance")?,
                    epsilon: at.float("epsilon", 1e-5)?,
                };
                self.emit(node, Op::BatchNorm(bn), &[x])?;
                Ok(())
            }
            "Relu" => {
                let x = self.data(node, 0)?;
                self.emit(node, Op::Relu, &[x])?;
                Ok(())
            }
            "MaxPool" | "AveragePool" => self.pool(node, &at),
            "GlobalAveragePool" => {
                let x = self.data(node, 0)?;
                self.require_nchw(node, x)?;
                self.emit(node, Op::GlobalAveragePool, &[x])?;
                Ok(())
            }
            "Gemm" => self.gemm(node, &at),
            "MatMul" => {
                let x = self.data_2d(node)?;
                let b = self.konst_f32(node, 1, "weight")?;
                let weight = transpose2(node, &b)?;
                self.emit(node, Op::Linear(Linear { weight, bias: None }), &[x])?;
                Ok(())
            }
            "Add" | "Mul" | "Sub" | "Div" => self.binary(node),
            "Neg" => {
                let x = self.data(node, 0)?;
                let minus = self.scalar_part(node, ".minus_one", -1.0)?;
                self.emit(node, Op::Mul, &[x, minus])?;
                Ok(())
            }
            "Clip" => self.clip(node, &at),
            "Max" | "Min" => self.min_max(node),
            "LeakyRelu" => {
                let x = self.data(node, 0)?;
                let alpha = at.float("alpha", 0.01)?;
                self.leaky(node, x, ir::Tensor::scalar(alpha))
            }
            "PRelu" => {
                let x = self.data(node, 0)?;
                let slope = self.konst_f32(node, 1, "slope")?;
                let shape = self.shape_of(x);
                let fits = ir::broadcast(&shape, &slope.shape).is_ok_and(|s| s == shape);
                if !fits {
                    return Err(node_err(
                        node,
                        format!(
                            "slope of shape {} does not broadcast to the activation {}",
                            ShapeFmt(&slope.shape),
                            ShapeFmt(&shape)
                        ),
                    ));
                }
                self.leaky(node, x, slope)
            }
            "ReduceMean" => self.reduce_mean(node, &at),
            "Squeeze" | "Unsqueeze" => self.squeeze(node, &at),
            "Transpose" => self.transpose(node, &at),
            "Flatten" => {
                let x = self.data(node, 0)?;
                let rank = self.shape_of(x).len() as i64;
                let axis = at.int("axis", 1)?;
                let axis = normalize_axis(node, axis, rank + 1)?;
                if axis == 0 {
                    return Err(node_err(
                        node,
                        "attribute axis=0 would merge the batch axis",
                    ));
                }
                self.emit(node, Op::Flatten { axis }, &[x])?;
                Ok(())
            }
            "Reshape" => {
                let x = self.data(node, 0)?;
                let target = self.konst_i64(node, 1, "target shape")?;
                let out = self.input_output(node)?;
                let shape = match self.tract_shape(node, &out) {
                    Ok(s) => s,
                    Err(_) => {
                        let allowzero = at.int("allowzero", 0)? != 0;
                        resolve_reshape(&self.shape_of(x), &target, allowzero)
                            .map_err(|msg| node_err(node, msg))?
                    }
                };
                if shape.first() != Some(&1) {
                    return Err(node_err(
                        node,
                        format!("reshaping to {} moves the batch axis; the first dimension must stay the batch", ShapeFmt(&shape)),
                    ));
                }
                self.emit(node, Op::Reshape { shape }, &[x])?;
                Ok(())
            }
            "Concat" => {
                let mut operands = Vec::new();
                for ix in 0..node.input.len() {
                    operands.push(self.operand(node, ix)?);
                }
                let rank = operands.first().map_or(0, |&o| self.shape_of(o).len()) as i64;
                let axis = normalize_axis(node, at.int("axis", 0)?, rank)?;
                if axis == 0 {
                    return Err(node_err(
                        node,
                        "attribute axis=0 would concatenate along the batch axis",
                    ));
                }
                self.emit(node, Op::Concat { axis }, &operands)?;
                Ok(())
            }
            "Pad" => self.pad(node, &at),
            "Dropout" => {
                if Self::has_input(node, 2) {
                    let t = self.konst_i64(node, 2, "training_mode")?;
                    if t.iter().any(|&v| v != 0) {
                        return Err(node_err(node, "training_mode=true is not supported"));
                    }
                }
                let x = self.data(node, 0)?;
                self.alias(node, Val::Data(x))?;
                if let Some(mask) = node.output.get(1).filter(|m| !m.is_empty()) {
                    self.vals.insert(
                        mask.clone(),
                        Val::Unavailable("a Dropout mask (not supported)"),
                    );
                }
                Ok(())
            }
            "Identity" => {
                let name = self.input_name(node, 0)?;
                let val = self
                    .vals
                    .get(name)
                    .cloned()
                    .ok_or_else(|| node_err(node, format!("input '{name}' is not defined")))?;
                self.alias(node, val)
            }
            "Softmax" | "LogSoftmax" => {
                let x = self.data(node, 0)?;
                let rank = self.shape_of(x).len() as i64;
                let default = if self.opset >= 13 { -1 } else { 1 };
                let axis = normalize_axis(node, at.int("axis", default)?, rank)?;
                // Before opset 13 the op normalises over all axes from `axis`
                // on, which always includes the last; from 13 on only `axis`.
                if self.opset >= 13 && axis as i64 != rank - 1 {
                    return Err(node_err(
                        node,
                        format!("attribute axis={axis} is not the last axis; only a Softmax over the classes can be removed"),
                    ));
                }
                self.alias(node, Val::Softmax(x))
            }
            op if CONSTANT_ONLY_OPS.contains(&op) => {
                let msg =
                    "supported only on constants (shape computations); here it reads an activation";
                Err(node_err(
                    node,
                    match unsupported_hint(op) {
                        Some(hint) => format!("{msg}; {hint}"),
                        None => msg.to_string(),
                    },
                ))
            }
            _ => Err(unsupported_op(node)),
        }
    }

    fn require_nchw(&self, node: &NodeProto, x: NodeId) -> Result<[usize; 4], FrontendError> {
        match self.shape_of(x)[..] {
            [n, c, h, w] => Ok([n, c, h, w]),
            ref s => Err(node_err(
                node,
                format!(
                    "only 2-D spatial data (NCHW) is supported, got {}",
                    ShapeFmt(s)
                ),
            )),
        }
    }

    /// Spatial pads from `auto_pad` / `pads`.
    fn pads(
        &self,
        node: &NodeProto,
        at: &Attrs,
        hw: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        dilation: [usize; 2],
    ) -> Result<Pads2d, FrontendError> {
        let mode = at.string("auto_pad")?.unwrap_or_default();
        match mode.as_str() {
            "" | "NOTSET" => match at.ints("pads")? {
                None => Ok(Pads2d::default()),
                Some(p) if p.len() == 4 && p.iter().all(|&x| x >= 0) => Ok(Pads2d {
                    top: p[0] as usize,
                    left: p[1] as usize,
                    bottom: p[2] as usize,
                    right: p[3] as usize,
                }),
                Some(p) => Err(node_err(
                    node,
                    format!("attribute pads={p:?} must be 4 values ≥ 0 (2-D only)"),
                )),
            },
            "VALID" => Ok(Pads2d::default()),
            same => {
                let mut begin = [0; 2];
                let mut end = [0; 2];
                for i in 0..2 {
                    let out = hw[i].div_ceil(stride[i]);
                    let span = (kernel[i] - 1) * dilation[i] + 1;
                    let total = ((out - 1) * stride[i] + span).saturating_sub(hw[i]);
                    let small = total / 2;
                    let (b, e) = if same == "SAME_UPPER" {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    };
                    begin[i] = b;
                    end[i] = e;
                }
                Ok(Pads2d {
                    top: begin[0],
                    left: begin[1],
                    bottom: end[0],
                    right: end[1],
                })
            }
        }
    }

    fn conv(&mut self, node: &NodeProto, at: &Attrs) -> Result<(), FrontendError> {
        let x = self.data(node, 0)?;
        let [_, _, h, w] = self.require_nchw(node, x)?;
        let weight = self.konst_f32(node, 1, "weight")?;
        if weight.shape.len() != 4 {
            return Err(node_err(
                node,
                format!("weight must be 4-D, got {}", ShapeFmt(&weight.shape)),
            ));
        }
        let kernel = [weight.shape[2], weight.shape[3]];
        if let Some(k) = at.ints("kernel_shape")? {
            if k != [kernel[0] as i64, kernel[1] as i64] {
                return Err(node_err(
                    node,
                    format!(
                        "attribute kernel_shape={k:?} does not match weight {}",
                        ShapeFmt(&weight.shape)
                    ),
                ));
            }
        }
        let bias = if Self::has_input(node, 2) {
            Some(self.konst_f32(node, 2, "bias")?)
        } else {
            None
        };
        let stride = at.pair("strides", [1, 1], 1)?;
        let dilation = at.pair("dilations", [1, 1], 1)?;
        let group = at.int("group", 1)?;
        if group < 1 {
            return Err(node_err(
                node,
                format!("attribute group={group} must be ≥ 1"),
            ));
        }
        let pads = self.pads(node, at, [h, w], kernel, stride, dilation)?;
        let conv = Conv2d {
            weight,
            bias,
            stride,
            pads,
            dilation,
            group: group as usize,
        };
        self.emit(node, Op::Conv2d(conv), &[x])?;
        Ok(())
    }

    fn pool(&mut self, node: &NodeProto, at: &Attrs) -> Result<(), FrontendError> {
        let x = self.data(node, 0)?;
        let [_, _, h, w] = self.require_nchw(node, x)?;
        let kernel = at.pair("kernel_shape", [0, 0], 1)?;
        let stride = at.pair("strides", [1, 1], 1)?;
        let pads = self.pads(node, at, [h, w], kernel, stride, [1, 1])?;
        let pool = Pool2d {
            kernel,
            stride,
            pads,
        };
        let op = if node.op_type == "MaxPool" {
            Op::MaxPool(pool)
        } else {
            Op::AveragePool {
                pool,
                count_include_pad: at.int("count_include_pad", 0)? != 0,
            }
        };
        if at.int("ceil_mode", 0)? == 1 {
            // Accepted only where rounding up changes nothing.
            let out = self.input_output(node)?;
            let tract = self.tract_shape(node, &out)?;
            let floor = op
                .infer_shape(&[&self.shape_of(x)])
                .map_err(|msg| node_err(node, msg))?;
            if tract != floor {
                return Err(node_err(
                    node,
                    format!(
                        "attribute ceil_mode=1 is not supported (only 0): it gives {} instead of {}",
                        ShapeFmt(&tract),
                        ShapeFmt(&floor)
                    ),
                ));
            }
        }
        self.emit(node, op, &[x])?;
        Ok(())
    }

    /// The data operand of a linear layer, which must be `[N, features]`.
    fn data_2d(&mut self, node: &NodeProto) -> Result<NodeId, FrontendError> {
        let x = self.data(node, 0)?;
        let xs = self.shape_of(x);
        if xs.len() != 2 {
            return Err(node_err(
                node,
                format!(
                    "only 2-D activations [N, features] are supported, got {}",
                    ShapeFmt(&xs)
                ),
            ));
        }
        Ok(x)
    }

    fn gemm(&mut self, node: &NodeProto, at: &Attrs) -> Result<(), FrontendError> {
        let x = self.data_2d(node)?;
        let b = self.konst_f32(node, 1, "weight")?;
        let weight = if at.int("transB", 0)? != 0 {
            if b.shape.len() != 2 {
                return Err(node_err(
                    node,
                    format!("weight must be 2-D, got {}", ShapeFmt(&b.shape)),
                ));
            }
            b
        } else {
            transpose2(node, &b)?
        };
        let out_features = weight.shape[0];
        let alpha = at.float("alpha", 1.0)?;
        let beta = at.float("beta", 1.0)?;
        let c = if Self::has_input(node, 2) {
            let c = self.konst_f32(node, 2, "bias")?;
            // C broadcasts to [N, out]: accept [out], [1, out], [1] and [].
            let data = match c.shape[..] {
                [n] | [1, n] if n == out_features => c.data,
                [] | [1] | [1, 1] => vec![c.data[0]; out_features],
                _ => {
                    return Err(node_err(
                        node,
                        format!(
                            "bias of shape {} does not broadcast to [1,{out_features}] per sample",
                            ShapeFmt(&c.shape)
                        ),
                    ))
                }
            };
            Some(ir::Tensor::new(vec![out_features], data)?)
        } else {
            None
        };
        if alpha == 1.0 && beta == 1.0 {
            self.emit(node, Op::Linear(Linear { weight, bias: c }), &[x])?;
            return Ok(());
        }
        // General Gemm: alpha·(A·B) + beta·C, kept as separate IR ops.
        let mut y = self.emit_part(
            node,
            "/matmul",
            Op::Linear(Linear { weight, bias: None }),
            &[x],
        )?;
        if alpha != 1.0 {
            let a = self.emit_part(node, "/alpha", Op::Constant(ir::Tensor::scalar(alpha)), &[])?;
            y = self.emit_part(node, "/scale", Op::Mul, &[y, a])?;
        }
        if let Some(mut c) = c {
            c.data.iter_mut().for_each(|v| *v *= beta);
            let c = self.emit_part(node, "/beta_c", Op::Constant(c), &[])?;
            y = self.emit_part(node, "/bias", Op::Add, &[y, c])?;
        }
        let out = self.input_output(node)?;
        self.check_shape(node, y, &out)?;
        self.vals.insert(out, Val::Data(y));
        Ok(())
    }

    /// `Add`, `Mul`, and `Sub`/`Div` as `Add`/`Mul`: `a − b` = `a + (−b)`
    /// (a constant negated, an activation multiplied by −1), `a / c` =
    /// `a · (1/c)` for a constant `c`.
    fn binary(&mut self, node: &NodeProto) -> Result<(), FrontendError> {
        let is_const =
            |w: &Self, ix: usize| matches!(w.vals.get(node.input[ix].as_str()), Some(Val::Const));
        let (a, b) = (self.operand(node, 0)?, self.operand(node, 1)?);
        let out_shape = ir::broadcast(&self.shape_of(a), &self.shape_of(b))
            .map_err(|msg| node_err(node, msg))?;
        for (ix, id) in [(0, a), (1, b)] {
            let other_const = is_const(self, 1 - ix);
            if !is_const(self, ix) && other_const && self.shape_of(id) != out_shape {
                return Err(node_err(
                    node,
                    format!(
                        "the constant operand broadcasts the activation {} to {}; only constants that fit the activation are supported",
                        ShapeFmt(&self.shape_of(id)),
                        ShapeFmt(&out_shape)
                    ),
                ));
            }
        }
        match node.op_type.as_str() {
            "Add" => self.emit(node, Op::Add, &[a, b])?,
            "Mul" => self.emit(node, Op::Mul, &[a, b])?,
            "Sub" => {
                let neg = if is_const(self, 1) {
                    let mut c = self.konst_f32(node, 1, "subtrahend")?;
                    c.data.iter_mut().for_each(|v| *v = -*v);
                    self.emit_part(node, ".neg", Op::Constant(c), &[])?
                } else {
                    let minus = self.scalar_part(node, ".minus_one", -1.0)?;
                    self.emit_part(node, ".neg", Op::Mul, &[b, minus])?
                };
                self.emit(node, Op::Add, &[a, neg])?
            }
            _ => {
                if !is_const(self, 1) {
                    return Err(node_err(
                        node,
                        "division by an activation is not supported (only by constants)",
                    ));
                }
                let mut c = self.konst_f32(node, 1, "divisor")?;
                if c.data.contains(&0.0) {
                    return Err(node_err(node, "the divisor has a zero"));
                }
                c.data
                    .iter_mut()
                    .for_each(|v| *v = (1.0 / *v as f64) as f32);
                let recip = self.emit_part(node, ".recip", Op::Constant(c), &[])?;
                self.emit(node, Op::Mul, &[a, recip])?
            }
        };
        Ok(())
    }

    /// A scalar Constant node named after `node`.
    fn scalar_part(
        &mut self,
        node: &NodeProto,
        suffix: &str,
        v: f32,
    ) -> Result<NodeId, FrontendError> {
        self.emit_part(node, suffix, Op::Constant(ir::Tensor::scalar(v)), &[])
    }

    /// A scalar bound of `Clip`: an input (opset ≥ 11) or an attribute;
    /// `None` when absent or infinite (no bound).
    fn clip_bound(
        &self,
        node: &NodeProto,
        at: &Attrs,
        ix: usize,
        name: &str,
    ) -> Result<Option<f32>, FrontendError> {
        let v = if self.opset >= 11 {
            if !Self::has_input(node, ix) {
                return Ok(None);
            }
            let t = self.konst_f32(node, ix, name)?;
            if t.len() != 1 {
                return Err(node_err(
                    node,
                    format!("the {name} must be a scalar, got {}", ShapeFmt(&t.shape)),
                ));
            }
            t.data[0]
        } else {
            match at.get(name) {
                None => return Ok(None),
                Some(_) => at.float(name, 0.0)?,
            }
        };
        if v.is_nan() {
            return Err(node_err(node, format!("the {name} is NaN")));
        }
        // f32::MAX is ONNX's default for an absent bound.
        Ok((v.abs() < f32::MAX).then_some(v))
    }

    /// `Clip(x, lo, hi)` (ReLU6, hardtanh, clamp) from ReLUs.
    fn clip(&mut self, node: &NodeProto, at: &Attrs) -> Result<(), FrontendError> {
        let x = self.data(node, 0)?;
        let lo = self.clip_bound(node, at, 1, "min")?;
        let hi = self.clip_bound(node, at, 2, "max")?;
        if let (Some(lo), Some(hi)) = (lo, hi) {
            if lo > hi {
                return Err(node_err(
                    node,
                    format!("min {lo} > max {hi} makes the output constant; not supported"),
                ));
            }
        }
        self.clamp(node, x, lo, hi)
    }

    /// `Max(x, c)` / `Min(x, c)` with a scalar constant `c`: a one-sided clip.
    fn min_max(&mut self, node: &NodeProto) -> Result<(), FrontendError> {
        let present: Vec<usize> = (0..node.input.len())
            .filter(|&i| Self::has_input(node, i))
            .collect();
        let is_const =
            |w: &Self, ix: usize| matches!(w.vals.get(node.input[ix].as_str()), Some(Val::Const));
        let (x, c) = match present[..] {
            [a, b] if !is_const(self, a) && is_const(self, b) => (a, b),
            [a, b] if is_const(self, a) && !is_const(self, b) => (b, a),
            _ => {
                return Err(node_err(
                    node,
                    format!(
                        "supported only as {}(activation, scalar constant)",
                        node.op_type
                    ),
                ))
            }
        };
        let t = self.konst_f32(node, c, "bound")?;
        if t.len() != 1 || t.data[0].is_nan() {
            return Err(node_err(
                node,
                format!(
                    "supported only as {}(activation, scalar constant); the constant has shape {}",
                    node.op_type,
                    ShapeFmt(&t.shape)
                ),
            ));
        }
        let v = (t.data[0].abs() < f32::MAX).then_some(t.data[0]);
        let x = self.data(node, x)?;
        if node.op_type == "Max" {
            self.clamp(node, x, v, None)
        } else {
            self.clamp(node, x, None, v)
        }
    }

    /// `min(max(x, lo), hi)` as `Relu(x − lo) − Relu(x − hi) + lo`, the
    /// ReLUs named `<node>.lo` and `<node>.hi` (one of them for a one-sided
    /// clip: `Relu(x − lo) + lo`, `x − Relu(x − hi)`), the result `<node>`.
    fn clamp(
        &mut self,
        node: &NodeProto,
        x: NodeId,
        lo: Option<f32>,
        hi: Option<f32>,
    ) -> Result<(), FrontendError> {
        // Relu(x − b), named `<node><suffix>`.
        let relu_shifted = |w: &mut Self, b: f32, suffix: &str| -> Result<NodeId, FrontendError> {
            let input = if b == 0.0 {
                x
            } else {
                let c = w.scalar_part(node, &format!("{suffix}.shift_c"), -b)?;
                w.emit_part(node, &format!("{suffix}.shift"), Op::Add, &[x, c])?
            };
            w.emit_part(node, suffix, Op::Relu, &[input])
        };
        match (lo, hi) {
            (None, None) => self.alias(node, Val::Data(x)),
            (Some(0.0), None) => {
                self.emit(node, Op::Relu, &[x])?;
                Ok(())
            }
            (Some(lo), None) => {
                let r = relu_shifted(self, lo, ".lo")?;
                let c = self.scalar_part(node, ".lo_c", lo)?;
                self.emit(node, Op::Add, &[r, c])?;
                Ok(())
            }
            (lo, Some(hi)) => {
                let r_hi = relu_shifted(self, hi, ".hi")?;
                let minus = self.scalar_part(node, ".minus_one", -1.0)?;
                let neg = self.emit_part(node, ".hi.neg", Op::Mul, &[r_hi, minus])?;
                match lo {
                    None => self.emit(node, Op::Add, &[x, neg])?,
                    Some(lo) if lo == 0.0 => {
                        let r_lo = relu_shifted(self, lo, ".lo")?;
                        self.emit(node, Op::Add, &[r_lo, neg])?
                    }
                    Some(lo) => {
                        let r_lo = relu_shifted(self, lo, ".lo")?;
                        let sum = self.emit_part(node, ".sum", Op::Add, &[r_lo, neg])?;
                        let c = self.scalar_part(node, ".lo_c", lo)?;
                        self.emit(node, Op::Add, &[sum, c])?
                    }
                };
                Ok(())
            }
        }
    }

    /// LeakyRelu / PRelu with slope `a` (a scalar or a tensor broadcasting
    /// to the activation): `a·x + (1−a)·Relu(x)`, the ReLU named
    /// `<node>.relu`, the result `<node>`.
    fn leaky(&mut self, node: &NodeProto, x: NodeId, a: ir::Tensor) -> Result<(), FrontendError> {
        if a.data.iter().any(|v| !v.is_finite()) {
            return Err(node_err(node, "the slope is not finite"));
        }
        if a.data.iter().all(|&v| v == 0.0) {
            self.emit(node, Op::Relu, &[x])?;
            return Ok(());
        }
        if a.data.iter().all(|&v| v == 1.0) {
            return self.alias(node, Val::Data(x));
        }
        let mut rest = a.clone();
        rest.data
            .iter_mut()
            .for_each(|v| *v = (1.0 - *v as f64) as f32);
        let r = self.emit_part(node, ".relu", Op::Relu, &[x])?;
        let rest = self.emit_part(node, ".relu.scale_c", Op::Constant(rest), &[])?;
        let pos = self.emit_part(node, ".relu.scale", Op::Mul, &[r, rest])?;
        let a = self.emit_part(node, ".slope", Op::Constant(a), &[])?;
        let lin = self.emit_part(node, ".linear", Op::Mul, &[x, a])?;
        self.emit(node, Op::Add, &[lin, pos])?;
        Ok(())
    }

    /// `ReduceMean` over the two spatial axes of an NCHW activation: global
    /// average pooling (followed by a reshape to `[N, C]` without keepdims).
    fn reduce_mean(&mut self, node: &NodeProto, at: &Attrs) -> Result<(), FrontendError> {
        let x = self.data(node, 0)?;
        let shape = self.shape_of(x);
        let rank = shape.len() as i64;
        let axes = if self.opset >= 18 {
            if Self::has_input(node, 1) {
                Some(self.konst_i64(node, 1, "axes")?)
            } else {
                None
            }
        } else {
            at.ints("axes")?
        };
        let keepdims = at.int("keepdims", 1)? != 0;
        let noop = at.int("noop_with_empty_axes", 0)? != 0;
        let axes = match axes {
            Some(a) if !a.is_empty() => a,
            _ if noop => return self.alias(node, Val::Data(x)),
            _ => (0..rank).collect(),
        };
        let mut norm = axes
            .iter()
            .map(|&a| normalize_axis(node, a, rank))
            .collect::<Result<Vec<_>, _>>()?;
        norm.sort_unstable();
        norm.dedup();
        if rank != 4 || norm != [2, 3] {
            return Err(node_err(
                node,
                format!(
                    "the mean over axes {axes:?} of {} is not supported; only the mean over H and W of an NCHW activation (global average pooling: x.mean((2, 3)), nn.AdaptiveAvgPool2d(1))",
                    ShapeFmt(&shape)
                ),
            ));
        }
        if keepdims {
            self.emit(node, Op::GlobalAveragePool, &[x])?;
        } else {
            let pool = self.emit_part(node, ".pool", Op::GlobalAveragePool, &[x])?;
            let flat = vec![shape[0], shape[1]];
            self.emit(node, Op::Reshape { shape: flat }, &[pool])?;
        }
        Ok(())
    }

    /// The axes of `Squeeze`/`Unsqueeze`: an input from opset 13, an
    /// attribute before.
    fn squeeze_axes(
        &self,
        node: &NodeProto,
        at: &Attrs,
    ) -> Result<Option<Vec<i64>>, FrontendError> {
        if self.opset >= 13 {
            if Self::has_input(node, 1) {
                Ok(Some(self.konst_i64(node, 1, "axes")?))
            } else {
                Ok(None)
            }
        } else {
            at.ints("axes")
        }
    }

    /// `Squeeze` / `Unsqueeze` of size-1 axes other than the batch: a
    /// reshape.
    fn squeeze(&mut self, node: &NodeProto, at: &Attrs) -> Result<(), FrontendError> {
        let x = self.data(node, 0)?;
        let shape = self.shape_of(x);
        let squeeze = node.op_type == "Squeeze";
        let Some(axes) = self.squeeze_axes(node, at)? else {
            if squeeze {
                return Err(node_err(
                    node,
                    "Squeeze without axes would remove the batch axis too; squeeze explicit axes (x.squeeze(-1))",
                ));
            }
            return Err(node_err(node, "the axes are missing"));
        };
        let out_rank = if squeeze {
            shape.len()
        } else {
            shape.len() + axes.len()
        } as i64;
        let mut norm = axes
            .iter()
            .map(|&a| normalize_axis(node, a, out_rank))
            .collect::<Result<Vec<_>, _>>()?;
        norm.sort_unstable();
        norm.dedup();
        if norm.first() == Some(&0) {
            return Err(node_err(
                node,
                format!(
                    "{} of axis 0 moves the batch axis; the first dimension must stay the batch",
                    node.op_type
                ),
            ));
        }
        let out: Vec<usize> = if squeeze {
            if let Some(&a) = norm.iter().find(|&&a| shape[a] != 1) {
                return Err(node_err(
                    node,
                    format!("axis {a} of {} is not of size 1", ShapeFmt(&shape)),
                ));
            }
            (0..shape.len())
                .filter(|a| !norm.contains(a))
                .map(|a| shape[a])
                .collect()
        } else {
            let mut dims = shape.iter().copied();
            (0..out_rank as usize)
                .map(|a| {
                    if norm.contains(&a) {
                        1
                    } else {
                        dims.next().unwrap_or(1)
                    }
                })
                .collect()
        };
        self.reshape_only(node, x, out)
    }

    /// A `Transpose` that moves only size-1 axes (and keeps the batch
    /// first) is a reshape; any other moves data and is refused.
    fn transpose(&mut self, node: &NodeProto, at: &Attrs) -> Result<(), FrontendError> {
        let x = self.data(node, 0)?;
        let shape = self.shape_of(x);
        let rank = shape.len();
        let perm: Vec<i64> = at
            .ints("perm")?
            .unwrap_or_else(|| (0..rank as i64).rev().collect());
        let mut seen = vec![false; rank];
        let valid = perm.len() == rank
            && perm.iter().all(|&p| {
                (0..rank as i64).contains(&p) && !std::mem::replace(&mut seen[p as usize], true)
            });
        if !valid {
            return Err(node_err(
                node,
                format!("perm {perm:?} is not a permutation of the {rank} axes"),
            ));
        }
        let perm: Vec<usize> = perm.iter().map(|&p| p as usize).collect();
        let moved: Vec<usize> = perm.iter().copied().filter(|&p| shape[p] != 1).collect();
        if perm[0] != 0 || moved.windows(2).any(|w| w[0] > w[1]) {
            let out = self.input_output(node)?;
            let gathers = self
                .readers
                .get(&out)
                .is_some_and(|r| r.iter().any(|op| op == "GatherND"));
            let hint = if gathers {
                format!(
                    "; this Transpose → GatherND is what torch.onnx.export writes for an adaptive average pooling whose output size does not divide its input ({} here): export at an input size for which it divides (e.g. 224×224 for torchvision VGG and AlexNet), or use nn.AdaptiveAvgPool2d(1) or nn.AvgPool2d",
                    ShapeFmt(&shape)
                )
            } else {
                String::new()
            };
            return Err(node_err(
                node,
                format!(
                    "perm {perm:?} of {} moves data; only transposes that keep the batch first and move size-1 axes (reshapes) are supported{hint}",
                    ShapeFmt(&shape)
                ),
            ));
        }
        let out = perm.iter().map(|&p| shape[p]).collect();
        self.reshape_only(node, x, out)
    }

    /// `node`'s output as `x` reshaped to `out` (an alias when the shape
    /// does not change).
    fn reshape_only(
        &mut self,
        node: &NodeProto,
        x: NodeId,
        out: Vec<usize>,
    ) -> Result<(), FrontendError> {
        if out == self.shape_of(x) {
            let name = self.input_output(node)?;
            self.check_shape(node, x, &name)?;
            return self.alias(node, Val::Data(x));
        }
        self.emit(node, Op::Reshape { shape: out }, &[x])?;
        Ok(())
    }

    fn pad(&mut self, node: &NodeProto, at: &Attrs) -> Result<(), FrontendError> {
        let x = self.data(node, 0)?;
        self.require_nchw(node, x)?;
        let (pads, value, axes) = if self.opset < 11 {
            let pads = at
                .ints("pads")?
                .ok_or_else(|| node_err(node, "attribute pads is missing"))?;
            (pads, at.float("value", 0.0)?, vec![0, 1, 2, 3])
        } else {
            let pads = self.konst_i64(node, 1, "pads")?;
            let value = if Self::has_input(node, 2) {
                let v = self.konst_f32(node, 2, "constant value")?;
                if v.len() != 1 {
                    return Err(node_err(node, "the constant value must be a scalar"));
                }
                v.data[0]
            } else {
                0.0
            };
            let axes = if Self::has_input(node, 3) {
                let axes = self.konst_i64(node, 3, "axes")?;
                axes.iter()
                    .map(|&a| normalize_axis(node, a, 4))
                    .collect::<Result<Vec<_>, _>>()?
            } else {
                vec![0, 1, 2, 3]
            };
            (pads, value, axes)
        };
        if pads.len() != 2 * axes.len() {
            return Err(node_err(
                node,
                format!("{} pads for {} axes", pads.len(), axes.len()),
            ));
        }
        let mut full = [0i64; 8];
        for (i, &axis) in axes.iter().enumerate() {
            full[axis] = pads[i];
            full[axis + 4] = pads[i + axes.len()];
        }
        if full.iter().any(|&p| p < 0) {
            return Err(node_err(
                node,
                format!("negative pads {pads:?} (cropping) are not supported"),
            ));
        }
        if full[0] != 0 || full[1] != 0 || full[4] != 0 || full[5] != 0 {
            return Err(node_err(
                node,
                format!("pads {pads:?} pad the batch or channel axis; only H and W can be padded"),
            ));
        }
        let pads = Pads2d {
            top: full[2] as usize,
            left: full[3] as usize,
            bottom: full[6] as usize,
            right: full[7] as usize,
        };
        self.emit(node, Op::Pad { pads, value }, &[x])?;
        Ok(())
    }
}

/// ONNX Reshape's target (`0`: copy the input dim unless `allowzero`; `-1`:
/// inferred) resolved against the input shape.
fn resolve_reshape(input: &[usize], target: &[i64], allowzero: bool) -> Result<Vec<usize>, String> {
    let total: usize = input.iter().product();
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(
                *input
                    .get(i)
                    .ok_or_else(|| format!("target {target:?}: no input dim {i} to copy"))?,
            ),
            t if t >= 0 => out.push(t as usize),
            _ => return Err(format!("invalid target shape {target:?}")),
        }
    }
    let known: usize = out.iter().product();
    if let Some(i) = infer {
        if known == 0 || total % known != 0 {
            return Err(format!("cannot reshape {} to {target:?}", ShapeFmt(input)));
        }
        out[i] = total / known;
    }
    if out.iter().product::<usize>() != total {
        return Err(format!("cannot reshape {} to {target:?}", ShapeFmt(input)));
    }
    Ok(out)
}

/// `axis` in `[-rank, rank)` → `[0, rank)`.
fn normalize_axis(node: &NodeProto, axis: i64, rank: i64) -> Result<usize, FrontendError> {
    let a = if axis < 0 { axis + rank } else { axis };
    if a < 0 || a >= rank {
        return Err(node_err(
            node,
            format!("attribute axis={axis} out of range for rank {rank}"),
        ));
    }
    Ok(a as usize)
}

/// The transpose of a 2-D constant (`[in, out]` → `[out, in]`).
fn transpose2(node: &NodeProto, t: &ir::Tensor) -> Result<ir::Tensor, FrontendError> {
    let [r, c] = t.shape[..] else {
        return Err(node_err(
            node,
            format!("weight must be 2-D, got {}", ShapeFmt(&t.shape)),
        ));
    };
    let mut data = vec![0.0; r * c];
    for i in 0..r {
        for j in 0..c {
            data[j * r + i] = t.data[i * c + j];
        }
    }
    Ok(ir::Tensor::new(vec![c, r], data)?)
}

fn is_float(dt: DatumType) -> bool {
    matches!(dt, DatumType::F16 | DatumType::F32 | DatumType::F64)
}

/// A tract constant as an IR tensor (floats only).
fn to_ir(t: &TTensor) -> Result<ir::Tensor, String> {
    if !is_float(t.datum_type()) {
        return Err(format!("expected a float tensor, got {:?}", t.datum_type()));
    }
    let f = t.cast_to::<f32>().map_err(|e| one_line(&e))?;
    let view = f.to_plain_array_view::<f32>().map_err(|e| one_line(&e))?;
    ir::Tensor::new(t.shape().to_vec(), view.iter().copied().collect()).map_err(|e| e.to_string())
}

/// A tract integer constant as i64 values.
fn to_i64(t: &TTensor) -> Result<Vec<i64>, String> {
    if is_float(t.datum_type()) {
        return Err(format!(
            "expected an integer tensor, got {:?}",
            t.datum_type()
        ));
    }
    let i = t.cast_to::<i64>().map_err(|e| one_line(&e))?;
    let view = i.to_plain_array_view::<i64>().map_err(|e| one_line(&e))?;
    Ok(view.iter().copied().collect())
}
