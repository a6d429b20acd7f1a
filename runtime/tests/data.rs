//! Data loading: .npy/.npz, IDX, Fashion-MNIST and the model preprocessing.

use ir::Tensor;
use runtime::data::fashion_mnist::{self, Split};
use runtime::data::{idx, npy, npz, DataError, Preprocess};
use std::io::Write;
use std::path::Path;

/// A .npy file written by hand (independently of the crate's writer).
fn npy_bytes(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version, 0]);
    let mut h = header.to_string();
    h.push('\n');
    if version == 1 {
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(h.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

fn put(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn err_text<T: std::fmt::Debug>(r: Result<T, DataError>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn npy_round_trip_keeps_bits() {
    let dir = tempfile::tempdir().unwrap();
    for shape in [vec![], vec![5], vec![2, 3, 4], vec![0, 3]] {
        let n = ir::numel(&shape);
        let data: Vec<f32> = (0..n)
            .map(|i| match i % 4 {
                0 => f32::NAN,
                1 => -0.0,
                2 => f32::MIN_POSITIVE / 3.0,
                _ => i as f32 * 1.1,
            })
            .collect();
        let t = Tensor::new(shape.clone(), data).unwrap();
        let p = dir.path().join("t.npy");
        npy::write(&p, &t).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let header_end = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!(header_end % 64, 0, "data is 64-byte aligned");
        let back = npy::read(&p).unwrap();
        assert_eq!(back.shape, shape);
        let bits = |t: &Tensor| t.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&t));
    }
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["t.npy"], "no temporary file left behind");
}

#[test]
fn npy_reads_every_supported_dtype_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let f64s: Vec<u8> = [1.5f64, -2.25, 1e300, 0.1]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let i32s: Vec<u8> = [-7i32, 0, 123456]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let i64s: Vec<u8> = [-(1i64 << 40), 3]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    // (version, header, data, shape, values)
    type Case<'a> = (u8, &'a str, Vec<u8>, Vec<usize>, Vec<f32>);
    let cases: Vec<Case> = vec![
        (
            1,
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }",
            f64s,
            vec![2, 2],
            vec![1.5, -2.25, f32::INFINITY, 0.1],
        ),
        (
            2,
            "{'shape': (3,), 'descr': '<i4', 'fortran_order': False}",
            i32s,
            vec![3],
            vec![-7.0, 0.0, 123456.0],
        ),
        (
            3,
            "{\"descr\": \"|u1\", \"fortran_order\": False, \"shape\": (1, 3)}",
            vec![0, 128, 255],
            vec![1, 3],
            vec![0.0, 128.0, 255.0],
        ),
        (
            1,
            "{'descr': '|i1', 'fortran_order': False, 'shape': (2,), }",
            vec![0xff, 0x7f],
            vec![2],
            vec![-1.0, 127.0],
        ),
        (
            1,
            "{'descr': '<i8', 'fortran_order': False, 'shape': (2L,), }",
            i64s,
            vec![2],
            vec![-((1u64 << 40) as f32), 3.0],
        ),
        (
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (), }",
            2.5f32.to_le_bytes().to_vec(),
            vec![],
            vec![2.5],
        ),
    ];
    for (version, header, data, shape, want) in cases {
        let p = put(dir.path(), "x.npy", &npy_bytes(version, header, &data));
        let t = npy::read(&p).unwrap_or_else(|e| panic!("{header}: {e}"));
        assert_eq!(t.shape, shape, "{header}");
        assert_eq!(t.data, want, "{header}");
    }
}

