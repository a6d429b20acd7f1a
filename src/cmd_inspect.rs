//! `precis inspect`: what a model is made of.

use crate::model::{load_onnx, parse_shape};
use anyhow::Result;
use ir::{Graph, Op, ShapeFmt};
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model, or a circuit file written by `precis compile`.
    model: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// For a circuit: print its full text form (every ciphertext operation).
    #[arg(long)]
    text: bool,
    /// The input shape (batch 1), e.g. 1,3,32,32, when the model leaves it open.
    #[arg(long, value_parser = parse_shape)]
    input_shape: Option<Vec<usize>>,
}

/// A short summary of an op's attributes for the layer table.
fn describe(op: &Op) -> String {
    let pool = |p: &ir::Pool2d| {
        format!(
            "{}x{} /{}x{} pad {}",
            p.kernel[0], p.kernel[1], p.stride[0], p.stride[1], p.pads
        )
    };
    match op {
        Op::Conv2d(c) => {
            let k = c.kernel();
            let mut s = format!(
                "{}->{} {}x{} /{}x{} pad {}",
                c.weight.shape[1] * c.group,
                c.out_channels(),
                k[0],
                k[1],
                c.stride[0],
                c.stride[1],
                c.pads
            );
            if c.group != 1 {
                s += &format!(" group {}", c.group);
            }
            if c.dilation != [1, 1] {
                s += &format!(" dilation {}x{}", c.dilation[0], c.dilation[1]);
            }
            if c.bias.is_none() {
                s += " no bias";
            }
            s
        }
        Op::Linear(l) => format!(
            "{}->{}{}",
            l.weight.shape[1],
            l.weight.shape[0],
            if l.bias.is_none() { " no bias" } else { "" }
        ),
        Op::BatchNorm(b) => format!("{} channels eps {:e}", b.scale.len(), b.epsilon),
        Op::MaxPool(p) => pool(p),
        Op::AveragePool {
            pool: p,
            count_include_pad,
        } => format!(
            "{}{}",
            pool(p),
            if *count_include_pad {
                " count pads"
            } else {
                ""
            }
        ),
        Op::Flatten { axis } | Op::Concat { axis } => format!("axis {axis}"),
        Op::Pad { pads, value } => format!("pads {pads} value {value}"),
        _ => String::new(),
    }
}

struct Summary {
    relu: usize,
    max_pool: usize,
}

fn summary(g: &Graph) -> Summary {
    let counts = g.op_counts();
    let get = |k: &str| counts.get(k).copied().unwrap_or(0);
    Summary {
        relu: get("Relu"),
        max_pool: get("MaxPool"),
    }
}

fn io(g: &Graph, ids: &[ir::NodeId]) -> Vec<(String, Vec<usize>)> {
    ids.iter()
        .map(|&i| (g.node(i).name.clone(), g.node(i).shape.clone()))
        .collect()
}

