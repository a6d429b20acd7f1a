//! The fuzz targets: one per parser that reads files from strangers.

use crate::Target;
use compiler::frontend::builder::{Attr, FlattenStyle, LinearStyle, OnnxBuilder};
use runtime::ckks::serialize as ser;
use runtime::ckks::{
    Complex64, DigitSplit, Encoder, Encryptor, EvaluationKeys, KeyGenerator, KeyStorage,
    Parameters, ParametersLiteral, SecretDistribution, SecretKey,
};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::OnceLock;

/// Every target, in the order reports list them.
pub fn all() -> Vec<Target> {
    vec![
        onnx(),
        ir_file(),
        ckks_parameters(),
        ckks_ciphertext(),
        ckks_public_key(),
        ckks_secret_key(),
        ckks_evaluation_keys(),
        ckks_bootstrapping_keys(),
        npy(),
        npz(),
        idx(),
        preprocess_json(),
    ]
}

/// The target called `name`.
pub fn by_name(name: &str) -> Option<Target> {
    all().into_iter().find(|t| t.name == name)
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

// ---------------------------------------------------------------- ONNX

/// Small models in the shapes `torch.onnx.export` writes, so that most
/// mutations hit structure (nodes, attributes, dims), not weights.
fn onnx_models() -> &'static [Vec<u8>] {
    static M: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    M.get_or_init(|| {
        let mut out = Vec::new();
        // conv → BN → ReLU → max-pool → flatten → Gemm → softmax.
        let mut b = OnnxBuilder::new("tiny_cnn", 13, 1);
        let x = b.input("x", &[1, 1, 8, 8]);
        let c = b.conv("conv1", &x, 2, 3, 1, 1, true);
        let n = b.batch_norm("bn1", &c);
        let r = b.relu("relu1", &n);
        let p = b.max_pool("pool1", &r, 2, 2, 0);
        let f = b.flatten("flatten", &p);
        let l = b.linear("fc", &f, 3);
        let s = b.softmax("", &l);
        b.output(&s);
        out.push(b.to_bytes());
        // View-style flatten (Shape/Gather/Concat/Reshape), MatMul + Add,
        // average and global pooling, Pad, residual Add, Dropout.
        let mut b = OnnxBuilder::new("tiny_res", 11, 2);
        b.linear_style = LinearStyle::MatMulAdd;
        b.flatten_style = FlattenStyle::View;
        let x = b.input("x", &[1, 2, 6, 6]);
        let c = b.conv("conv1", &x, 2, 3, 1, 1, false);
        let a = b.add("res", &c, &x);
        let d = b.dropout("drop", &a);
        let q = b.pad("pad", &d, [1, 1, 1, 1], 0.0);
        let v = b.avg_pool("avg", &q, 2, 2, 0, true);
        let g = b.global_avg_pool("gap", &v);
        let f = b.flatten("flatten", &g);
        let l = b.linear("fc", &f, 2);
        b.output(&l);
        out.push(b.to_bytes());
        // A raw node with attributes, opset 18.
        let mut b = OnnxBuilder::new("tiny_pool", 18, 3);
        let x = b.input("x", &[1, 1, 5, 5]);
        let m = b.node(
            "pool",
            "MaxPool",
            &[&x],
            &[
                ("kernel_shape", Attr::Ints(vec![3, 3])),
                ("strides", Attr::Ints(vec![2, 2])),
                ("pads", Attr::Ints(vec![1, 1, 1, 1])),
            ],
            Some(vec![1, 1, 3, 3]),
        );
        b.output(&m);
        out.push(b.to_bytes());
        out
    })
}

fn onnx() -> Target {
    Target {
        name: "onnx",
        seeds: || onnx_models().to_vec(),
        reseal: None,
        parse: |b| {
            compiler::frontend::load_bytes(b, None)
                .map(|_| ())
                .map_err(err)
        },
        dictionary: &[
            b"Conv",
            b"Relu",
            b"MaxPool",
            b"AveragePool",
            b"Gemm",
            b"MatMul",
            b"Reshape",
            b"Flatten",
            b"Constant",
            b"Shape",
            b"Gather",
            b"Concat",
            b"Pad",
            b"Softmax",
            b"Loop",
            b"ConstantOfShape",
            b"Expand",
            b"Resize",
            b"kernel_shape",
            b"strides",
            b"pads",
            b"dilations",
            b"group",
            b"auto_pad",
            b"SAME_UPPER",
            b"ceil_mode",
            b"transB",
            b"axis",
            b"ai.onnx",
            b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\x7f",
        ],
    }
}