#[test]
fn npy_refuses_bad_files_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }";
    let data = [0u8; 16];
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "fortran.npy",
            npy_bytes(
                1,
                "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }",
                &data,
            ),
            "Fortran",
        ),
        (
            "bigendian.npy",
            npy_bytes(
                1,
                "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }",
                &data,
            ),
            "big-endian",
        ),
        (
            "complex.npy",
            npy_bytes(
                1,
                "{'descr': '<c8', 'fortran_order': False, 'shape': (2, 2), }",
                &data,
            ),
            "unsupported dtype '<c8'",
        ),
        (
            "short.npy",
            npy_bytes(1, good, &data[..15]),
            "truncated: 15 bytes",
        ),
        (
            "long.npy",
            npy_bytes(1, good, &[0u8; 17]),
            "trailing garbage",
        ),
        (
            "header.npy",
            npy_bytes(1, good, &data)[..30].to_vec(),
            "truncated header",
        ),
        ("magic.npy", b"PK\x03\x04 not numpy".to_vec(), "bad magic"),
        (
            "version.npy",
            npy_bytes(4, good, &data),
            "unsupported .npy format version 4.0",
        ),
        (
            "nokey.npy",
            npy_bytes(1, "{'descr': '<f4', 'shape': (2, 2), }", &data),
            "lacks 'fortran_order'",
        ),
        (
            "badshape.npy",
            npy_bytes(
                1,
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }",
                &data,
            ),
            "bad dimension",
        ),
        (
            "garbage.npy",
            npy_bytes(1, "{'descr': '<f4', 'fortran_order'", &data),
            "header",
        ),
    ];
    for (name, bytes, want) in cases {
        let p = put(dir.path(), name, &bytes);
        let err = err_text(npy::read(&p));
        assert!(err.contains(name) && err.contains(want), "{name}: {err}");
    }
    let missing = dir.path().join("missing.npy");
    let err = err_text(npy::read(&missing));
    assert!(err.contains("missing.npy"), "{err}");
    let err = err_text(npy::write(
        dir.path().join("no/such/dir/x.npy"),
        &Tensor::zeros(vec![1]),
    ));
    assert!(err.contains("no/such/dir/x.npy"), "{err}");
}

fn zip_of(members: &[(&str, Vec<u8>, bool)]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        for (name, bytes, deflate) in members {
            let method = if *deflate {
                zip::CompressionMethod::Deflated
            } else {
                zip::CompressionMethod::Stored
            };
            let opts = zip::write::SimpleFileOptions::default().compression_method(method);
            z.start_file(*name, opts).unwrap();
            z.write_all(bytes).unwrap();
        }
        z.finish().unwrap();
    }
    buf.into_inner()
}

#[test]
fn npz_reads_stored_and_deflated_members() {
    let dir = tempfile::tempdir().unwrap();
    let a = Tensor::new(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let b = Tensor::new(vec![3], vec![-1.0, 0.5, 9.0]).unwrap();
    let bytes = zip_of(&[
        ("weights.npy", npy::encode(&a), false),
        ("bias.npy", npy::encode(&b), true),
    ]);
    let p = put(dir.path(), "m.npz", &bytes);
    let got = npz::read(&p).unwrap();
    assert_eq!(
        got,
        vec![("weights".to_string(), a), ("bias".to_string(), b)]
    );

    // Corrupt inputs: a truncated archive, a non-npy member, a bad member.
    let p = put(dir.path(), "cut.npz", &bytes[..bytes.len() - 10]);
    let err = err_text(npz::read(&p));
    assert!(err.contains("cut.npz") && err.contains("zip"), "{err}");
    let p = put(
        dir.path(),
        "other.npz",
        &zip_of(&[("readme.txt", b"hi".to_vec(), false)]),
    );
    let err = err_text(npz::read(&p));
    assert!(
        err.contains("other.npz") && err.contains("`readme.txt` is not a .npy"),
        "{err}"
    );
    let mut broken = npy::encode(&Tensor::zeros(vec![4]));
    broken.truncate(broken.len() - 3);
    let p = put(dir.path(), "bad.npz", &zip_of(&[("x.npy", broken, true)]));
    let err = err_text(npz::read(&p));
    assert!(
        err.contains("bad.npz") && err.contains("member `x.npy`") && err.contains("truncated"),
        "{err}"
    );
}

fn idx_bytes(kind: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, kind, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn idx_reads_plain_and_gzip_and_checks_everything() {
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<u8> = (0..24).collect();
    let images = idx_bytes(8, &[2, 3, 4], &pixels);
    for (name, bytes) in [("img", images.clone()), ("img.gz", gz(&images))] {
        let p = put(dir.path(), name, &bytes);
        let im = idx::read_images(&p).unwrap();
        assert_eq!((im.count, im.rows, im.cols), (2, 3, 4));
        assert_eq!(im.pixels, pixels);
    }
    let p = put(dir.path(), "lbl.gz", &gz(&idx_bytes(8, &[3], &[1, 2, 9])));
    assert_eq!(idx::read_labels(&p).unwrap(), vec![1, 2, 9]);

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "short",
            idx_bytes(8, &[2, 3, 4], &pixels[..20]),
            "truncated",
        ),
        (
            "long",
            idx_bytes(8, &[2, 3, 4], &[0u8; 25]),
            "trailing data",
        ),
        (
            "magic",
            {
                let mut b = images.clone();
                b[0] = 7;
                b
            },
            "not an IDX file",
        ),
        (
            "float",
            idx_bytes(0x0d, &[1], &[0; 4]),
            "0x0d (float) is not supported",
        ),
        ("hdr", images[..9].to_vec(), "truncated header"),
        ("gzcut.gz", gz(&images)[..20].to_vec(), "corrupt gzip"),
        ("lbl-as-img", idx_bytes(8, &[3], &[1, 2, 3]), "3 dimensions"),
    ];
    for (name, bytes, want) in cases {
        let p = put(dir.path(), name, &bytes);
        let err = err_text(idx::read_images(&p));
        assert!(err.contains(name) && err.contains(want), "{name}: {err}");
    }
    let p = put(dir.path(), "img-as-lbl", &images);
    let err = err_text(idx::read_labels(&p));
    assert!(err.contains("1 dimension"), "{err}");
}

