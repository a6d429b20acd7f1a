//! The network families precis targets, written with [`OnnxBuilder`] as
//! `torch.onnx.export` would write them, with deterministic random weights.
//! Used by the tests and to generate the example model; widths are scalable
//! so deep structures stay small.

use super::builder::{FlattenStyle, LinearStyle, OnnxBuilder};

/// How a zoo model is written.
#[derive(Clone, Copy, Debug)]
pub struct ZooOptions {
    pub opset: i64,
    pub seed: u64,
    pub linear: LinearStyle,
    pub flatten: FlattenStyle,
    /// A symbolic batch axis on the graph input and output.
    pub symbolic_batch: bool,
    /// Append a Softmax at the output.
    pub softmax: bool,
}

impl Default for ZooOptions {
    fn default() -> Self {
        Self {
            opset: 13,
            seed: 1,
            linear: LinearStyle::Gemm,
            flatten: FlattenStyle::Flatten,
            symbolic_batch: true,
            softmax: false,
        }
    }
}

/// A built model.
#[derive(Clone, Debug)]
pub struct ZooModel {
    pub name: String,
    /// The ONNX file contents.
    pub bytes: Vec<u8>,
    /// The input shape, batch 1.
    pub input_shape: Vec<usize>,
}

fn start(name: &str, o: &ZooOptions) -> OnnxBuilder {
    let mut b = OnnxBuilder::new(name, o.opset, o.seed);
    b.linear_style = o.linear;
    b.flatten_style = o.flatten;
    b.symbolic_batch = o.symbolic_batch;
    b
}

fn finish(
    mut b: OnnxBuilder,
    name: &str,
    x: String,
    o: &ZooOptions,
    input_shape: &[usize],
) -> ZooModel {
    let y = if o.softmax { b.softmax("", &x) } else { x };
    b.output(&y);
    ZooModel {
        name: name.to_string(),
        bytes: b.to_bytes(),
        input_shape: input_shape.to_vec(),
    }
}

/// LeNet-5 with max-pooling on 1×28×28 (MNIST) inputs.
pub fn lenet5(o: &ZooOptions) -> ZooModel {
    let shape = [1, 1, 28, 28];
    let mut b = start("lenet5", o);
    let x = b.input("input", &shape);
    let x = b.conv("conv1", &x, 6, 5, 1, 2, true);
    let x = b.relu("relu1", &x);
    let x = b.max_pool("pool1", &x, 2, 2, 0);
    let x = b.conv("conv2", &x, 16, 5, 1, 0, true);
    let x = b.relu("relu2", &x);
    let x = b.max_pool("pool2", &x, 2, 2, 0);
    let x = b.flatten("flatten", &x);
    let x = b.linear("fc1", &x, 120);
    let x = b.relu("relu3", &x);
    let x = b.linear("fc2", &x, 84);
    let x = b.relu("relu4", &x);
    let x = b.linear("fc3", &x, 10);
    finish(b, "lenet5", x, o, &shape)
}

/// An AlexNet-style network for 3×32×32 inputs: five convolutions with
/// overlapping 3×3/2 max-pools, an average pool, dropout in the classifier.
pub fn alexnet(o: &ZooOptions) -> ZooModel {
    let shape = [1, 3, 32, 32];
    let mut b = start("alexnet", o);
    let x = b.input("input", &shape);
    let x = b.conv("features.0", &x, 16, 5, 1, 2, true);
    let x = b.relu("features.1", &x);
    let x = b.max_pool("features.2", &x, 3, 2, 0);
    let x = b.conv("features.3", &x, 32, 5, 1, 2, true);
    let x = b.relu("features.4", &x);
    let x = b.max_pool("features.5", &x, 3, 2, 0);
    let x = b.conv("features.6", &x, 48, 3, 1, 1, true);
    let x = b.relu("features.7", &x);
    let x = b.conv("features.8", &x, 32, 3, 1, 1, true);
    let x = b.relu("features.9", &x);
    let x = b.conv("features.10", &x, 32, 3, 1, 1, true);
    let x = b.relu("features.11", &x);
    let x = b.max_pool("features.12", &x, 3, 2, 0);
    let x = b.avg_pool("avgpool", &x, 1, 1, 0, false);
    let x = b.flatten("flatten", &x);
    let x = b.dropout("classifier.0", &x);
    let x = b.linear("classifier.1", &x, 128);
    let x = b.relu("classifier.2", &x);
    let x = b.dropout("classifier.3", &x);
    let x = b.linear("classifier.4", &x, 64);
    let x = b.relu("classifier.5", &x);
    let x = b.linear("classifier.6", &x, 10);
    finish(b, "alexnet", x, o, &shape)
}

