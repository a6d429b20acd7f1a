//! Encrypted inference: `keygen`, `encrypt`, `eval`, `decrypt` (the client /
//! server split) and `run` (all of them on one machine).
//!
//! Files: the secret key (`secret.key`, client only) and the evaluation
//! keys (`eval.keys`: relinearisation, exactly the circuit's and its
//! bootstrapper's Galois keys, encapsulation keys — never a secret) are
//! `runtime::ckks::serialize` containers; a ciphertext file (`.ct`) is a
//! bundle of them (see [`CT_MAGIC`]). Every file is checked against the
//! circuit before use: parameters, level, slot count, ciphertext count, the
//! Galois keys present.

use crate::circuits::load_circuit;
use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use ir::circuit::Circuit;
use runtime::backend::{execute, Prepared, Progress};
use runtime::ckks::bootstrapping::BootstrappingKeys;
use runtime::ckks::keys::galois_element_for_rotation;
use runtime::ckks::serialize::{self, Expected};
use runtime::ckks::{Ciphertext, KeyGenerator, KeyStorage, SecretKey};
use runtime::encrypted::{CircuitContext, CircuitKeys, CkksBackend, EncryptionKey};
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// The first eight bytes of a ciphertext bundle, then a u32 version, a u32
/// count, and that many ciphertext containers.
pub const CT_MAGIC: &[u8; 8] = b"PRECISCB";
const CT_VERSION: u32 = 1;

fn is_quiet(json: bool) -> bool {
    json || !std::io::stderr().is_terminal()
}

/// A progress bar over a circuit's nodes: the layer being evaluated and the
/// bootstraps done.
struct Bar {
    pb: ProgressBar,
    /// Bootstraps among nodes `0..=i`, and in all.
    bootstraps_through: Vec<usize>,
    bootstraps: usize,
}

impl Bar {
    fn new(c: &Circuit, label: &str, quiet: bool) -> Self {
        let pb = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(c.nodes.len() as u64)
        };
        pb.set_style(
            ProgressStyle::with_template("{prefix:>9} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
                .expect("template")
                .progress_chars("#> "),
        );
        pb.set_prefix(label.to_string());
        let mut n = 0;
        let bootstraps_through = c
            .nodes
            .iter()
            .map(|node| {
                n += matches!(node.op, ir::circuit::Op::Bootstrap { .. }) as usize;
                n
            })
            .collect();
        Bar {
            pb,
            bootstraps_through,
            bootstraps: n,
        }
    }

    fn finish(&self) {
        self.pb.finish_and_clear();
    }
}

