//! `precis infer` (the reference executor over the frontend's IR) against
//! tract's own execution of the same ONNX file, for every network family,
//! opset encodings and a batch of several samples.

mod common;

use common::*;
use compiler::frontend::builder::{FlattenStyle, LinearStyle};
use compiler::frontend::oracle;
use compiler::frontend::zoo::{self, ZooModel, ZooOptions};
use runtime::data::npy;

const BATCH: usize = 3;

/// Writes the model and a random batch, runs `precis infer`, compares the
/// logits with tract and the printed argmax with the logits.
fn check(m: &ZooModel, seed: u64) {
    let dir = tmp_dir(&format!("infer-{}-{seed}", m.name));
    let model = dir.join("model.onnx");
    std::fs::write(&model, &m.bytes).unwrap();
    let mut shape = m.input_shape.clone();
    shape[0] = BATCH;
    let x = random_tensor(shape, seed);
    let xp = dir.join("x.npy");
    let yp = dir.join("y.npy");
    npy::write(&xp, &x).unwrap();
    let out = precis(&[
        "infer",
        model.to_str().unwrap(),
        "--input",
        xp.to_str().unwrap(),
        "--output",
        yp.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}: {}", m.name, stderr(&out));
    let y = npy::read(&yp).unwrap();
    let want = oracle::run(&m.bytes, std::slice::from_ref(&x)).unwrap();
    let err = rel_err(&y, &want[0]);
    assert!(err <= 1e-4, "{}: relative error {err:e}", m.name);
    let per = y.len() / BATCH;
    let printed: Vec<usize> = stdout(&out)
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect();
    let argmax: Vec<usize> = y
        .data
        .chunks(per)
        .map(|r| {
            (0..r.len())
                .reduce(|a, b| if r[b] > r[a] { b } else { a })
                .unwrap()
        })
        .collect();
    assert_eq!(printed, argmax, "{}", m.name);
}

fn o(opset: i64, linear: LinearStyle, flatten: FlattenStyle) -> ZooOptions {
    ZooOptions {
        opset,
        linear,
        flatten,
        ..ZooOptions::default()
    }
}

#[test]
fn lenet5_opsets_and_encodings() {
    for (i, opset) in [11, 13, 18].into_iter().enumerate() {
        for linear in [LinearStyle::Gemm, LinearStyle::MatMulAdd] {
            for flatten in [FlattenStyle::Flatten, FlattenStyle::View] {
                check(&zoo::lenet5(&o(opset, linear, flatten)), i as u64);
            }
        }
    }
    let soft = ZooOptions {
        softmax: true,
        opset: 11,
        ..ZooOptions::default()
    };
    // With the Softmax removed, precis returns the logits tract feeds it:
    // compare against the model without it.
    let dir = tmp_dir("infer-softmax");
    let m = zoo::lenet5(&soft);
    let plain = zoo::lenet5(&ZooOptions {
        softmax: false,
        ..soft
    });
    let model = dir.join("m.onnx");
    std::fs::write(&model, &m.bytes).unwrap();
    let x = random_tensor(vec![2, 1, 28, 28], 9);
    let xp = dir.join("x.npy");
    let yp = dir.join("y.npy");
    npy::write(&xp, &x).unwrap();
    let out = precis(&[
        "infer",
        model.to_str().unwrap(),
        "--input",
        xp.to_str().unwrap(),
        "--output",
        yp.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let want = oracle::run(&plain.bytes, std::slice::from_ref(&x)).unwrap();
    assert!(rel_err(&npy::read(&yp).unwrap(), &want[0]) <= 1e-4);
}

#[test]
fn alexnet_opsets() {
    check(
        &zoo::alexnet(&o(11, LinearStyle::Gemm, FlattenStyle::View)),
        1,
    );
    check(
        &zoo::alexnet(&o(18, LinearStyle::MatMulAdd, FlattenStyle::Flatten)),
        2,
    );
}

#[test]
fn pad_and_average_pool_opsets() {
    for (i, opset) in [11, 12, 13, 18].into_iter().enumerate() {
        check(
            &zoo::pad_pool_model(&o(opset, LinearStyle::Gemm, FlattenStyle::Flatten)),
            i as u64,
        );
    }
}

#[test]
fn vgg_family() {
    let opts = o(13, LinearStyle::Gemm, FlattenStyle::Flatten);
    check(&zoo::vgg(11, false, 8, &opts), 1);
    check(&zoo::vgg(11, true, 8, &opts), 2);
    check(
        &zoo::vgg(13, true, 16, &o(11, LinearStyle::Gemm, FlattenStyle::View)),
        3,
    );
    check(
        &zoo::vgg(
            16,
            false,
            16,
            &o(18, LinearStyle::MatMulAdd, FlattenStyle::Flatten),
        ),
        4,
    );
    check(&zoo::vgg(19, true, 16, &opts), 5);
}

#[test]
fn resnet_cifar_family() {
    check(
        &zoo::resnet_cifar(20, 16, &o(13, LinearStyle::Gemm, FlattenStyle::Flatten)),
        1,
    );
    check(
        &zoo::resnet_cifar(32, 8, &o(11, LinearStyle::Gemm, FlattenStyle::View)),
        2,
    );
    check(
        &zoo::resnet_cifar(44, 4, &o(18, LinearStyle::MatMulAdd, FlattenStyle::Flatten)),
        3,
    );
    check(
        &zoo::resnet_cifar(56, 4, &o(14, LinearStyle::Gemm, FlattenStyle::Flatten)),
        4,
    );
}

#[test]
fn resnet_cifar_110() {
    check(
        &zoo::resnet_cifar(110, 4, &o(13, LinearStyle::Gemm, FlattenStyle::Flatten)),
        5,
    );
}

#[test]
fn resnet_imagenet_basic() {
    check(
        &zoo::resnet_imagenet(
            18,
            8,
            64,
            100,
            &o(13, LinearStyle::Gemm, FlattenStyle::Flatten),
        ),
        1,
    );
    check(
        &zoo::resnet_imagenet(34, 4, 64, 10, &o(11, LinearStyle::Gemm, FlattenStyle::View)),
        2,
    );
}

#[test]
fn resnet_imagenet_bottleneck() {
    check(
        &zoo::resnet_imagenet(
            50,
            4,
            64,
            10,
            &o(18, LinearStyle::Gemm, FlattenStyle::Flatten),
        ),
        3,
    );
}

#[test]
fn resnet_imagenet_deep() {
    check(
        &zoo::resnet_imagenet(
            101,
            4,
            64,
            10,
            &o(13, LinearStyle::Gemm, FlattenStyle::Flatten),
        ),
        4,
    );
    check(
        &zoo::resnet_imagenet(
            152,
            4,
            64,
            10,
            &o(17, LinearStyle::MatMulAdd, FlattenStyle::View),
        ),
        5,
    );
}