/// The VGG configurations (channel counts, 0 = max-pool) for depth 11…19.
pub fn vgg_config(depth: usize) -> Option<&'static [usize]> {
    Some(match depth {
        11 => &[64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0],
        13 => &[
            64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0,
        ],
        16 => &[
            64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
        ],
        19 => &[
            64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512,
            512, 0,
        ],
        _ => return None,
    })
}

/// CIFAR-style VGG (3×32×32 inputs, five max-pools to 1×1, three linear
/// layers), channels divided by `width_div`.
pub fn vgg(depth: usize, batch_norm: bool, width_div: usize, o: &ZooOptions) -> ZooModel {
    let cfg = vgg_config(depth).unwrap_or_else(|| panic!("no VGG-{depth}"));
    let shape = [1, 3, 32, 32];
    let name = format!("vgg{depth}{}", if batch_norm { "_bn" } else { "" });
    let mut b = start(&name, o);
    let mut x = b.input("input", &shape);
    let mut layer = 0;
    for &c in cfg {
        if c == 0 {
            x = b.max_pool(&format!("features.{layer}"), &x, 2, 2, 0);
            layer += 1;
            continue;
        }
        x = b.conv(
            &format!("features.{layer}"),
            &x,
            c / width_div,
            3,
            1,
            1,
            true,
        );
        layer += 1;
        if batch_norm {
            x = b.batch_norm(&format!("features.{layer}"), &x);
            layer += 1;
        }
        x = b.relu(&format!("features.{layer}"), &x);
        layer += 1;
    }
    let hidden = 512 / width_div;
    let x = b.flatten("flatten", &x);
    let x = b.linear("classifier.0", &x, hidden);
    let x = b.relu("classifier.1", &x);
    let x = b.dropout("classifier.2", &x);
    let x = b.linear("classifier.3", &x, hidden);
    let x = b.relu("classifier.4", &x);
    let x = b.dropout("classifier.5", &x);
    let x = b.linear("classifier.6", &x, 10);
    finish(b, &name, x, o, &shape)
}

/// One VGG block: two conv-BN-ReLU and a 2×2 max-pool, on 8×16×16.
pub fn vgg_block(o: &ZooOptions) -> ZooModel {
    let shape = [1, 8, 16, 16];
    let mut b = start("vgg_block", o);
    let x = b.input("input", &shape);
    let x = b.conv("block.0", &x, 16, 3, 1, 1, true);
    let x = b.batch_norm("block.1", &x);
    let x = b.relu("block.2", &x);
    let x = b.conv("block.3", &x, 16, 3, 1, 1, true);
    let x = b.batch_norm("block.4", &x);
    let x = b.relu("block.5", &x);
    let x = b.max_pool("block.6", &x, 2, 2, 0);
    finish(b, "vgg_block", x, o, &shape)
}