impl Progress for Bar {
    fn node_done(&self, node: usize, _total: usize, layer: &str) {
        self.pb.set_position(node as u64 + 1);
        let done = self.bootstraps_through.get(node).copied().unwrap_or(0);
        let before = node
            .checked_sub(1)
            .and_then(|i| self.bootstraps_through.get(i).copied())
            .unwrap_or(0);
        if node % 16 == 0 || done != before {
            self.pb
                .set_message(format!("{layer} · bootstraps {done}/{}", self.bootstraps));
        }
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{}", path.display()))
}

/// Writes a ciphertext bundle atomically.
pub fn write_cts(path: &Path, ctx: &CircuitContext, cts: &[Ciphertext]) -> Result<()> {
    let mut out = Vec::new();
    out.extend_from_slice(CT_MAGIC);
    out.extend_from_slice(&CT_VERSION.to_le_bytes());
    out.extend_from_slice(&(cts.len() as u32).to_le_bytes());
    for ct in cts {
        serialize::save_ciphertext(&ctx.params, ct, &mut out).map_err(|e| anyhow!("{e}"))?;
    }
    ir::file::write_atomic(path, &out).map_err(|e| anyhow!("{e}"))
}

/// Reads a ciphertext bundle, each ciphertext checked against the level and
/// slot count expected and the count against `count`.
pub fn read_cts(
    path: &Path,
    ctx: &CircuitContext,
    count: usize,
    expected: Expected,
) -> Result<Vec<Ciphertext>> {
    let bytes = read_file(path)?;
    let ctxt = || format!("{}", path.display());
    if bytes.len() < 16 || &bytes[..8] != CT_MAGIC {
        if bytes.len() >= 8 && &bytes[..8] == serialize::MAGIC {
            bail!(
                "{}: a precis CKKS file that is not a ciphertext bundle (a key file?)",
                path.display()
            );
        }
        bail!(
            "{}: not a precis ciphertext file (bad magic)",
            path.display()
        );
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != CT_VERSION {
        bail!(
            "{}: ciphertext file version {version}; this precis reads version {CT_VERSION}",
            path.display()
        );
    }
    let n = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
    if n != count {
        bail!(
            "{}: {n} ciphertexts, the circuit's {} takes {count}",
            path.display(),
            "input/output"
        );
    }
    let mut r = &bytes[16..];
    let mut cts = Vec::with_capacity(n);
    for _ in 0..n {
        let ct = serialize::load_ciphertext_expecting(&ctx.params, &mut r, &expected)
            .map_err(|e| anyhow!("{e}"))
            .with_context(ctxt)?;
        cts.push(ct);
    }
    if !r.is_empty() {
        bail!(
            "{}: {} bytes after the last ciphertext",
            path.display(),
            r.len()
        );
    }
    Ok(cts)
}

fn load_secret(path: &Path, ctx: &CircuitContext) -> Result<SecretKey> {
    let bytes = read_file(path)?;
    serialize::load_secret_key(&ctx.params, &mut bytes.as_slice())
        .map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// Loads the evaluation keys and checks they serve `circuit`.
fn load_eval_keys(
    path: &Path,
    ctx: &CircuitContext,
    c: &Circuit,
    storage: Option<KeyStorage>,
) -> Result<CircuitKeys> {
    // Held as asked, else as the preset holds them (key files record seeds).
    let storage = Some(storage.unwrap_or(ctx.config.galois_key_storage));
    // Streamed from the file: its bytes are never held beside the keys.
    let file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut r = std::io::BufReader::with_capacity(1 << 20, file);
    let keys = if ctx.bootstrapper.is_some() {
        let k: BootstrappingKeys =
            serialize::load_bootstrapping_keys_as(&ctx.params, &mut r, storage)
                .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        CircuitKeys {
            evaluation: k.evaluation,
            encapsulation: Some(k.encapsulation),
        }
    } else {
        let k = serialize::load_evaluation_keys_as(&ctx.params, &mut r, storage)
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        CircuitKeys {
            evaluation: Arc::new(k),
            encapsulation: None,
        }
    };
    if !keys.evaluation.has_relinearization_key() {
        bail!("{}: no relinearisation key", path.display());
    }
    let have = keys.evaluation.galois_elements();
    for (g, level) in ctx.galois_levels(c) {
        match keys.evaluation.galois_key(g) {
            Some(k) if k.level() >= level => {}
            Some(k) => bail!(
                "{}: the Galois key {g} reaches level {}, the circuit uses it at {level}: these keys are not this circuit's",
                path.display(),
                k.level()
            ),
            None => {
                let k = c
                    .rotations
                    .keys()
                    .find(|&&k| galois_element_for_rotation(ctx.params.n(), k as i64) == g);
                bail!(
                    "{}: no Galois key {g}{} among its {}: these keys are not this circuit's",
                    path.display(),
                    k.map_or(String::new(), |k| format!(" (rotation by {k})")),
                    have.len()
                )
            }
        }
    }
    Ok(keys)
}

fn write_keys(
    dir: &Path,
    ctx: &CircuitContext,
    sk: &SecretKey,
    keys: &CircuitKeys,
) -> Result<(u64, u64)> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    let mut s = Vec::new();
    serialize::save_secret_key(&ctx.params, sk, &mut s).map_err(|e| anyhow!("{e}"))?;
    let sk_path = dir.join("secret.key");
    ir::file::write_atomic(&sk_path, &s).map_err(|e| anyhow!("{e}"))?;
    let ek_path = dir.join("eval.keys");
    ir::file::write_atomic_with(&ek_path, |w| {
        let mut w = w;
        match &keys.encapsulation {
            Some(enc) => serialize::save_bootstrapping_keys(
                &ctx.params,
                &BootstrappingKeys {
                    evaluation: keys.evaluation.clone(),
                    encapsulation: enc.clone(),
                },
                &mut w,
            ),
            None => serialize::save_evaluation_keys(&ctx.params, &keys.evaluation, &mut w),
        }
        .map_err(std::io::Error::other)
    })
    .with_context(|| format!("{}", ek_path.display()))?;
    let ek_bytes = std::fs::metadata(&ek_path).map(|m| m.len()).unwrap_or(0);
    Ok((s.len() as u64, ek_bytes))
}

/// The CKKS context of the circuit at `path`, refusing insecure parameters
/// unless `insecure`.
fn context(c: &Circuit, path: &Path, insecure: bool) -> Result<CircuitContext> {
    crate::circuits::check_circuit_allowed(c, path, insecure)?;
    CircuitContext::new(c).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// A progress bar over key generation (Galois keys; the bootstrapping
/// keys follow them).
fn key_bar(galois: usize, quiet: bool) -> ProgressBar {
    let pb = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(galois as u64)
    };
    pb.set_style(
        ProgressStyle::with_template(
            "   keygen [{bar:30}] {pos}/{len} Galois keys {msg} ({elapsed})",
        )
        .expect("template")
        .progress_chars("#> "),
    );
    pb
}

/// A secret key and the circuit's evaluation keys (Galois keys held as
/// `storage`), with a progress bar; the temporaries go back to the kernel.
fn gen_keys(
    ctx: &CircuitContext,
    c: &Circuit,
    storage: KeyStorage,
    quiet: bool,
) -> Result<(SecretKey, CircuitKeys)> {
    let mut kg = KeyGenerator::new(&ctx.params).map_err(|e| anyhow!("{e}"))?;
    let sk = kg.gen_secret_key();
    let bar = key_bar(ctx.galois_levels(c).len(), quiet);
    let keys = ctx
        .gen_keys_as(&mut kg, &sk, c, storage, &|i, _| bar.set_position(i as u64))
        .map_err(|e| anyhow!("{e}"))?;
    bar.finish_and_clear();
    runtime::ckks::allocator::release_free_memory();
    Ok((sk, keys))
}

/// `c` prepared for the CKKS backend: diagonals made (and encoded) at use,
/// never all held at once.
fn prepared_uncached(c: &Circuit) -> Result<Prepared> {
    let mut prepared = Prepared::new(c.clone()).map_err(|e| anyhow!("{e}"))?;
    prepared.cache_diagonals = false;
    Ok(prepared)
}

#[derive(clap::Args)]
pub struct KeygenArgs {
    /// The circuit file.
    circuit: PathBuf,
    /// Directory for `secret.key` (keep it; the client's only) and
    /// `eval.keys` (for the server).
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    json: bool,
    /// Allow a circuit compiled for an insecure test preset.
    #[arg(long)]
    insecure: bool,
}

pub fn keygen(args: KeygenArgs) -> Result<()> {
    let c = load_circuit(&args.circuit)?;
    let ctx = context(&c, &args.circuit, args.insecure)?;
    let t = Instant::now();
    let bar = key_bar(ctx.galois_levels(&c).len(), is_quiet(args.json));
    let mut kg = KeyGenerator::new(&ctx.params).map_err(|e| anyhow!("{e}"))?;
    let sk = kg.gen_secret_key();
    // Written as seeds: no need to expand them here.
    let keys = ctx
        .gen_keys_as(&mut kg, &sk, &c, KeyStorage::Seeded, &|i, _| {
            bar.set_position(i as u64)
        })
        .map_err(|e| anyhow!("{e}"))?;
    bar.set_message("writing");
    let gen_s = t.elapsed().as_secs_f64();
    let (sk_bytes, ek_bytes) = write_keys(&args.out, &ctx, &sk, &keys)?;
    let server_bytes = runtime::resources::resources(&c)
        .map(|r| r.key_bytes)
        .unwrap_or_else(|_| keys.size_bytes());
    bar.finish_and_clear();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "secret_key": args.out.join("secret.key"),
                "eval_keys": args.out.join("eval.keys"),
                "secret_key_bytes": sk_bytes,
                "eval_keys_bytes": ek_bytes,
                "server_key_memory_bytes": server_bytes,
                "galois_keys": keys.evaluation.galois_elements().len(),
                "seconds": gen_s,
            }))?
        );
    } else {
        println!(
            "wrote {} ({:.1} KiB, keep it private) and {} ({:.2} GiB on disk, {:.2} GiB in the server's memory as the preset holds them; {} Galois keys) in {gen_s:.1} s",
            args.out.join("secret.key").display(),
            sk_bytes as f64 / 1024.0,
            args.out.join("eval.keys").display(),
            ek_bytes as f64 / (1u64 << 30) as f64,
            server_bytes as f64 / (1u64 << 30) as f64,
            keys.evaluation.galois_elements().len()
        );
    }
    Ok(())
}