#[test]
fn fashion_mnist_test_and_train_splits() {
    let test = fashion_mnist::load(fashion_mnist::DEFAULT_DIR, Split::Test).unwrap();
    assert_eq!(test.len(), 10_000);
    assert_eq!(test.images.len(), 10_000 * 28 * 28);
    let mut hist = [0usize; 10];
    for &l in &test.labels {
        hist[l as usize] += 1;
    }
    assert_eq!(hist, [1000; 10]);
    // Real pictures: neither blank nor saturated.
    let mean = test.images.iter().map(|&p| p as f64).sum::<f64>() / test.images.len() as f64;
    assert!((60.0..100.0).contains(&mean), "mean pixel {mean}");
    let t = test.tensor(3..5);
    assert_eq!(t.shape, vec![2, 1, 28, 28]);
    assert_eq!(t.data[0], test.image(3)[0] as f32 / 255.0);

    let train = fashion_mnist::load(fashion_mnist::DEFAULT_DIR, Split::Train).unwrap();
    let mut hist = [0usize; 10];
    for &l in &train.labels {
        hist[l as usize] += 1;
    }
    assert_eq!(hist, [6000; 10]);

    // The usual normalisation constants are the training pixels' statistics,
    // and normalising with them centres and scales the data.
    let n = train.images.len() as f64;
    let mean = train.images.iter().map(|&p| p as f64 / 255.0).sum::<f64>() / n;
    let var = train
        .images
        .iter()
        .map(|&p| (p as f64 / 255.0 - mean).powi(2))
        .sum::<f64>()
        / n;
    assert!((mean - 0.2860).abs() < 5e-5, "mean {mean}");
    assert!((var.sqrt() - 0.3530).abs() < 5e-5, "std {}", var.sqrt());
    let p = Preprocess::from_json(LENET).unwrap();
    let t = p.apply(&train.images, train.len()).unwrap();
    assert_eq!(t.shape, vec![60_000, 1, 28, 28]);
    let m = t.data.iter().map(|&v| v as f64).sum::<f64>() / n;
    let sd = (t.data.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n).sqrt();
    assert!(
        m.abs() < 1e-3 && (sd - 1.0).abs() < 1e-3,
        "mean {m}, std {sd}"
    );
}

#[test]
fn fashion_mnist_missing_or_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let err = err_text(fashion_mnist::load(dir.path(), Split::Test));
    assert!(
        err.contains("apt-get install dataset-fashion-mnist")
            && err.contains("t10k-images-idx3-ubyte.gz"),
        "{err}"
    );
    // Right format, wrong content.
    put(
        dir.path(),
        "t10k-images-idx3-ubyte.gz",
        &gz(&idx_bytes(8, &[2, 28, 28], &[0; 2 * 784])),
    );
    put(
        dir.path(),
        "t10k-labels-idx1-ubyte.gz",
        &gz(&idx_bytes(8, &[2], &[0, 1])),
    );
    let err = err_text(fashion_mnist::load(dir.path(), Split::Test));
    assert!(err.contains("2 images") && err.contains("10000"), "{err}");
}

const LENET: &str = r#"{"model": "lenet5", "dataset": "fashion-mnist", "input_shape": [1,1,28,28], "pad": 0, "mean": [0.2860], "std": [0.3530], "test_accuracy": 0.9123, "epochs": 20, "params": 61706}"#;