/// `inspect` of a circuit file: per layer, then totals.
fn run_circuit(args: &Args) -> Result<()> {
    let c = crate::circuits::load_circuit(&args.model)?;
    if args.text {
        print!("{}", c.to_text());
        return Ok(());
    }
    let res = runtime::resources::resources(&c)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.model.display()))?;
    if args.json {
        let layers: Vec<_> = c
            .layer_summaries()
            .into_iter()
            .map(|l| {
                let alpha = c
                    .notes
                    .get(&ir::circuit::alpha_note(&l.name))
                    .and_then(|a| a.parse::<u32>().ok());
                let mut v = serde_json::to_value(l).expect("serialisable");
                v["alpha"] = json!(alpha);
                v
            })
            .collect();
        let out = json!({
            "name": c.name,
            "input": { "name": c.input.name, "shape": c.input.shape, "level": c.input.level,
                       "log2_scale": c.input.scale.log2(), "layout": c.layouts[c.input.layout as usize].describe() },
            "output": { "name": c.output.name, "shape": c.output.shape,
                        "layout": c.layouts[c.output.layout as usize].describe() },
            "notes": c.notes,
            "totals": crate::circuits::totals(&c, Some(&res)),
            "layers": layers,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("circuit {} ({})", c.name, args.model.display());
    println!(
        "input   %{} {} at level {}, scale 2^{:.2}: {}",
        c.input.name,
        ShapeFmt(&c.input.shape),
        c.input.level,
        c.input.scale.log2(),
        c.layouts[c.input.layout as usize].describe()
    );
    println!(
        "output  %{} {}: {}",
        c.output.name,
        ShapeFmt(&c.output.shape),
        c.layouts[c.output.layout as usize].describe()
    );
    println!();
    crate::circuits::print_report(&c, Some(&res), &mut std::io::stdout())
}

pub fn run(args: Args) -> Result<()> {
    if crate::circuits::is_circuit(&args.model) {
        return run_circuit(&args);
    }
    let g = load_onnx(&args.model, args.input_shape)?;
    let s = summary(&g);
    let layers: Vec<_> = g
        .topo_order()
        .into_iter()
        .filter(|&i| !matches!(g.node(i).op, Op::Input | Op::Constant(_)))
        .collect();
    if args.json {
        let io_json = |ids: &[ir::NodeId]| {
            io(&g, ids)
                .into_iter()
                .map(|(name, shape)| json!({ "name": name, "shape": shape }))
                .collect::<Vec<_>>()
        };
        let layer_json: Vec<_> = layers
            .iter()
            .map(|&i| {
                let n = g.node(i);
                json!({
                    "name": n.name,
                    "op": n.op.kind(),
                    "shape": n.shape,
                    "params": n.op.param_count(),
                    "attrs": describe(&n.op),
                })
            })
            .collect();
        let out = json!({
            "name": g.name,
            "inputs": io_json(g.inputs()),
            "outputs": io_json(g.outputs()),
            "nodes": g.node_count(),
            "params": g.param_count(),
            "relu": s.relu,
            "max_pool": s.max_pool,
            "op_counts": g.op_counts(),
            "layers": layer_json,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let fmt_io = |ids: &[ir::NodeId]| {
        io(&g, ids)
            .into_iter()
            .map(|(n, s)| format!("%{n} {}", ShapeFmt(&s)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("model   {}", g.name);
    println!("inputs  {}", fmt_io(g.inputs()));
    println!("outputs {}", fmt_io(g.outputs()));
    println!();
    let rows: Vec<[String; 6]> = layers
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let n = g.node(i);
            let operands = g
                .operands(i)
                .iter()
                .filter(|&&o| !matches!(g.node(o).op, Op::Constant(_)))
                .map(|&o| format!("%{}", g.node(o).name))
                .collect::<Vec<_>>()
                .join(" ");
            [
                (k + 1).to_string(),
                format!("%{}", n.name),
                n.op.kind().to_string(),
                ShapeFmt(&n.shape).to_string(),
                n.op.param_count().to_string(),
                if operands.is_empty() {
                    describe(&n.op)
                } else {
                    format!("{} <- {operands}", describe(&n.op))
                        .trim_start()
                        .to_string()
                },
            ]
        })
        .collect();
    let header = [
        "#",
        "layer",
        "op",
        "output",
        "params",
        "attributes / operands",
    ];
    let mut width = header.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut s = String::new();
        for (j, c) in cells.iter().enumerate() {
            let pad = width[j] - c.chars().count();
            if j == 0 || j == 4 {
                s += &" ".repeat(pad);
                s += c;
            } else if j == 5 {
                s += c;
            } else {
                s += c;
                s += &" ".repeat(pad);
            }
            if j < 5 {
                s += "  ";
            }
        }
        s.trim_end().to_string()
    };
    println!("{}", line(header));
    for r in &rows {
        println!("{}", line(std::array::from_fn(|j| r[j].as_str())));
    }
    println!();
    println!("parameters     {}", g.param_count());
    println!("ReLU nodes     {}", s.relu);
    println!("max-pool nodes {}", s.max_pool);
    let counts: Vec<String> = g
        .op_counts()
        .into_iter()
        .filter(|(k, _)| *k != "Input" && *k != "Constant")
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!("ops            {}", counts.join(", "));
    Ok(())
}