/// One input tensor from `X.npy` (sample `index`), preprocessed if `raw`.
fn read_input(c: &Circuit, path: &Path, index: usize, raw: bool) -> Result<Vec<f32>> {
    let x = runtime::data::npy::read(path).map_err(|e| anyhow!("{e}"))?;
    let per: usize = c.input.shape[1..].iter().product();
    if raw {
        let pre = c.input.preprocess.as_ref().ok_or_else(|| {
            anyhow!("the circuit records no preprocessing; give preprocessed inputs")
        })?;
        let ch = c.input.shape[1];
        let (h, w) = (
            c.input.shape[2] - 2 * pre.pad,
            c.input.shape[3] - 2 * pre.pad,
        );
        let raw_per = ch * h * w;
        if x.data.len() % raw_per != 0 || x.data.is_empty() {
            bail!(
                "{}: {} values are not whole raw images of {ch}×{h}×{w}",
                path.display(),
                x.data.len()
            );
        }
        let n = x.data.len() / raw_per;
        if index >= n {
            bail!(
                "{}: --index {index} but the file holds {n} images",
                path.display()
            );
        }
        let img = &x.data[index * raw_per..(index + 1) * raw_per];
        if img
            .iter()
            .any(|&v| !(0.0..=255.0).contains(&v) || v.fract() != 0.0)
        {
            bail!(
                "{}: --raw images must hold pixel values 0..=255",
                path.display()
            );
        }
        let mut out = Vec::with_capacity(per);
        let (ph, pw) = (c.input.shape[2], c.input.shape[3]);
        for k in 0..ch {
            let norm = |p: f32| (p / 255.0 - pre.mean[k] as f32) / pre.std[k] as f32;
            for i in 0..ph {
                for j in 0..pw {
                    let (ii, jj) = (i as isize - pre.pad as isize, j as isize - pre.pad as isize);
                    let v = if ii >= 0 && jj >= 0 && (ii as usize) < h && (jj as usize) < w {
                        img[(k * h + ii as usize) * w + jj as usize]
                    } else {
                        0.0
                    };
                    out.push(norm(v));
                }
            }
        }
        return Ok(out);
    }
    if x.shape.len() < 2 || x.shape[1..] != c.input.shape[1..] {
        bail!(
            "{}: samples of shape {:?}, the circuit takes {:?} (batched on the first axis)",
            path.display(),
            &x.shape.get(1..).unwrap_or(&[]),
            &c.input.shape[1..]
        );
    }
    let n = x.shape[0];
    if index >= n {
        bail!(
            "{}: --index {index} but the file holds {n} samples",
            path.display()
        );
    }
    Ok(x.data[index * per..(index + 1) * per].to_vec())
}