#[test]
fn preprocess_parses_and_refuses_bad_descriptions() {
    let p = Preprocess::from_json(LENET).unwrap();
    assert_eq!(p.model, "lenet5");
    assert_eq!(p.raw_shape(), [1, 28, 28]);
    assert_eq!(p.params, 61706);

    let dir = tempfile::tempdir().unwrap();
    let path = put(dir.path(), "lenet5.json", LENET.as_bytes());
    assert_eq!(Preprocess::load(&path).unwrap(), p);

    let cases = [
        (
            LENET.replace("\"pad\": 0,", "\"pad\": 0, \"extra\": 1,"),
            "unknown field `extra`",
        ),
        (
            LENET.replace("\"std\": [0.3530], ", ""),
            "missing field `std`",
        ),
        (
            LENET.replace("[0.2860]", "[0.1, 0.2]"),
            "mean has 2 value(s)",
        ),
        (LENET.replace("[0.3530]", "[0.0]"), "must be positive"),
        (LENET.replace("[1,1,28,28]", "[1,28,28]"), "input_shape"),
        (LENET.replace("\"pad\": 0", "\"pad\": 14"), "pad 14"),
        (LENET.replace("0.9123", "91.23"), "test_accuracy"),
        (LENET.replace("\"epochs\": 20", "\"epochs\": -1"), "epochs"),
    ];
    for (text, want) in cases {
        let path = put(dir.path(), "bad.json", text.as_bytes());
        let err = err_text(Preprocess::load(&path));
        assert!(
            err.contains("bad.json") && err.contains(want),
            "{want}: {err}"
        );
    }
}

#[test]
fn preprocess_pads_raw_zeros_then_normalises_in_f32() {
    let text = LENET
        .replace("[1,1,28,28]", "[1,2,4,5]")
        .replace("\"pad\": 0", "\"pad\": 1")
        .replace("[0.2860]", "[0.5, 0.1307]")
        .replace("[0.3530]", "[0.5, 0.3081]");
    let p = Preprocess::from_json(&text).unwrap();
    assert_eq!(p.raw_shape(), [2, 2, 3]);
    // Two images of 2 channels of 2×3 pixels.
    let raw: Vec<u8> = vec![
        0, 255, 128, 1, 2, 3, // image 0 channel 0
        10, 20, 30, 40, 50, 60, // image 0 channel 1
        255, 254, 253, 252, 251, 250, // image 1 channel 0
        7, 77, 177, 0, 100, 200, // image 1 channel 1
    ];
    let t = p.apply(&raw, 2).unwrap();
    assert_eq!(t.shape, vec![2, 2, 4, 5]);
    // torchvision in f32: (p / 255 − mean) / std, each step rounded to f32.
    let torch = |px: u8, c: usize| {
        let x = (px as f64 / 255.0) as f32;
        let d = (x as f64 - p.mean[c] as f32 as f64) as f32;
        (d as f64 / p.std[c] as f32 as f64) as f32
    };
    for n in 0..2 {
        for c in 0..2 {
            for y in 0..4 {
                for x in 0..5 {
                    let got = t.data[((n * 2 + c) * 4 + y) * 5 + x];
                    let inside = (1..3).contains(&y) && (1..4).contains(&x);
                    let px = if inside {
                        raw[(n * 2 + c) * 6 + (y - 1) * 3 + (x - 1)]
                    } else {
                        0
                    };
                    assert_eq!(got.to_bits(), torch(px, c).to_bits(), "n{n} c{c} y{y} x{x}");
                    // And within one f32 rounding of the exact value.
                    let exact = (px as f64 / 255.0 - p.mean[c]) / p.std[c];
                    assert!((got as f64 - exact).abs() <= 4e-7 * exact.abs().max(1.0));
                }
            }
        }
    }
    // Mean 0.5, std 0.5 maps 0 to −1 and 255 to 1 exactly.
    assert_eq!(t.data[0], -1.0);
    assert_eq!(t.data[7], 1.0);
    let err = p.apply(&raw[..23], 2).unwrap_err().to_string();
    assert!(err.contains("23 bytes") && err.contains("2×2×3"), "{err}");
}

