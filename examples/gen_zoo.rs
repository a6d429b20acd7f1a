//! Writes a zoo model (deterministic random weights) as ONNX, e.g. for the
//! frontend benchmark in BENCHMARKS.md:
//!
//! `cargo run --example gen_zoo -- resnet110 /tmp/resnet110.onnx`
//!
//! Names: lenet5, alexnet, vgg{11,13,16,19}[_bn], resnet{20,32,44,56,110}
//! (CIFAR, width 16), resnet{18,34,50,101,152}_imagenet (width 64, 224×224).

use anyhow::{bail, Context, Result};
use compiler::frontend::zoo::{self, ZooOptions};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [name, path] = &args[..] else {
        bail!("usage: gen_zoo NAME OUT.onnx");
    };
    let o = ZooOptions::default();
    let m = if name == "lenet5" {
        zoo::lenet5(&o)
    } else if name == "alexnet" {
        zoo::alexnet(&o)
    } else if let Some(rest) = name.strip_prefix("vgg") {
        let (depth, bn) = match rest.strip_suffix("_bn") {
            Some(d) => (d, true),
            None => (rest, false),
        };
        zoo::vgg(depth.parse().context("VGG depth")?, bn, 1, &o)
    } else if let Some(rest) = name.strip_prefix("resnet") {
        match rest.strip_suffix("_imagenet") {
            Some(d) => zoo::resnet_imagenet(d.parse().context("ResNet depth")?, 64, 224, 1000, &o),
            None => zoo::resnet_cifar(rest.parse().context("ResNet depth")?, 16, &o),
        }
    } else {
        bail!("unknown model {name}");
    };
    std::fs::write(path, &m.bytes).with_context(|| path.clone())?;
    println!("wrote {path} ({} bytes)", m.bytes.len());
    Ok(())
}