/// Refuses an input outside the calibrated range: the polynomials would leave
/// their domain and diverge under encryption.
fn check_range(c: &Circuit, x: &[f32], what: &str) -> Result<()> {
    if let Some(r) = c.input.range {
        let m = x.iter().fold(0f32, |m, &v| m.max(v.abs())) as f64;
        if m > r {
            bail!(
                "{what}: |x| up to {m:.4} exceeds the circuit's calibrated input range {r:.4}; its polynomials would leave their domain (recalibrate, or give inputs like the calibration data)"
            );
        }
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct EncryptArgs {
    circuit: PathBuf,
    /// The client's secret key.
    #[arg(long)]
    key: PathBuf,
    /// Samples (.npy, batched on the first axis): preprocessed model
    /// inputs, or raw pixel bytes with --raw.
    #[arg(long)]
    input: PathBuf,
    /// Which sample to encrypt.
    #[arg(long, default_value_t = 0)]
    index: usize,
    /// The input holds raw images: apply the circuit's preprocessing.
    #[arg(long)]
    raw: bool,
    #[arg(short, long)]
    output: PathBuf,
    /// Allow a circuit compiled for an insecure test preset.
    #[arg(long)]
    insecure: bool,
}

pub fn encrypt(args: EncryptArgs) -> Result<()> {
    let c = load_circuit(&args.circuit)?;
    let ctx = context(&c, &args.circuit, args.insecure)?;
    let sk = load_secret(&args.key, &ctx)?;
    let x = read_input(&c, &args.input, args.index, args.raw)?;
    check_range(
        &c,
        &x,
        &format!("{} sample {}", args.input.display(), args.index),
    )?;
    let data: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let layout = &c.layouts[c.input.layout as usize];
    let cts = ctx
        .encrypt(&c, &layout.pack(&data), EncryptionKey::Secret(&sk))
        .map_err(|e| anyhow!("{e}"))?;
    write_cts(&args.output, &ctx, &cts)?;
    println!(
        "wrote {} ({} ciphertext(s) at level {}, {} slots)",
        args.output.display(),
        cts.len(),
        c.input.level,
        c.params.slots
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct EvalArgs {
    circuit: PathBuf,
    /// The evaluation keys (`KEYDIR/eval.keys`).
    #[arg(long = "eval-keys")]
    eval_keys: PathBuf,
    /// The encrypted input.
    ciphertext: PathBuf,
    #[arg(short, long)]
    output: PathBuf,
    /// How to hold the Galois keys in memory: `expanded` (fastest) or
    /// `seeded` (half the key memory; each use regenerates the uniform
    /// halves). Default: the preset's choice.
    #[arg(long = "key-storage", value_parser = parse_storage)]
    key_storage: Option<KeyStorage>,
    #[arg(long)]
    json: bool,
    /// Allow a circuit compiled for an insecure test preset.
    #[arg(long)]
    insecure: bool,
}

fn parse_storage(s: &str) -> Result<KeyStorage, String> {
    KeyStorage::ALL
        .into_iter()
        .find(|k| k.name() == s)
        .ok_or_else(|| format!("`{s}`: expected expanded or seeded"))
}

pub fn eval(args: EvalArgs) -> Result<()> {
    let c = load_circuit(&args.circuit)?;
    let ctx = context(&c, &args.circuit, args.insecure)?;
    let in_cts = c.layouts[c.input.layout as usize].cts();
    let cts = read_cts(
        &args.ciphertext,
        &ctx,
        in_cts,
        Expected {
            level: Some(c.input.level as usize),
            slots: Some(c.params.slots),
        },
    )?;
    let t = Instant::now();
    let keys = load_eval_keys(&args.eval_keys, &ctx, &c, args.key_storage)?;
    runtime::ckks::allocator::release_free_memory();
    let load_s = t.elapsed().as_secs_f64();
    // One pass over the nodes: a cached diagonal would never be read again.
    let prepared = prepared_uncached(&c)?;
    let backend = CkksBackend::new(&ctx, &keys);
    let bar = Bar::new(&prepared.circuit, "evaluate", is_quiet(args.json));
    let t = Instant::now();
    let out = execute(&backend, &prepared, cts, &bar).map_err(|e| anyhow!("{e}"))?;
    bar.finish();
    let eval_s = t.elapsed().as_secs_f64();
    write_cts(&args.output, &ctx, &out)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "output": args.output, "load_keys_seconds": load_s, "eval_seconds": eval_s,
                "bootstraps": prepared.circuit.stats().bootstraps,
            }))?
        );
    } else {
        println!(
            "wrote {} in {eval_s:.1} s ({} bootstraps; keys loaded in {load_s:.1} s)",
            args.output.display(),
            prepared.circuit.stats().bootstraps
        );
    }
    Ok(())
}

/// Decrypted output tensor of `cts` (exact: for the key owner).
fn decrypt_output(
    ctx: &CircuitContext,
    c: &Circuit,
    sk: &SecretKey,
    cts: &[Ciphertext],
) -> Vec<f64> {
    let slots = ctx.decrypt(sk, cts);
    c.layouts[c.output.layout as usize].unpack(&slots)
}

/// Noisy simulations per sample in `run` (their largest difference from
/// the exact simulation is the predicted size of CKKS's errors).
const NOISE_DRAWS: usize = 8;

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((x - y).abs()))
}

fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

#[derive(clap::Args)]
pub struct DecryptArgs {
    circuit: PathBuf,
    /// The client's secret key.
    #[arg(long)]
    key: PathBuf,
    /// The encrypted output.
    ciphertext: PathBuf,
    /// Also print the logits. Exact decrypted values are a function of the
    /// secret key (Li–Micciancio): keep them to yourself.
    #[arg(long)]
    logits: bool,
    #[arg(long)]
    json: bool,
    /// Allow a circuit compiled for an insecure test preset.
    #[arg(long)]
    insecure: bool,
}