/// A ResNet basic block (two 3×3 conv-BN, residual add, ReLU); with
/// `stride` 2 or a channel change the shortcut is a 1×1 strided conv + BN.
pub fn basic_block(
    b: &mut OnnxBuilder,
    scope: &str,
    x: &str,
    planes: usize,
    stride: usize,
) -> String {
    let in_c = b.shape(x)[1];
    let y = b.conv(&format!("{scope}.conv1"), x, planes, 3, stride, 1, false);
    let y = b.batch_norm(&format!("{scope}.bn1"), &y);
    let y = b.relu(&format!("{scope}.relu"), &y);
    let y = b.conv(&format!("{scope}.conv2"), &y, planes, 3, 1, 1, false);
    let y = b.batch_norm_scaled(&format!("{scope}.bn2"), &y, 0.1, 0.4);
    let shortcut = if stride != 1 || in_c != planes {
        let s = b.conv(
            &format!("{scope}.downsample.0"),
            x,
            planes,
            1,
            stride,
            0,
            false,
        );
        b.batch_norm(&format!("{scope}.downsample.1"), &s)
    } else {
        x.to_string()
    };
    let y = b.add(scope, &y, &shortcut);
    b.relu(&format!("{scope}.relu_1"), &y)
}

/// A ResNet bottleneck block (1×1 → 3×3 (strided) → 1×1 ×4, torchvision
/// v1.5) with a 1×1 conv + BN shortcut when the shape changes.
pub fn bottleneck(
    b: &mut OnnxBuilder,
    scope: &str,
    x: &str,
    planes: usize,
    stride: usize,
) -> String {
    let in_c = b.shape(x)[1];
    let out_c = planes * 4;
    let y = b.conv(&format!("{scope}.conv1"), x, planes, 1, 1, 0, false);
    let y = b.batch_norm(&format!("{scope}.bn1"), &y);
    let y = b.relu(&format!("{scope}.relu"), &y);
    let y = b.conv(&format!("{scope}.conv2"), &y, planes, 3, stride, 1, false);
    let y = b.batch_norm(&format!("{scope}.bn2"), &y);
    let y = b.relu(&format!("{scope}.relu_1"), &y);
    let y = b.conv(&format!("{scope}.conv3"), &y, out_c, 1, 1, 0, false);
    let y = b.batch_norm_scaled(&format!("{scope}.bn3"), &y, 0.1, 0.4);
    let shortcut = if stride != 1 || in_c != out_c {
        let s = b.conv(
            &format!("{scope}.downsample.0"),
            x,
            out_c,
            1,
            stride,
            0,
            false,
        );
        b.batch_norm(&format!("{scope}.downsample.1"), &s)
    } else {
        x.to_string()
    };
    let y = b.add(scope, &y, &shortcut);
    b.relu(&format!("{scope}.relu_2"), &y)
}

/// A single basic block with a strided 1×1 downsample, on 8×16×16.
pub fn basic_block_model(o: &ZooOptions) -> ZooModel {
    let shape = [1, 8, 16, 16];
    let mut b = start("basic_block", o);
    let x = b.input("input", &shape);
    let y = basic_block(&mut b, "layer2.0", &x, 16, 2);
    finish(b, "basic_block", y, o, &shape)
}

/// A single bottleneck block with a strided 1×1 downsample, on 16×16×16.
pub fn bottleneck_model(o: &ZooOptions) -> ZooModel {
    let shape = [1, 16, 16, 16];
    let mut b = start("bottleneck", o);
    let x = b.input("input", &shape);
    let y = bottleneck(&mut b, "layer2.0", &x, 8, 2);
    finish(b, "bottleneck", y, o, &shape)
}

/// CIFAR ResNet-`depth` (6n+2: 20, 32, 44, 56, 110) on 3×32×32: three
/// stages of n basic blocks with `width`, 2·`width`, 4·`width` channels
/// (16 in the paper), 1×1 conv shortcuts, global average pool, linear.
pub fn resnet_cifar(depth: usize, width: usize, o: &ZooOptions) -> ZooModel {
    assert!(
        depth >= 8 && (depth - 2) % 6 == 0,
        "CIFAR ResNet depth must be 6n+2"
    );
    let n = (depth - 2) / 6;
    let shape = [1, 3, 32, 32];
    let name = format!("resnet{depth}");
    let mut b = start(&name, o);
    let x = b.input("input", &shape);
    let x = b.conv("conv1", &x, width, 3, 1, 1, false);
    let x = b.batch_norm("bn1", &x);
    let mut x = b.relu("relu", &x);
    for stage in 0..3 {
        for block in 0..n {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            x = basic_block(
                &mut b,
                &format!("layer{}.{block}", stage + 1),
                &x,
                width << stage,
                stride,
            );
        }
    }
    let x = b.global_avg_pool("avgpool", &x);
    let x = b.flatten("flatten", &x);
    let x = b.linear("fc", &x, 10);
    finish(b, &name, x, o, &shape)
}