// ---------------------------------------------------------------- IR file

fn ir_file() -> Target {
    Target {
        name: "ir-file",
        seeds: || {
            onnx_models()
                .iter()
                .map(|m| {
                    let g = compiler::frontend::load_bytes(m, None).expect("seed model loads");
                    ir::file::to_bytes(&g)
                })
                .collect()
        },
        reseal: Some(|d| {
            if d.len() >= 24 {
                let len = (d.len() - 24) as u64;
                if d[0] & 1 == 0 {
                    d[12..20].copy_from_slice(&len.to_le_bytes());
                }
                let crc = ir::file::crc32(&d[24..]);
                d[20..24].copy_from_slice(&crc.to_le_bytes());
            }
        }),
        parse: |b| {
            let g = ir::file::from_bytes(b).map_err(err)?;
            // A graph that passed the checks must be safe to walk.
            let _ = g.to_text();
            Ok(())
        },
        dictionary: &[b"PRECISIR", b"\x01\x00\x00\x00"],
    }
}

// ---------------------------------------------------------------- CKKS files

/// Test-size (insecure) parameters and one of every file kind for them.
struct Ckks {
    params: Parameters,
    files: Files,
}

#[derive(Default)]
struct Files {
    params: Vec<u8>,
    ciphertexts: Vec<Vec<u8>>,
    public_key: Vec<u8>,
    secret_key: Vec<u8>,
    evaluation_keys: Vec<Vec<u8>>,
    bootstrapping_keys: Vec<u8>,
}

fn ckks() -> &'static Ckks {
    static C: OnceLock<Ckks> = OnceLock::new();
    C.get_or_init(|| {
        let params = Parameters::new(ParametersLiteral {
            log_n: 10,
            log_q: vec![50, 40],
            log_p: vec![61],
            log_scale: 40,
            digits: DigitSplit::Even(2),
            secret: SecretDistribution::Ternary,
            insecure: true,
        })
        .expect("fuzz parameters");
        let mut kg = KeyGenerator::new(&params).expect("randomness");
        let sk = kg.gen_secret_key();
        let pk = kg.gen_public_key(&sk);
        let save = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut v = Vec::new();
            f(&mut v);
            v
        };
        let mut files = Files {
            params: save(&|w| ser::save_parameters(&params, w).unwrap()),
            public_key: save(&|w| ser::save_public_key(&params, &pk, w).unwrap()),
            secret_key: save(&|w| ser::save_secret_key(&params, &sk, w).unwrap()),
            ..Files::default()
        };
        let enc = Encoder::new(&params);
        let values: Vec<Complex64> = (0..8)
            .map(|i| Complex64::new(i as f64 / 8.0, 0.0))
            .collect();
        for level in [1, 0] {
            let pt = enc.encode(&values, level, params.default_scale()).unwrap();
            let seeded = Encryptor::with_secret_key(&params, &sk)
                .unwrap()
                .encrypt(&pt);
            let full = Encryptor::with_public_key(&params, &pk)
                .unwrap()
                .encrypt(&pt);
            for ct in [seeded, full] {
                files
                    .ciphertexts
                    .push(save(&|w| ser::save_ciphertext(&params, &ct, w).unwrap()));
            }
        }
        let mut keys = kg.gen_evaluation_keys(&sk, &[1], true);
        files.evaluation_keys.push(save(&|w| {
            ser::save_evaluation_keys(&params, &keys, w).unwrap()
        }));
        keys.set_galois_storage(&params, KeyStorage::Seeded);
        files.evaluation_keys.push(save(&|w| {
            ser::save_evaluation_keys(&params, &keys, w).unwrap()
        }));
        files.bootstrapping_keys = bootstrapping_keys_file(&params, &mut kg, &sk);
        Ckks { params, files }
    })
}