pub fn decrypt(args: DecryptArgs) -> Result<()> {
    let c = load_circuit(&args.circuit)?;
    let ctx = context(&c, &args.circuit, args.insecure)?;
    let sk = load_secret(&args.key, &ctx)?;
    let out_cts = c.layouts[c.output.layout as usize].cts();
    let last = c
        .output
        .values
        .first()
        .map_or(0, |v| c.nodes[v.index()].level as usize);
    let cts = read_cts(
        &args.ciphertext,
        &ctx,
        out_cts,
        Expected {
            level: Some(last),
            slots: Some(c.params.slots),
        },
    )?;
    let y = decrypt_output(&ctx, &c, &sk, &cts);
    let class = argmax(&y);
    if args.json {
        let mut v = json!({ "class": class });
        if args.logits {
            v["logits"] = json!(y);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("class {class}");
        if args.logits {
            let l: Vec<String> = y.iter().map(|v| format!("{v:.5}")).collect();
            println!("logits {}", l.join(" "));
        }
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// An ONNX model (compiled first) or a circuit file.
    model: PathBuf,
    /// Precision α when compiling an ONNX model.
    #[arg(long, default_value_t = 14)]
    alpha: u32,
    /// Parameter preset when compiling an ONNX model.
    #[arg(long, default_value = "levels16", value_parser = crate::circuits::parse_preset)]
    preset: runtime::ckks::bootstrapping::presets::Preset,
    /// Preprocessed samples (.npy, batched on the first axis).
    #[arg(long, conflicts_with = "data")]
    input: Option<PathBuf>,
    /// Labelled samples: `fashion-mnist` (the test split, preprocessed as
    /// MODEL.json or the circuit says) or an .npz of preprocessed inputs
    /// `x` and integer labels `y`.
    #[arg(long, default_value = "fashion-mnist")]
    data: String,
    /// The first sample.
    #[arg(long, default_value_t = 0)]
    index: usize,
    /// How many samples.
    #[arg(long, default_value_t = 1)]
    limit: usize,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    calib: crate::model::CalibArgs,
    /// Allow a circuit compiled for an insecure test preset.
    #[arg(long)]
    insecure: bool,
}

/// The circuit `model` names: loaded if a circuit file, else compiled
/// (calibrated as `calib` says); with the compile time.
fn circuit_for(
    model: &Path,
    alpha: u32,
    preset: runtime::ckks::bootstrapping::presets::Preset,
    calib: &crate::model::CalibArgs,
    quiet: bool,
) -> Result<(Circuit, f64)> {
    let t0 = Instant::now();
    if crate::circuits::is_circuit(model) {
        return Ok((load_circuit(model)?, 0.0));
    }
    let graph = crate::model::load_onnx(model, None)?;
    let mut sink = std::io::sink();
    let mut err = std::io::stderr();
    let report: &mut dyn Write = if quiet { &mut sink } else { &mut err };
    let approx = crate::cmd_compile::approximate_model(model, calib, &[], &graph, alpha, report)?;
    let pre = calib.preprocess(model).ok();
    let range = calib
        .inputs(model)
        .ok()
        .map(|x| crate::circuits::input_range(&x) * calib.margin);
    let name = model
        .file_stem()
        .map_or_else(|| graph.name.clone(), |s| s.to_string_lossy().into_owned());
    let l = crate::circuits::lower_model(&approx, &name, preset, pre.as_ref(), range)?;
    Ok((l.circuit, t0.elapsed().as_secs_f64()))
}

/// Samples `skip..skip + limit` of an .npz with inputs `x` and labels `y`.
fn npz_samples(path: &Path, skip: usize, limit: usize) -> Result<Samples> {
    let arrays = crate::model::read_npz(path)?;
    let get = |k: &str| {
        crate::model::npz_array(&arrays, path, k).context("expected 'x' inputs and 'y' labels")
    };
    let (x, y) = (get("x")?, get("y")?);
    let n = x.shape.first().copied().unwrap_or(0);
    if y.data.len() != n {
        bail!("{}: {} labels for {n} inputs", path.display(), y.data.len());
    }
    if skip >= n {
        bail!("--index {skip}: {} holds {n} samples", path.display());
    }
    let end = (skip + limit).min(n);
    let per = x.data.len() / n;
    let mut labels = Vec::new();
    for &l in &y.data[skip..end] {
        if !(0.0..=255.0).contains(&l) || l.fract() != 0.0 {
            bail!("{}: label {l} is not a class index", path.display());
        }
        labels.push(Some(l as u8));
    }
    Ok((
        (skip..end)
            .map(|i| x.data[i * per..(i + 1) * per].to_vec())
            .collect(),
        labels,
    ))
}

/// Preprocessed inputs and their labels (where known).
type Samples = (Vec<Vec<f32>>, Vec<Option<u8>>);

/// Samples `skip..skip + limit` of `input` (preprocessed .npy), or of the
/// Fashion-MNIST test set preprocessed as `model`'s MODEL.json (or the
/// circuit) says; with their labels where known.
fn samples_for(
    c: &Circuit,
    model: &Path,
    input: Option<&Path>,
    skip: usize,
    limit: usize,
    calib: &crate::model::CalibArgs,
) -> Result<Samples> {
    if let Some(p) = input {
        let n = runtime::data::npy::read(p)
            .map_err(|e| anyhow!("{e}"))?
            .shape
            .first()
            .copied()
            .unwrap_or(0);
        let rows = (skip..(skip + limit).min(n.max(skip + 1)))
            .map(|i| read_input(c, p, i, false))
            .collect::<Result<Vec<_>>>()?;
        let n = rows.len();
        return Ok((rows, vec![None; n]));
    }
    let pre = match calib.preprocess(model) {
        Ok(p) => p,
        Err(e) => match &c.input.preprocess {
            // As the circuit records it.
            Some(p) => runtime::data::Preprocess {
                model: c.name.clone(),
                dataset: "fashion-mnist".into(),
                input_shape: std::iter::once(1)
                    .chain(c.input.shape[1..].iter().copied())
                    .collect(),
                pad: p.pad,
                mean: p.mean.clone(),
                std: p.std.clone(),
                // Unknown, and not used to preprocess.
                test_accuracy: 0.0,
                epochs: 0,
                params: 0,
            },
            None => return Err(e.context("give --input: the circuit records no preprocessing")),
        },
    };
    let ds = runtime::data::fashion_mnist::load(
        &calib.data_dir,
        runtime::data::fashion_mnist::Split::Test,
    )
    .map_err(|e| anyhow!("{e}"))?;
    if skip >= ds.len() {
        bail!("--index {skip}: the test set holds {} images", ds.len());
    }
    let n = limit.min(ds.len() - skip);
    let side = runtime::data::fashion_mnist::SIDE;
    let t = pre
        .apply(&ds.images[skip * side * side..(skip + n) * side * side], n)
        .map_err(|e| anyhow!("{e}"))?;
    let per = t.len() / n.max(1);
    Ok((
        (0..n)
            .map(|i| t.data[i * per..(i + 1) * per].to_vec())
            .collect(),
        ds.labels[skip..skip + n].iter().map(|&l| Some(l)).collect(),
    ))
}

pub fn run(args: RunArgs) -> Result<()> {
    let quiet = is_quiet(args.json);
    crate::circuits::check_preset_allowed(args.preset, args.insecure)?;
    let (c, compile_s) = circuit_for(&args.model, args.alpha, args.preset, &args.calib, quiet)?;
    let (x, labels) = match (&args.input, args.data.as_str()) {
        (None, d) if d != "fashion-mnist" => npz_samples(Path::new(d), args.index, args.limit)?,
        (input, _) => samples_for(
            &c,
            &args.model,
            input.as_deref(),
            args.index,
            args.limit,
            &args.calib,
        )?,
    };
    let ctx = context(&c, &args.model, args.insecure)?;
    if !quiet {
        eprintln!(
            "circuit: {} nodes, {} bootstraps, {} slots, preset {}; generating keys…",
            c.nodes.len(),
            c.stats().bootstraps,
            c.params.slots,
            c.params.preset
        );
    }
    let t = Instant::now();
    let (sk, keys) = gen_keys(&ctx, &c, ctx.config.galois_key_storage, quiet)?;
    let keygen_s = t.elapsed().as_secs_f64();
    let prepared = prepared_uncached(&c)?;
    let backend = CkksBackend::new(&ctx, &keys);
    let layout = &c.layouts[c.input.layout as usize];
    let estimated = estimated_node_seconds(&c);
    let mut rows = Vec::new();
    let mut agree = 0;
    for (i, xi) in x.iter().enumerate() {
        check_range(&c, xi, &format!("sample {i}"))?;
        let data: Vec<f64> = xi.iter().map(|&v| v as f64).collect();
        let t = Instant::now();
        let cts = ctx
            .encrypt(&c, &layout.pack(&data), EncryptionKey::Secret(&sk))
            .map_err(|e| anyhow!("{e}"))?;
        let enc_s = t.elapsed().as_secs_f64();
        let bar = Bar::new(&c, &format!("sample {i}"), quiet);
        let timer = NodeTimer::new(&bar, c.nodes.len());
        let t = Instant::now();
        let out =
            execute(&backend, &prepared, cts, &timer).map_err(|e| anyhow!("sample {i}: {e}"))?;
        bar.finish();
        let eval_s = t.elapsed().as_secs_f64();
        let by_cat = by_category(&c, &timer.into_seconds(), &estimated);
        let t = Instant::now();
        let y = decrypt_output(&ctx, &c, &sk, &out);
        let dec_s = t.elapsed().as_secs_f64();
        let sim = runtime::simulate::run_samples(&prepared, xi, 1, 1, None)
            .map_err(|e| anyhow!("simulation of sample {i}: {e}"))?;
        let diff = max_diff(&y, &sim[0]);
        // What the simulation predicts for CKKS's errors: the largest logit
        // difference of NOISE_DRAWS noisy simulations from the exact one.
        let repeated: Vec<f32> = (0..NOISE_DRAWS).flat_map(|_| xi.iter().copied()).collect();
        let noise =
            runtime::simulate::NoiseModel::for_circuit(&c, 1 + i as u64 * NOISE_DRAWS as u64);
        let noisy =
            runtime::simulate::run_samples(&prepared, &repeated, NOISE_DRAWS, 1, Some(&noise))
                .map_err(|e| anyhow!("noisy simulation of sample {i}: {e}"))?;
        let predicted = noisy.iter().fold(0f64, |m, o| m.max(max_diff(o, &sim[0])));
        agree += (argmax(&y) == argmax(&sim[0])) as usize;
        let row = json!({
            "sample": i,
            "label": labels[i],
            "encrypted_class": argmax(&y),
            "simulated_class": argmax(&sim[0]),
            "max_logit_diff": diff,
            "noise_predicted_max_logit_diff": predicted,
            "encrypt_seconds": enc_s,
            "eval_seconds": eval_s,
            "eval_by_category": by_cat,
            "decrypt_seconds": dec_s,
        });
        if !args.json {
            println!(
                "sample {i}: encrypted class {} (simulated {}{}), largest logit difference {diff:.2e} (noisy simulation: {predicted:.2e}); encrypt {enc_s:.2} s, evaluate {eval_s:.1} s, decrypt {dec_s:.2} s",
                argmax(&y),
                argmax(&sim[0]),
                labels[i].map_or(String::new(), |l| format!(", label {l}"))
            );
        }
        rows.push(row);
    }
    let peak = runtime::resources::peak_rss_bytes();
    let summary = json!({
        "model": args.model,
        "preset": c.params.preset,
        "bootstraps": c.stats().bootstraps,
        "estimated_seconds": crate::circuits::totals(&c, None)["estimated_seconds"],
        "compile_seconds": compile_s,
        "keygen_seconds": keygen_s,
        "eval_key_bytes": keys.size_bytes(),
        "peak_rss_bytes": peak,
        "agree_with_simulation": agree,
        "samples": rows,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "{agree}/{} encrypted classes agree with the simulation",
            rows.len()
        );
        println!(
            "compile {compile_s:.1} s, key generation {keygen_s:.1} s ({:.2} GiB of evaluation keys), peak memory {}",
            keys.size_bytes() as f64 / (1u64 << 30) as f64,
            peak.map_or("?".to_string(), |b| format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64))
        );
    }
    let _ = std::io::stdout().flush();
    Ok(())
}

#[derive(clap::Args)]
pub struct E2eArgs {
    /// An ONNX model (compiled first) or a circuit file.
    model: PathBuf,
    /// Precision α when compiling an ONNX model.
    #[arg(long, default_value_t = 14)]
    alpha: u32,
    /// Parameter preset when compiling an ONNX model.
    #[arg(long, default_value = "levels16", value_parser = crate::circuits::parse_preset)]
    preset: runtime::ckks::bootstrapping::presets::Preset,
    /// The test image (Fashion-MNIST test set index) to classify.
    #[arg(long, default_value_t = 0)]
    index: usize,
    /// Worker threads (default: all available).
    #[arg(long)]
    threads: Option<usize>,
    /// Print the per-layer table too (text output).
    #[arg(long)]
    layers: bool,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    calib: crate::model::CalibArgs,
    /// Allow a circuit compiled for an insecure test preset.
    #[arg(long)]
    insecure: bool,
}

/// Wall seconds of each node, taken between consecutive `node_done`s
/// (`execute` runs the nodes in order), passed on to a progress bar.
struct NodeTimer<'a> {
    bar: &'a Bar,
    last: std::sync::Mutex<Instant>,
    seconds: std::sync::Mutex<Vec<f64>>,
}