/// Blocks per stage and block kind (bottleneck?) of ImageNet ResNets.
pub fn resnet_imagenet_config(depth: usize) -> Option<([usize; 4], bool)> {
    Some(match depth {
        18 => ([2, 2, 2, 2], false),
        34 => ([3, 4, 6, 3], false),
        50 => ([3, 4, 6, 3], true),
        101 => ([3, 4, 23, 3], true),
        152 => ([3, 8, 36, 3], true),
        _ => return None,
    })
}

/// ImageNet ResNet-`depth` (18, 34, 50, 101, 152), torchvision layout:
/// 7×7/2 stem, 3×3/2 max-pool with padding 1, four stages with base width
/// `width` (64 in torchvision), global average pool, linear to `classes`;
/// input 3×`size`×`size`.
pub fn resnet_imagenet(
    depth: usize,
    width: usize,
    size: usize,
    classes: usize,
    o: &ZooOptions,
) -> ZooModel {
    let (blocks, bottle) =
        resnet_imagenet_config(depth).unwrap_or_else(|| panic!("no ImageNet ResNet-{depth}"));
    let shape = [1, 3, size, size];
    let name = format!("resnet{depth}_imagenet");
    let mut b = start(&name, o);
    let x = b.input("input", &shape);
    let x = b.conv("conv1", &x, width, 7, 2, 3, false);
    let x = b.batch_norm("bn1", &x);
    let x = b.relu("relu", &x);
    let mut x = b.max_pool("maxpool", &x, 3, 2, 1);
    for (stage, &n) in blocks.iter().enumerate() {
        for block in 0..n {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            let scope = format!("layer{}.{block}", stage + 1);
            let planes = width << stage;
            x = if bottle {
                bottleneck(&mut b, &scope, &x, planes, stride)
            } else {
                basic_block(&mut b, &scope, &x, planes, stride)
            };
        }
    }
    let x = b.global_avg_pool("avgpool", &x);
    let x = b.flatten("flatten", &x);
    let x = b.linear("fc", &x, classes);
    finish(b, &name, x, o, &shape)
}

/// A small padded network exercising Pad + AveragePool (count_include_pad
/// both ways) + Mul/Add by per-channel constants, on 4×12×12.
pub fn pad_pool_model(o: &ZooOptions) -> ZooModel {
    let shape = [1, 4, 12, 12];
    let mut b = start("pad_pool", o);
    let x = b.input("input", &shape);
    let x = b.pad("pad", &x, [1, 2, 0, 1], 0.0);
    let x = b.conv("conv", &x, 8, 3, 1, 0, true);
    let scale: Vec<f32> = b.rng().uniform_vec(8, 0.5, 1.5);
    let s = b.init_f32("scale", &[8, 1, 1], scale);
    let x = b.node("mul", "Mul", &[&x, &s], &[], Some(b.shape(&x).to_vec()));
    let shift: Vec<f32> = b.rng().uniform_vec(8, -0.5, 0.5);
    let t = b.init_f32("shift", &[8, 1, 1], shift);
    let x = b.node("shift", "Add", &[&t, &x], &[], Some(b.shape(&x).to_vec()));
    let x = b.relu("relu", &x);
    let a = b.avg_pool("pool_a", &x, 3, 2, 1, true);
    let c = b.avg_pool("pool_b", &x, 3, 2, 1, false);
    let x = b.add("sum", &a, &c);
    let x = b.flatten("flatten", &x);
    let x = b.linear("fc", &x, 10);
    finish(b, "pad_pool", x, o, &shape)
}

/// The options of the shipped demo model `examples/models/lenet5_demo.onnx`.
pub fn demo_options() -> ZooOptions {
    ZooOptions {
        opset: 13,
        seed: 2026,
        ..ZooOptions::default()
    }
}