/// Cross-check against NumPy itself (needs a Python with numpy: set
/// PRECIS_PYTHON, default `python3`).
#[test]
#[ignore = "needs Python with numpy"]
fn npy_and_npz_interoperate_with_numpy() {
    let python = std::env::var("PRECIS_PYTHON").unwrap_or_else(|_| "python3".into());
    let dir = tempfile::tempdir().unwrap();
    let ours = Tensor::new(vec![2, 3], vec![1.0, -2.0, 3.5, f32::MAX, 0.0, 1e-30]).unwrap();
    npy::write(dir.path().join("ours.npy"), &ours).unwrap();
    let script = r#"
import numpy as np, sys
d = sys.argv[1]
a = np.load(d + '/ours.npy')
assert a.dtype == np.float32 and a.shape == (2, 3), (a.dtype, a.shape)
assert a.tolist() == np.array([1, -2, 3.5, np.finfo(np.float32).max, 0, 1e-30], np.float32).reshape(2, 3).tolist()
x = np.arange(24, dtype=np.float64).reshape(2, 3, 4) / 7
np.save(d + '/f8.npy', x)
np.save(d + '/u1.npy', np.arange(10, dtype=np.uint8))
np.save(d + '/i8.npy', np.array([-5, 1 << 30], dtype=np.int64))
np.savez(d + '/plain.npz', x=x.astype(np.float32), y=np.ones(3, np.int32))
np.savez_compressed(d + '/packed.npz', x=x.astype(np.float32), y=np.ones(3, np.int32))
np.save(d + '/fortran.npy', np.asfortranarray(x))
np.save(d + '/big.npy', x.astype('>f4'))
"#;
    let status = std::process::Command::new(&python)
        .args(["-c", script])
        .arg(dir.path())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(status.success(), "numpy script failed");
    let want: Vec<f32> = (0..24).map(|i| (i as f64 / 7.0) as f32).collect();
    let f8 = npy::read(dir.path().join("f8.npy")).unwrap();
    assert_eq!(
        (f8.shape.clone(), f8.data.clone()),
        (vec![2, 3, 4], want.clone())
    );
    let u1 = npy::read(dir.path().join("u1.npy")).unwrap();
    assert_eq!(u1.data, (0..10).map(|i| i as f32).collect::<Vec<_>>());
    let i8 = npy::read(dir.path().join("i8.npy")).unwrap();
    assert_eq!(i8.data, vec![-5.0, (1 << 30) as f32]);
    for name in ["plain.npz", "packed.npz"] {
        let arrays = npz::read(dir.path().join(name)).unwrap();
        assert_eq!(arrays.len(), 2, "{name}");
        assert_eq!(arrays[0].0, "x");
        assert_eq!(arrays[0].1.data, want);
        assert_eq!(arrays[1].0, "y");
        assert_eq!(arrays[1].1.data, vec![1.0; 3]);
    }
    assert!(err_text(npy::read(dir.path().join("fortran.npy"))).contains("Fortran"));
    assert!(err_text(npy::read(dir.path().join("big.npy"))).contains("big-endian"));
}

/// The training scripts' own preprocessing of the first 16 test images
/// (examples/train/make_sample.py, NumPy + PyTorch in f32), reproduced bit
/// for bit.
#[test]
fn preprocess_matches_the_training_pipeline_bit_for_bit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let want = npy::read(root.join("examples/data/fmnist_test_16.npy")).unwrap();
    let labels = npy::read(root.join("examples/data/fmnist_test_16_labels.npy")).unwrap();
    let test = fashion_mnist::load(fashion_mnist::DEFAULT_DIR, Split::Test).unwrap();
    let p = Preprocess::from_json(LENET).unwrap();
    let got = p.apply(&test.images[..16 * 784], 16).unwrap();
    assert_eq!(got.shape, want.shape);
    let bits = |t: &Tensor| t.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got), bits(&want));
    let ours: Vec<f32> = test.labels[..16].iter().map(|&l| l as f32).collect();
    assert_eq!(labels.data, ours);
}

#[test]
fn top1_and_accuracy_follow_numpy_argmax() {
    use runtime::data::{accuracy, top1};
    let logits = Tensor::new(
        vec![4, 3],
        vec![
            0.1,
            0.7,
            0.2, // 1
            5.0,
            5.0,
            -1.0, // tie: first
            -3.0,
            f32::NAN,
            9.0, // NaN wins
            -2.0,
            -1.0,
            -1.5, // 1
        ],
    )
    .unwrap();
    assert_eq!(top1(&logits).unwrap(), vec![1, 0, 1, 1]);
    assert_eq!(accuracy(&logits, &[1, 0, 2, 1]).unwrap(), 0.75);
    assert!(accuracy(&logits, &[1, 0]).is_err());
    assert!(top1(&Tensor::zeros(vec![4])).is_err());
    assert!(top1(&Tensor::zeros(vec![2, 0])).is_err());
}