impl<'a> NodeTimer<'a> {
    fn new(bar: &'a Bar, nodes: usize) -> Self {
        NodeTimer {
            bar,
            last: std::sync::Mutex::new(Instant::now()),
            seconds: std::sync::Mutex::new(vec![0.0; nodes]),
        }
    }

    fn into_seconds(self) -> Vec<f64> {
        self.seconds.into_inner().expect("timer")
    }
}

/// The cost model's seconds for each node of `c`.
fn estimated_node_seconds(c: &Circuit) -> Vec<f64> {
    let cost = compiler::lower::cost::CostModel::for_preset(
        &c.params.preset,
        c.params.slots,
        (1usize << c.params.log_n) / 2,
    );
    compiler::lower::cost::node_seconds(c, &cost)
}

/// Measured and estimated seconds by [`CATEGORIES`].
fn by_category(c: &Circuit, measured: &[f64], estimated: &[f64]) -> serde_json::Value {
    let mut by_cat = serde_json::Map::new();
    for cat in CATEGORIES {
        let (m, e) = (0..c.nodes.len())
            .filter(|&i| node_category(c, i) == cat)
            .fold((0.0, 0.0), |(m, e), i| (m + measured[i], e + estimated[i]));
        by_cat.insert(
            cat.into(),
            json!({ "measured_seconds": m, "estimated_seconds": e }),
        );
    }
    by_cat.into()
}