fn bootstrapping_keys_file(params: &Parameters, kg: &mut KeyGenerator, sk: &SecretKey) -> Vec<u8> {
    let mut evaluation = EvaluationKeys::default();
    evaluation.set_relinearization_key(kg.gen_relinearization_key(sk));
    evaluation.insert_galois(5, kg.gen_galois_key_at(sk, 5, 0));
    let keys = runtime::ckks::bootstrapping::BootstrappingKeys {
        evaluation: std::sync::Arc::new(evaluation),
        encapsulation: kg.gen_encapsulation_keys(sk, 32).unwrap(),
    };
    let mut v = Vec::new();
    ser::save_bootstrapping_keys(params, &keys, &mut v).unwrap();
    v
}

/// Repairs the payload length (on half the inputs, so lying lengths stay
/// reachable behind a valid checksum) and the SHA-256 trailer of a CKKS file.
fn reseal_ckks(d: &mut [u8]) {
    if d.len() >= 52 {
        if d[d.len() - 1] & 1 == 0 {
            let len = (d.len() - 52) as u64;
            d[12..20].copy_from_slice(&len.to_le_bytes());
        }
        let body = d.len() - 32;
        let sum = Sha256::digest(&d[..body]);
        d[body..].copy_from_slice(&sum);
    }
}

const CKKS_DICT: &[&[u8]] = &[
    b"PRECISCK",
    b"\x03\x00",
    b"\x00\x00\x00\x00\x00\x00\x00\x00",
];

fn ckks_parameters() -> Target {
    Target {
        name: "ckks-params",
        seeds: || vec![ckks().files.params.clone()],
        reseal: Some(reseal_ckks),
        parse: |b| {
            ser::load_parameters(&mut &b[..], true)
                .map(|_| ())
                .map_err(err)
        },
        dictionary: CKKS_DICT,
    }
}

fn ckks_ciphertext() -> Target {
    Target {
        name: "ckks-ciphertext",
        seeds: || ckks().files.ciphertexts.clone(),
        reseal: Some(reseal_ckks),
        parse: |b| {
            ser::load_ciphertext(&ckks().params, &mut &b[..])
                .map(|_| ())
                .map_err(err)
        },
        dictionary: CKKS_DICT,
    }
}

fn ckks_public_key() -> Target {
    Target {
        name: "ckks-public-key",
        seeds: || vec![ckks().files.public_key.clone()],
        reseal: Some(reseal_ckks),
        parse: |b| {
            ser::load_public_key(&ckks().params, &mut &b[..])
                .map(|_| ())
                .map_err(err)
        },
        dictionary: CKKS_DICT,
    }
}

fn ckks_secret_key() -> Target {
    Target {
        name: "ckks-secret-key",
        seeds: || vec![ckks().files.secret_key.clone()],
        reseal: Some(reseal_ckks),
        parse: |b| {
            ser::load_secret_key(&ckks().params, &mut &b[..])
                .map(|_| ())
                .map_err(err)
        },
        dictionary: CKKS_DICT,
    }
}

fn ckks_evaluation_keys() -> Target {
    Target {
        name: "ckks-eval-keys",
        seeds: || ckks().files.evaluation_keys.clone(),
        reseal: Some(reseal_ckks),
        parse: |b| {
            ser::load_evaluation_keys(&ckks().params, &mut &b[..])
                .map(|_| ())
                .map_err(err)
        },
        dictionary: CKKS_DICT,
    }
}

fn ckks_bootstrapping_keys() -> Target {
    Target {
        name: "ckks-bootstrap-keys",
        seeds: || vec![ckks().files.bootstrapping_keys.clone()],
        reseal: Some(reseal_ckks),
        parse: |b| {
            ser::load_bootstrapping_keys(&ckks().params, &mut &b[..])
                .map(|_| ())
                .map_err(err)
        },
        dictionary: CKKS_DICT,
    }
}

// ---------------------------------------------------------------- data files

