//! The deterministic text form of a circuit (read by snapshot tests and
//! `precis inspect --text`): a header with the parameters, layouts and
//! regions, then one line per node grouped under the layer it implements,
//! each with its level `L`, `log2` scale `S` and placement `@layout.ct`.

use super::{Circuit, Method, Op, Plain};
use std::fmt::Write;

fn v(x: &super::ValueId) -> String {
    format!("%{}", x.0)
}

fn op_text(c: &Circuit, op: &Op) -> String {
    match op {
        Op::Input { ct } => format!("input ct{ct}"),
        Op::Add { a, b } => format!("add {} {}", v(a), v(b)),
        Op::Sub { a, b } => format!("sub {} {}", v(a), v(b)),
        Op::Neg { a } => format!("neg {}", v(a)),
        Op::AddConst { a, c } => format!("add_const {} {c:e}", v(a)),
        Op::AddPlain { a, plain } => format!("add_plain {} {}", v(a), plain_text(c, *plain)),
        Op::MulConst { a, c, scale } => {
            format!("mul_const {} {c:e} @2^{:.4}", v(a), scale.log2())
        }
        Op::MulInt { a, k } => format!("mul_int {} {k}", v(a)),
        Op::MulPlain { a, plain, scale } => format!(
            "mul_plain {} {} @2^{:.4}",
            v(a),
            plain_text(c, *plain),
            scale.log2()
        ),
        Op::Mul { a, b } => format!("mul {} {}", v(a), v(b)),
        Op::Relabel { a, factor } => format!("relabel {} x{factor:e}", v(a)),
        Op::Rotate { a, k } => format!("rotate {} {k}", v(a)),
        Op::Rescale { a } => format!("rescale {}", v(a)),
        Op::DropLevel { a, level } => format!("drop_level {} L{level}", v(a)),
        Op::Bootstrap { a } => format!("bootstrap {}", v(a)),
        Op::LinearTransform {
            inputs,
            region,
            output,
            input,
            ct,
            scale,
        } => {
            let r = &c.regions[*region as usize];
            let o = &r.outputs[*output as usize];
            let prog = o.transforms[*input as usize]
                .as_ref()
                .map(|t| &t.per_ct[*ct as usize]);
            let (babies, giants, products) = prog
                .map(|b| (b.baby_rotations(), b.giant_rotations(), b.products()))
                .unwrap_or_default();
            let fold = match prog_method(o, *input) {
                Some(Method::Fold { step, count }) => format!(" fold {step}x{count}"),
                _ => String::new(),
            };
            let args: Vec<String> = inputs.iter().map(v).collect();
            format!(
                "linear_transform r{region}.o{output}.i{input} ct{ct} ({}) @2^{:.4} diagonals {products} babies {babies} giants {giants}{fold}",
                args.join(" "),
                scale.log2()
            )
        }
        Op::Reinterpret { a, layout, ct } => format!("reinterpret {} @{layout}.{ct}", v(a)),
    }
}

fn prog_method(o: &super::RegionOutput, input: u32) -> Option<Method> {
    o.transforms
        .get(input as usize)
        .and_then(|t| t.as_ref())
        .map(|t| t.method)
}

fn plain_text(c: &Circuit, i: u32) -> String {
    match c.plains.get(i as usize) {
        Some(Plain::Bias { region, output, ct }) => format!("bias(r{region}.o{output} ct{ct})"),
        Some(Plain::Mask { layout, ct, value }) => format!("mask(@{layout}.{ct} = {value:e})"),
        None => format!("plain{i}?"),
    }
}

pub(super) fn to_text(c: &Circuit) -> String {
    let mut out = String::new();
    let p = &c.params;
    let _ = writeln!(
        out,
        "circuit {} preset {} N=2^{} slots={} levels={} fresh=L{} logQP={:.1}{}",
        c.name,
        p.preset,
        p.log_n,
        p.slots,
        p.max_level(),
        p.fresh_level,
        p.log_qp,
        if p.secure { "" } else { " INSECURE" }
    );
    if let Some(bs) = &p.bootstrap {
        let _ = writeln!(
            out,
            "bootstrap out=L{} scale=2^{:.4} message=2^{:.4} min_in=L{} depth={} precision={:.2}",
            bs.output_level,
            bs.output_scale.log2(),
            bs.message_scale.log2(),
            bs.minimum_input_level,
            bs.depth,
            bs.precision_bits
        );
    }
    for (k, v) in &c.notes {
        let _ = writeln!(out, "note {k}: {v}");
    }
    for (i, l) in c.layouts.iter().enumerate() {
        let _ = writeln!(out, "layout {i}: {}", l.describe());
    }
    for (i, r) in c.regions.iter().enumerate() {
        let outs: Vec<String> = r
            .outputs
            .iter()
            .map(|o| {
                let m: Vec<String> = o
                    .transforms
                    .iter()
                    .map(|t| match t.as_ref().map(|t| t.method) {
                        None => "-".to_string(),
                        Some(Method::Diagonal) => "diagonal".to_string(),
                        Some(Method::Fold { step, count }) => format!("fold {step}x{count}"),
                    })
                    .collect();
                format!("@{} {}", o.layout, m.join("|"))
            })
            .collect();
        let ins: Vec<String> = r.inputs.iter().map(|l| format!("@{l}")).collect();
        let _ = writeln!(
            out,
            "region {i} {}: {} ops, in [{}] out [{}]",
            r.name,
            r.graph.node_count() - r.graph.inputs().len(),
            ins.join(" "),
            outs.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "input {} {:?} @{} L{} S=2^{:.4}",
        c.input.name,
        c.input.shape,
        c.input.layout,
        c.input.level,
        c.input.scale.log2()
    );
    let mut layer = u32::MAX;
    for (i, n) in c.nodes.iter().enumerate() {
        if n.layer != layer {
            layer = n.layer;
            let l = &c.layers[layer as usize];
            let _ = writeln!(out, "# {} ({})", l.name, l.kind);
        }
        let place = n
            .placement
            .map_or("-".to_string(), |p| format!("@{}.{}", p.layout, p.ct));
        let _ = writeln!(
            out,
            "%{i} = {} ; L{} S=2^{:.4} {place}",
            op_text(c, &n.op),
            n.level,
            n.scale.log2()
        );
    }
    let outs: Vec<String> = c.output.values.iter().map(v).collect();
    let _ = writeln!(
        out,
        "output {} {:?} @{} = {}",
        c.output.name,
        c.output.shape,
        c.output.layout,
        outs.join(" ")
    );
    let rots: Vec<String> = c
        .rotations
        .iter()
        .map(|(k, l)| format!("{k}@L{l}"))
        .collect();
    let _ = writeln!(out, "rotations {}: {}", c.rotations.len(), rots.join(" "));
    out
}