impl Progress for NodeTimer<'_> {
    fn node_done(&self, node: usize, total: usize, layer: &str) {
        let now = Instant::now();
        let mut last = self.last.lock().expect("timer");
        self.seconds.lock().expect("timer")[node] += (now - *last).as_secs_f64();
        *last = now;
        drop(last);
        self.bar.node_done(node, total, layer);
    }
}

/// Where a node's time goes: bootstraps, polynomials (every node of an
/// approximated ReLU or max-pool other than its bootstraps and linear
/// transforms), linear layers (transforms and the rest).
fn node_category(c: &Circuit, i: usize) -> &'static str {
    let node = &c.nodes[i];
    match node.op {
        ir::circuit::Op::Bootstrap { .. } => "bootstrap",
        ir::circuit::Op::LinearTransform { .. } => "linear",
        _ if c.layers[node.layer as usize].kind.starts_with("Approx") => "polynomial",
        _ => "linear",
    }
}

const CATEGORIES: [&str; 3] = ["linear", "polynomial", "bootstrap"];

/// `precis bench e2e`: one encrypted inference, timed phase by phase and
/// layer by layer, next to the cost model's estimates.
pub fn bench_e2e(args: E2eArgs) -> Result<()> {
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("thread pool")?;
    pool.install(|| bench_e2e_in_pool(&args, threads))
}

