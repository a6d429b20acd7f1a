//! Compressed inputs that expand far past what their headers announce
//! (gzip IDX files, deflated `.npz` members), and headers that announce
//! huge arrays, cost no more memory than the bytes actually needed.

use std::io::Write;

/// The counting allocator is process-wide: tests that measure with it
/// take turns, or one's allocations count against the other.
static MEASURING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Live-memory growth while `f` runs (this crate's counting allocator).
/// Callers hold [`MEASURING`].
fn peak_growth<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = precis_fuzz::alloc::start_input();
    let out = f();
    (out, precis_fuzz::alloc::peak_growth(base))
}

const BOMB: usize = 256 << 20;

fn zeros_after(header: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(header).unwrap();
    let block = vec![0u8; 1 << 20];
    for _ in 0..BOMB >> 20 {
        e.write_all(&block).unwrap();
    }
    e.finish().unwrap()
}

#[test]
fn gzip_and_deflate_bombs_are_cheap() {
    let _turn = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    // IDX labels announcing 10 bytes, followed by 256 MiB of zeros.
    let gz = zeros_after(&[0, 0, 8, 1, 0, 0, 0, 10]);
    assert!(gz.len() < BOMB / 100);
    let (r, grew) = peak_growth(|| runtime::data::idx::decode_maybe_gz(&gz));
    let err = r.unwrap_err();
    assert!(err.contains("trailing data"), "{err}");
    assert!(grew < 8 << 20, "gzip bomb cost {grew} bytes");

    // An .npz member announcing a (4,) float32 array, then 256 MiB.
    let mut npy = runtime::data::npy::encode(&ir::Tensor::new(vec![4], vec![0.0; 4]).unwrap());
    npy.truncate(npy.len() - 16);
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    w.start_file("x.npy", opts).unwrap();
    w.write_all(&npy).unwrap();
    let block = vec![0u8; 1 << 20];
    for _ in 0..BOMB >> 20 {
        w.write_all(&block).unwrap();
    }
    let npz = w.finish().unwrap().into_inner();
    assert!(npz.len() < BOMB / 100);
    let (r, grew) = peak_growth(|| runtime::data::npz::decode(&npz));
    let err = r.unwrap_err();
    assert!(err.contains("trailing garbage"), "{err}");
    assert!(grew < 8 << 20, "deflate bomb cost {grew} bytes");
}

#[test]
fn huge_announced_sizes_allocate_nothing() {
    let _turn = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    // A .npy header claiming 2^60 float32 values over 16 bytes of data.
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1152921504606846976,), }\n";
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(header.as_bytes());
    npy.extend_from_slice(&[0; 16]);
    let (r, grew) = peak_growth(|| runtime::data::npy::decode(&npy));
    assert!(r.unwrap_err().contains("truncated"));
    assert!(grew < 1 << 16, "{grew} bytes");
    // IDX dimensions whose product is 2^64 − 1 elements.
    let idx = [
        0, 0, 8, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3,
    ];
    let (r, grew) = peak_growth(|| runtime::data::idx::decode_maybe_gz(&idx));
    assert!(r.unwrap_err().contains("truncated"));
    assert!(grew < 1 << 16, "{grew} bytes");
}