fn npy_seeds() -> Vec<Vec<u8>> {
    use runtime::data::npy;
    let t = |shape: Vec<usize>| {
        let n = shape.iter().product::<usize>();
        ir::Tensor::new(shape, (0..n).map(|i| i as f32 * 0.5 - 1.0).collect()).unwrap()
    };
    let mut out = vec![
        npy::encode(&t(vec![2, 3])),
        npy::encode(&t(vec![])),
        npy::encode(&t(vec![0, 4])),
        npy::encode(&t(vec![1, 1, 2, 2])),
    ];
    // Other dtypes and header versions, written by hand as NumPy does.
    let raw = |version: u8, descr: &str, shape: &str, data: &[u8]| {
        let header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}\n");
        let mut v = b"\x93NUMPY".to_vec();
        v.push(version);
        v.push(0);
        if version == 1 {
            v.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            v.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        v.extend_from_slice(header.as_bytes());
        v.extend_from_slice(data);
        v
    };
    out.push(raw(1, "<f8", "(2,)", &[0; 16]));
    out.push(raw(1, "|u1", "(3, 1)", &[1, 2, 3]));
    out.push(raw(1, "|i1", "(2,)", &[0xff, 1]));
    out.push(raw(2, "<i4", "(1, 2)", &[1, 0, 0, 0, 2, 0, 0, 0]));
    out.push(raw(3, "<i8", "(1,)", &[7, 0, 0, 0, 0, 0, 0, 0]));
    out
}

fn npy() -> Target {
    Target {
        name: "npy",
        seeds: npy_seeds,
        reseal: None,
        parse: |b| runtime::data::npy::decode(b).map(|_| ()),
        dictionary: &[
            b"'descr'",
            b"'fortran_order'",
            b"'shape'",
            b"True",
            b"False",
            b"'<f4'",
            b"'>f8'",
            b"'|u1'",
            b"'=i8'",
            b"(",
            b")",
            b",",
            b"L",
            b"\xc3\xa9",
            b"\xe2\x82\xac",
            b"\x93NUMPY\x03\x00",
        ],
    }
}

fn npz_seeds() -> Vec<Vec<u8>> {
    let members = npy_seeds();
    let mut out = Vec::new();
    for method in [
        zip::CompressionMethod::Stored,
        zip::CompressionMethod::Deflated,
    ] {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().compression_method(method);
        for (i, m) in members.iter().take(3).enumerate() {
            w.start_file(format!("arr_{i}.npy"), opts).unwrap();
            w.write_all(m).unwrap();
        }
        out.push(w.finish().unwrap().into_inner());
    }
    out
}

fn npz() -> Target {
    Target {
        name: "npz",
        seeds: npz_seeds,
        reseal: None,
        parse: |b| runtime::data::npz::decode(b).map(|_| ()),
        dictionary: &[
            b"PK\x03\x04",
            b"PK\x01\x02",
            b"PK\x05\x06",
            b".npy",
            b"\x93NUMPY",
        ],
    }
}

fn idx_seeds() -> Vec<Vec<u8>> {
    let images = {
        let mut v = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4];
        v.extend((0..24).map(|i| i as u8));
        v
    };
    let labels = vec![0, 0, 8, 1, 0, 0, 0, 5, 1, 2, 3, 4, 9];
    let gz = |d: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(d).unwrap();
        e.finish().unwrap()
    };
    vec![gz(&images), gz(&labels), images, labels]
}

fn idx() -> Target {
    Target {
        name: "idx",
        seeds: idx_seeds,
        reseal: None,
        parse: |b| runtime::data::idx::decode_maybe_gz(b).map(|_| ()),
        dictionary: &[b"\x00\x00\x08", b"\x1f\x8b\x08", b"\xff\xff\xff\xff"],
    }
}

fn preprocess_json() -> Target {
    Target {
        name: "preprocess-json",
        seeds: || {
            [
                &include_bytes!("../../examples/models/lenet5.json")[..],
                include_bytes!("../../examples/models/resnet20.json"),
                include_bytes!("../../examples/models/vgg11_bn.json"),
            ]
            .iter()
            .map(|b| b.to_vec())
            .collect()
        },
        reseal: None,
        parse: |b| {
            let text = std::str::from_utf8(b).map_err(|e| format!("not UTF-8: {e}"))?;
            let p = runtime::data::Preprocess::from_json(text)?;
            // What `accuracy` does next: one raw image through the pipeline
            // (a buffer of the announced size when that is small, otherwise a
            // short one, which must be refused).
            let [c, h, w] = p.raw_shape();
            let size = c.checked_mul(h).and_then(|x| x.checked_mul(w));
            let images = vec![0u8; size.filter(|&s| s <= 1 << 16).unwrap_or(16)];
            p.apply(&images, 1).map(|_| ()).map_err(err)
        },
        dictionary: &[
            b"\"input_shape\"",
            b"\"pad\"",
            b"\"mean\"",
            b"\"std\"",
            b"[",
            b"]",
            b",",
            b"null",
            b"-",
            b"e",
        ],
    }
}