fn bench_e2e_in_pool(args: &E2eArgs, threads: usize) -> Result<()> {
    let quiet = is_quiet(args.json);
    crate::circuits::check_preset_allowed(args.preset, args.insecure)?;
    let (c, compile_s) = circuit_for(&args.model, args.alpha, args.preset, &args.calib, quiet)?;
    let (x, label) = samples_for(&c, &args.model, None, args.index, 1, &args.calib)?;
    let ctx = context(&c, &args.model, args.insecure)?;
    check_range(&c, &x[0], &format!("test image {}", args.index))?;

    let t = Instant::now();
    let (sk, keys) = gen_keys(&ctx, &c, ctx.config.galois_key_storage, quiet)?;
    let keygen_s = t.elapsed().as_secs_f64();

    let prepared = prepared_uncached(&c)?;
    let backend = CkksBackend::new(&ctx, &keys);
    let data: Vec<f64> = x[0].iter().map(|&v| v as f64).collect();
    let t = Instant::now();
    let cts = ctx
        .encrypt(
            &c,
            &c.layouts[c.input.layout as usize].pack(&data),
            EncryptionKey::Secret(&sk),
        )
        .map_err(|e| anyhow!("{e}"))?;
    let encrypt_s = t.elapsed().as_secs_f64();

    let bar = Bar::new(&c, "evaluate", quiet);
    let timer = NodeTimer::new(&bar, c.nodes.len());
    let t = Instant::now();
    let out = execute(&backend, &prepared, cts, &timer).map_err(|e| anyhow!("{e}"))?;
    let eval_s = t.elapsed().as_secs_f64();
    bar.finish();
    let measured = timer.into_seconds();

    let t = Instant::now();
    let y = decrypt_output(&ctx, &c, &sk, &out);
    let decrypt_s = t.elapsed().as_secs_f64();
    let peak = runtime::resources::peak_rss_bytes();
    let sim = runtime::simulate::run_samples(&prepared, &x[0], 1, 1, None)
        .map_err(|e| anyhow!("simulation: {e}"))?;

    let estimated = estimated_node_seconds(&c);
    let by_cat = by_category(&c, &measured, &estimated);
    // Per layer, in circuit order of first appearance.
    let mut order: Vec<u32> = Vec::new();
    let mut per_layer: std::collections::HashMap<u32, [f64; 7]> = Default::default();
    for (i, node) in c.nodes.iter().enumerate() {
        let e = per_layer.entry(node.layer).or_insert_with(|| {
            order.push(node.layer);
            [0.0; 7]
        });
        let k = CATEGORIES
            .iter()
            .position(|&k| k == node_category(&c, i))
            .expect("category");
        e[k] += measured[i];
        e[3] += measured[i];
        e[4] += estimated[i];
        e[5] += matches!(node.op, ir::circuit::Op::Bootstrap { .. }) as u8 as f64;
        e[6] = node.level as f64;
    }
    let layers: Vec<_> = order
        .iter()
        .map(|&l| {
            let e = per_layer[&l];
            let layer = &c.layers[l as usize];
            json!({
                "layer": layer.name, "op": layer.kind,
                "linear_seconds": e[0], "polynomial_seconds": e[1], "bootstrap_seconds": e[2],
                "measured_seconds": e[3], "estimated_seconds": e[4],
                "bootstraps": e[5] as usize, "level_out": e[6] as u32,
            })
        })
        .collect();
    let estimated_s: f64 = estimated.iter().sum();
    let report = json!({
        "model": args.model,
        "preset": c.params.preset,
        "slots": c.params.slots,
        "threads": threads,
        "image": args.index,
        "label": label[0],
        "encrypted_class": argmax(&y),
        "simulated_class": argmax(&sim[0]),
        "max_logit_diff": max_diff(&y, &sim[0]),
        "bootstraps": c.stats().bootstraps,
        "compile_seconds": compile_s,
        "keygen_seconds": keygen_s,
        "encrypt_seconds": encrypt_s,
        "eval_seconds": eval_s,
        "estimated_eval_seconds": estimated_s,
        "decrypt_seconds": decrypt_s,
        "by_category": by_cat,
        "eval_key_bytes": keys.size_bytes(),
        "peak_rss_bytes": peak,
        "layers": layers,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    if args.layers {
        println!(
            "{:<44} {:<14} {:>9} {:>9} {:>9} {:>9} {:>9} {:>4}",
            "layer", "op", "linear s", "poly s", "boot s", "total s", "est. s", "bts"
        );
        for l in &layers {
            println!(
                "{:<44} {:<14} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>4}",
                l["layer"].as_str().unwrap_or(""),
                l["op"].as_str().unwrap_or(""),
                l["linear_seconds"].as_f64().unwrap_or(0.0),
                l["polynomial_seconds"].as_f64().unwrap_or(0.0),
                l["bootstrap_seconds"].as_f64().unwrap_or(0.0),
                l["measured_seconds"].as_f64().unwrap_or(0.0),
                l["estimated_seconds"].as_f64().unwrap_or(0.0),
                l["bootstraps"],
            );
        }
    }
    println!(
        "{} ({}, {} slots, {threads} threads), test image {}: encrypted class {}, simulated {}, largest logit difference {:.2e}",
        args.model.display(),
        c.params.preset,
        c.params.slots,
        args.index,
        argmax(&y),
        argmax(&sim[0]),
        max_diff(&y, &sim[0])
    );
    println!(
        "key generation {keygen_s:.1} s, encryption {encrypt_s:.2} s, decryption {decrypt_s:.2} s"
    );
    println!(
        "evaluation {eval_s:.1} s (estimated {estimated_s:.1} s), {} bootstraps:",
        c.stats().bootstraps
    );
    for cat in CATEGORIES {
        let v = &by_cat[cat];
        println!(
            "  {cat:<10} {:>8.1} s (estimated {:.1} s)",
            v["measured_seconds"].as_f64().unwrap_or(0.0),
            v["estimated_seconds"].as_f64().unwrap_or(0.0)
        );
    }
    println!(
        "evaluation keys {:.2} GiB, peak memory {}",
        keys.size_bytes() as f64 / (1u64 << 30) as f64,
        peak.map_or("?".to_string(), |b| format!(
            "{:.2} GiB",
            b as f64 / (1u64 << 30) as f64
        ))
    );
    Ok(())
}
