//! Versioned, checksummed binary files for parameters, keys and ciphertexts.
//!
//! Layout (little-endian): magic `PRECISCK` (8 bytes), format version (u16),
//! file kind (u8), reserved (u8, zero), payload length (u64), payload
//! (postcard-encoded; polynomial limbs as raw little-endian words), then the
//! SHA-256 of everything before it. Every object but the parameters records
//! the SHA-256 of the parameters it belongs to, checked on load.
//!
//! The secret key has a file kind of its own, and every loader checks the
//! kind, so a secret-key file cannot be loaded as a public or evaluation key.

use super::bootstrapping::encapsulation::{DenseToSparseKey, EncapsulationKeys};
use super::bootstrapping::BootstrappingKeys;
use super::encryption::Ciphertext;
use super::keys::{EvaluationKeys, KeyStorage, PublicKey, SecretKey, SwitchingKey};
use super::params::{Parameters, ParametersLiteral};
use super::ring::Poly;
use super::sampling::{uniform_poly, Seed};
use super::CkksError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::io::{Read, Write};
use zeroize::Zeroizing;

pub const MAGIC: &[u8; 8] = b"PRECISCK";
/// 3: uniform polynomials are expanded with AES-256 (was ChaCha20), and
/// switching keys record how they hold `a` in memory. 4: parameters record
/// their key-switching digit split ([`super::DigitSplit`]), not a count.
pub const FORMAT_VERSION: u16 = 4;
const HEADER_LEN: usize = 8 + 2 + 1 + 1 + 8;
const CHECKSUM_LEN: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FileKind {
    Parameters = 1,
    PublicKey = 2,
    EvaluationKeys = 3,
    Ciphertext = 4,
    SecretKey = 5,
    BootstrappingKeys = 6,
}

impl FileKind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => FileKind::Parameters,
            2 => FileKind::PublicKey,
            3 => FileKind::EvaluationKeys,
            4 => FileKind::Ciphertext,
            5 => FileKind::SecretKey,
            6 => FileKind::BootstrappingKeys,
            _ => return None,
        })
    }
    fn name(self) -> &'static str {
        match self {
            FileKind::Parameters => "CKKS parameters",
            FileKind::PublicKey => "a public key",
            FileKind::EvaluationKeys => "evaluation keys",
            FileKind::Ciphertext => "a ciphertext",
            FileKind::SecretKey => "a SECRET key",
            FileKind::BootstrappingKeys => "bootstrapping keys",
        }
    }
}

impl FileKind {
    /// How errors name a file of this kind.
    pub fn file_name(self) -> &'static str {
        match self {
            FileKind::Parameters => "CKKS parameters file",
            FileKind::PublicKey => "public-key file",
            FileKind::EvaluationKeys => "evaluation-keys file",
            FileKind::Ciphertext => "ciphertext file",
            FileKind::SecretKey => "secret-key file",
            FileKind::BootstrappingKeys => "bootstrapping-keys file",
        }
    }
}

/// One-line error naming the kind of file (and, in `msg`, the field).
fn bad(kind: FileKind, msg: impl std::fmt::Display) -> CkksError {
    CkksError::Format(format!("{}: {msg}", kind.file_name()))
}

fn write_container<W: Write>(w: &mut W, kind: FileKind, payload: &[u8]) -> Result<(), CkksError> {
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    header.push(kind as u8);
    header.push(0);
    header.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    let mut h = Sha256::new();
    h.update(&header);
    h.update(payload);
    w.write_all(&header)?;
    w.write_all(payload)?;
    w.write_all(&h.finalize())?;
    Ok(())
}

/// [`write_container`] streaming the payload: it is serialised once to
/// count its bytes and once into `w` (through the checksum), so a large key
/// file is never held in memory beside the keys.
fn write_container_streamed<W: Write, T: Serialize>(
    w: &mut W,
    kind: FileKind,
    value: &T,
) -> Result<(), CkksError> {
    struct Counter(u64);
    impl Write for Counter {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len() as u64;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    struct Hashing<'a, W: Write> {
        w: &'a mut W,
        h: Sha256,
    }
    impl<W: Write> Write for Hashing<'_, W> {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let n = self.w.write(b)?;
            self.h.update(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.w.flush()
        }
    }
    let mut count = Counter(0);
    postcard::to_io(value, &mut count)
        .map_err(|e| CkksError::Format(format!("{}: {e}", kind.file_name())))?;
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    header.push(kind as u8);
    header.push(0);
    header.extend_from_slice(&count.0.to_le_bytes());
    let mut hw = Hashing {
        w,
        h: Sha256::new(),
    };
    hw.write_all(&header)?;
    postcard::to_io(value, &mut hw)
        .map_err(|e| CkksError::Format(format!("{}: {e}", kind.file_name())))?;
    let digest = hw.h.finalize();
    hw.w.write_all(&digest)?;
    Ok(())
}

/// Reads and checks the container of a file of kind `want`: magic, version,
/// kind, a payload length of at most `max_len` bytes (checked before the
/// payload is read, so a lying length field allocates nothing), the
/// payload, the checksum.
fn read_container<R: Read>(r: &mut R, want: FileKind, max_len: u64) -> Result<Vec<u8>, CkksError> {
    let mut header = [0u8; HEADER_LEN];
    r.read_exact(&mut header)
        .map_err(|_| bad(want, "too short for a precis CKKS header (truncated?)"))?;
    if &header[..8] != MAGIC {
        return Err(bad(want, "not a precis CKKS file (bad magic)"));
    }
    let version = u16::from_le_bytes([header[8], header[9]]);
    if version != FORMAT_VERSION {
        return Err(bad(
            want,
            format!("format version {version}, this build reads {FORMAT_VERSION} only"),
        ));
    }
    let kind = FileKind::from_u8(header[10])
        .ok_or_else(|| bad(want, format!("unknown file kind {}", header[10])))?;
    if kind != want {
        return Err(bad(
            want,
            format!("the file holds {}, not {}", kind.name(), want.name()),
        ));
    }
    if header[11] != 0 {
        return Err(bad(
            want,
            format!("reserved header byte is {}, not 0", header[11]),
        ));
    }
    let len = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
    if len > max_len {
        return Err(bad(
            want,
            format!(
                "field `payload length` = {len} bytes exceeds the {max_len} bytes such a file \
                 can hold with these parameters"
            ),
        ));
    }
    let len = usize::try_from(len).map_err(|_| bad(want, "payload length overflows"))?;
    let mut payload = Vec::new();
    r.take(len as u64).read_to_end(&mut payload)?;
    if payload.len() != len {
        return Err(bad(
            want,
            format!("truncated: payload has {} of {len} bytes", payload.len()),
        ));
    }
    let mut sum = [0u8; CHECKSUM_LEN];
    r.read_exact(&mut sum)
        .map_err(|_| bad(want, "truncated: checksum missing"))?;
    let mut h = Sha256::new();
    h.update(header);
    h.update(&payload);
    if h.finalize().as_slice() != sum {
        return Err(bad(want, "checksum mismatch: the file is corrupted"));
    }
    Ok(payload)
}

/// Polynomial limbs as one byte string of little-endian words; borrowed
/// from the payload when read, so nothing is allocated for a polynomial
/// before its size is checked.
struct Words<'a>(Cow<'a, [u8]>);

impl Serialize for Words<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Words<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Words<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte string of little-endian u64 words")
            }
            fn visit_borrowed_bytes<E: serde::de::Error>(
                self,
                b: &'de [u8],
            ) -> Result<Words<'de>, E> {
                Ok(Words(Cow::Borrowed(b)))
            }
            fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<Words<'de>, E> {
                Ok(Words(Cow::Owned(b.to_vec())))
            }
        }
        d.deserialize_bytes(V)
    }
}

impl Words<'_> {
    fn of_words(w: &[u64]) -> Words<'static> {
        let mut bytes = Vec::with_capacity(w.len() * 8);
        for x in w {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        Words(Cow::Owned(bytes))
    }

    /// Number of words, or an error naming `field` when the byte length is
    /// not `want` words.
    fn expect_len(&self, kind: FileKind, field: &str, want: usize) -> Result<(), CkksError> {
        if self.0.len() != want * 8 {
            return Err(bad(
                kind,
                format!(
                    "field `{field}` holds {} bytes, expected {} ({want} residues)",
                    self.0.len(),
                    want * 8
                ),
            ));
        }
        Ok(())
    }

    fn words(&self) -> impl Iterator<Item = u64> + '_ {
        self.0
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
    }
}

fn poly_words(p: &Poly) -> Words<'static> {
    Words::of_words(&p.data)
}

/// Residues a polynomial at `level` (with the special primes when `ext`) holds.
fn poly_len(params: &Parameters, level: usize, ext: bool) -> usize {
    let limbs = level + 1 + if ext { params.p().len() } else { 0 };
    limbs * params.n()
}

/// Rebuilds an NTT-domain polynomial, checking its size (before allocating)
/// and that every residue is below its modulus.
fn words_poly(
    params: &Parameters,
    kind: FileKind,
    field: &str,
    w: &Words,
    level: usize,
    ext: bool,
) -> Result<Poly, CkksError> {
    let ring = params.ring();
    w.expect_len(kind, field, poly_len(params, level, ext))?;
    let mut p = Poly {
        n: ring.n(),
        level,
        ext,
        ntt: true,
        data: w.words().collect(),
    };
    for i in 0..p.limb_count() {
        let q = ring.modulus(p.modulus_index(ring, i)).value();
        if let Some((j, &x)) = p.limb(i).iter().enumerate().find(|(_, &x)| x >= q) {
            use zeroize::Zeroize;
            p.zeroize();
            return Err(bad(
                kind,
                format!(
                    "field `{field}`: residue {j} of limb {i} is {x}, not below its modulus {q}"
                ),
            ));
        }
    }
    Ok(p)
}

#[derive(Serialize, Deserialize)]
struct ParamsFile {
    literal: ParametersLiteral,
    q: Vec<u64>,
    p: Vec<u64>,
}

fn params_payload(params: &Parameters) -> Vec<u8> {
    postcard::to_stdvec(&ParamsFile {
        literal: params.literal().clone(),
        q: params.q().to_vec(),
        p: params.p().to_vec(),
    })
    .expect("serializing parameters cannot fail")
}

/// SHA-256 of the serialized parameters: identifies them inside other files.
pub fn params_id(params: &Parameters) -> [u8; 32] {
    Sha256::digest(params_payload(params)).into()
}

fn check_params_id(kind: FileKind, params: &Parameters, id: &[u8; 32]) -> Result<(), CkksError> {
    if &params_id(params) != id {
        return Err(bad(
            kind,
            "field `params`: the file was made with different CKKS parameters",
        ));
    }
    Ok(())
}

/// Decodes the whole payload: trailing bytes are an error.
fn decode<'a, T: Deserialize<'a>>(kind: FileKind, payload: &'a [u8]) -> Result<T, CkksError> {
    let (v, rest) = postcard::take_from_bytes(payload)
        .map_err(|e| bad(kind, format!("malformed payload: {e}")))?;
    if !rest.is_empty() {
        return Err(bad(
            kind,
            format!("{} bytes after the payload's last field", rest.len()),
        ));
    }
    Ok(v)
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("serializing to memory cannot fail")
}

/// Largest parameters payload accepted (a literal and at most
/// [`super::params::MAX_PRIMES`] primes take well under 2 KiB).
const MAX_PARAMS_PAYLOAD: u64 = 64 << 10;
/// Slack for the fixed fields (ids, seeds, lengths, tags) of a payload.
const FIXED_FIELDS: u64 = 256;

pub fn save_parameters<W: Write>(params: &Parameters, w: &mut W) -> Result<(), CkksError> {
    write_container(w, FileKind::Parameters, &params_payload(params))
}

/// Loads parameters; the primes are regenerated from the literal and must
/// match the recorded ones. A file that records the explicit insecure flag
/// is refused unless the caller opts in with `allow_insecure`: a file alone
/// can never downgrade security.
pub fn load_parameters<R: Read>(r: &mut R, allow_insecure: bool) -> Result<Parameters, CkksError> {
    let kind = FileKind::Parameters;
    let payload = read_container(r, kind, MAX_PARAMS_PAYLOAD)?;
    let f: ParamsFile = decode(kind, &payload)?;
    if f.literal.insecure && !allow_insecure {
        return Err(CkksError::Insecure(
            "the parameters file records the explicit insecure flag; loading it needs allow_insecure"
                .into(),
        ));
    }
    let params = Parameters::new(f.literal).map_err(|e| match e {
        CkksError::InvalidParameters(m) => bad(kind, format!("field `literal`: {m}")),
        other => other,
    })?;
    if params.q() != f.q.as_slice() || params.p() != f.p.as_slice() {
        return Err(bad(
            kind,
            "fields `q`/`p`: recorded primes differ from the regenerated ones",
        ));
    }
    Ok(params)
}

#[derive(Serialize, Deserialize)]
enum C1<'a> {
    Seeded(Seed),
    Full(#[serde(borrow)] Words<'a>),
}

#[derive(Serialize, Deserialize)]
struct CiphertextFile<'a> {
    params: [u8; 32],
    level: u32,
    scale: f64,
    slots: u64,
    #[serde(borrow)]
    c0: Words<'a>,
    #[serde(borrow)]
    c1: C1<'a>,
}

/// Saves a ciphertext; a fresh secret-key encryption stores only the seed of `c1`.
pub fn save_ciphertext<W: Write>(
    params: &Parameters,
    ct: &Ciphertext,
    w: &mut W,
) -> Result<(), CkksError> {
    let f = CiphertextFile {
        params: params_id(params),
        level: ct.level() as u32,
        scale: ct.scale,
        slots: ct.slots as u64,
        c0: poly_words(&ct.c0),
        c1: match ct.seed {
            Some(s) => C1::Seeded(s),
            None => C1::Full(poly_words(&ct.c1)),
        },
    };
    write_container(w, FileKind::Ciphertext, &encode(&f))
}

/// `log2` of `q_0·…·q_level`.
fn log2_q_at(params: &Parameters, level: usize) -> f64 {
    params.q()[..=level]
        .iter()
        .map(|&q| (q as f64).log2())
        .sum()
}

/// Loads a ciphertext, refusing (one error naming the field, before any
/// polynomial is allocated or expanded) a payload longer than a ciphertext
/// of these parameters, other parameters, a level above the chain, a slot
/// count that is not a power of two in `1..=N/2`, a scale that is not a
/// finite value in `[1, q_0·…·q_level)`, polynomials of the wrong size, and
/// any residue not below its modulus.
pub fn load_ciphertext<R: Read>(params: &Parameters, r: &mut R) -> Result<Ciphertext, CkksError> {
    load_ciphertext_expecting(params, r, &Expected::default())
}

/// What a consumer (a circuit's input, `eval`) requires of a ciphertext.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Expected {
    /// The level the circuit takes its input at.
    pub level: Option<usize>,
    /// The slot count the circuit packs its input in.
    pub slots: Option<usize>,
}

/// [`load_ciphertext`], also refusing (before any polynomial is built) a
/// ciphertext whose level or slot count differs from what `expected` asks.
pub fn load_ciphertext_expecting<R: Read>(
    params: &Parameters,
    r: &mut R,
    expected: &Expected,
) -> Result<Ciphertext, CkksError> {
    let kind = FileKind::Ciphertext;
    let max = 2 * 8 * poly_len(params, params.max_level(), false) as u64 + FIXED_FIELDS;
    let payload = read_container(r, kind, max)?;
    let f: CiphertextFile = decode(kind, &payload)?;
    check_params_id(kind, params, &f.params)?;
    let level = f.level as usize;
    if level > params.max_level() {
        return Err(bad(
            kind,
            format!(
                "field `level` = {level} is above the parameters' top level {}",
                params.max_level()
            ),
        ));
    }
    if f.slots == 0 || !f.slots.is_power_of_two() || f.slots > params.max_slots() as u64 {
        return Err(bad(
            kind,
            format!(
                "field `slots` = {} is not a power of two in 1..={}",
                f.slots,
                params.max_slots()
            ),
        ));
    }
    if let Some(want) = expected.level.filter(|&l| l != level) {
        return Err(bad(
            kind,
            format!("field `level` = {level}, but the circuit takes its input at level {want}"),
        ));
    }
    if let Some(want) = expected.slots.filter(|&n| n as u64 != f.slots) {
        return Err(bad(
            kind,
            format!(
                "field `slots` = {}, but the circuit packs its input in {want} slots",
                f.slots
            ),
        ));
    }
    let log_q = log2_q_at(params, level);
    if !(f.scale.is_finite() && f.scale >= 1.0 && f.scale.log2() < log_q) {
        return Err(bad(
            kind,
            format!(
                "field `scale` = {} is not a finite value in [1, 2^{log_q:.1}) (the modulus at level {level})",
                f.scale
            ),
        ));
    }
    let words = poly_len(params, level, false);
    f.c0.expect_len(kind, "c0", words)?;
    if let C1::Full(w) = &f.c1 {
        w.expect_len(kind, "c1", words)?;
    }
    let c0 = words_poly(params, kind, "c0", &f.c0, level, false)?;
    let (c1, seed) = match &f.c1 {
        C1::Seeded(s) => (uniform_poly(params.ring(), s, level, false), Some(*s)),
        C1::Full(w) => (words_poly(params, kind, "c1", w, level, false)?, None),
    };
    Ok(Ciphertext {
        c0,
        c1,
        scale: f.scale,
        slots: f.slots as usize,
        seed,
    })
}

#[derive(Serialize, Deserialize)]
struct PublicKeyFile<'a> {
    params: [u8; 32],
    seed: Seed,
    #[serde(borrow)]
    b: Words<'a>,
}

pub fn save_public_key<W: Write>(
    params: &Parameters,
    pk: &PublicKey,
    w: &mut W,
) -> Result<(), CkksError> {
    let f = PublicKeyFile {
        params: params_id(params),
        seed: pk.seed,
        b: poly_words(&pk.b),
    };
    write_container(w, FileKind::PublicKey, &encode(&f))
}

pub fn load_public_key<R: Read>(params: &Parameters, r: &mut R) -> Result<PublicKey, CkksError> {
    let kind = FileKind::PublicKey;
    let level = params.max_level();
    let max = 8 * poly_len(params, level, true) as u64 + FIXED_FIELDS;
    let payload = read_container(r, kind, max)?;
    let f: PublicKeyFile = decode(kind, &payload)?;
    check_params_id(kind, params, &f.params)?;
    Ok(PublicKey {
        b: words_poly(params, kind, "b", &f.b, level, true)?,
        a: uniform_poly(params.ring(), &f.seed, level, true),
        seed: f.seed,
    })
}

#[derive(Serialize, Deserialize)]
struct SwitchingKeyFile<'a> {
    /// Highest ciphertext level the key switches (keys may be truncated).
    level: u32,
    /// How the loaded key holds its `a_j` (the file always stores seeds).
    storage: KeyStorage,
    seeds: Vec<Seed>,
    #[serde(borrow)]
    b: Vec<Words<'a>>,
}

#[derive(Serialize, Deserialize)]
struct EvaluationKeysFile<'a> {
    params: [u8; 32],
    #[serde(borrow)]
    relin: Option<SwitchingKeyFile<'a>>,
    #[serde(borrow)]
    galois: Vec<(u64, SwitchingKeyFile<'a>)>,
}

fn swk_file(k: &SwitchingKey) -> SwitchingKeyFile<'static> {
    SwitchingKeyFile {
        level: k.level() as u32,
        storage: k.storage(),
        seeds: k.seeds.clone(),
        b: k.b.iter().map(poly_words).collect(),
    }
}

/// Checks a switching key's level, digit count and polynomial sizes
/// (nothing allocated).
fn check_swk(
    params: &Parameters,
    kind: FileKind,
    field: &str,
    f: &SwitchingKeyFile,
) -> Result<(), CkksError> {
    let level = f.level as usize;
    if level > params.max_level() {
        return Err(bad(
            kind,
            format!(
                "field `{field}.level` = {level} is above the parameters' top level {}",
                params.max_level()
            ),
        ));
    }
    let dnum = super::keys::digits_up_to(params, level).len();
    if f.seeds.len() != dnum || f.b.len() != dnum {
        return Err(bad(
            kind,
            format!(
                "field `{field}`: {} seeds and {} polynomials for a key at level {level}, which has {dnum} digits",
                f.seeds.len(),
                f.b.len()
            ),
        ));
    }
    let words = poly_len(params, level, true);
    for (j, w) in f.b.iter().enumerate() {
        w.expect_len(kind, &format!("{field}.b[{j}]"), words)?;
    }
    Ok(())
}

/// A checked ([`check_swk`]) switching key, seeded: its `a_j` are expanded
/// by [`expand`] once the whole file has been checked.
fn swk_from_file(
    params: &Parameters,
    kind: FileKind,
    field: &str,
    f: &SwitchingKeyFile,
) -> Result<SwitchingKey, CkksError> {
    let level = f.level as usize;
    Ok(SwitchingKey {
        a: None,
        b: f.b
            .iter()
            .enumerate()
            .map(|(j, w)| words_poly(params, kind, &format!("{field}.b[{j}]"), w, level, true))
            .collect::<Result<_, _>>()?,
        seeds: f.seeds.clone(),
    })
}

/// Saves relinearisation and Galois keys; each `a` is stored as its seed.
pub fn save_evaluation_keys<W: Write>(
    params: &Parameters,
    keys: &EvaluationKeys,
    w: &mut W,
) -> Result<(), CkksError> {
    let f = evaluation_keys_file(params, keys);
    write_container_streamed(w, FileKind::EvaluationKeys, &f)
}

fn evaluation_keys_file(params: &Parameters, keys: &EvaluationKeys) -> EvaluationKeysFile<'static> {
    EvaluationKeysFile {
        params: params_id(params),
        relin: keys.relin.as_ref().map(swk_file),
        galois: keys.galois.iter().map(|(g, k)| (*g, swk_file(k))).collect(),
    }
}

/// Evaluation-key (and bootstrapping-key) files hold as many keys as the
/// evaluator needs, so their payload has no size bound from the parameters
/// alone: it is read as it comes (memory follows the bytes actually
/// present, never the length field) and every key is checked against the
/// parameters before any of them is expanded.
const UNBOUNDED: u64 = u64::MAX;

pub fn load_evaluation_keys<R: Read>(
    params: &Parameters,
    r: &mut R,
) -> Result<EvaluationKeys, CkksError> {
    load_evaluation_keys_as(params, r, None)
}

/// [`load_evaluation_keys`] holding every Galois key as `storage` (`None`:
/// as the file records), whatever the writer chose: a server short of
/// memory keeps them seeded. The file's bytes are freed before any key is
/// expanded.
pub fn load_evaluation_keys_as<R: Read>(
    params: &Parameters,
    r: &mut R,
    storage: Option<KeyStorage>,
) -> Result<EvaluationKeys, CkksError> {
    let kind = FileKind::EvaluationKeys;
    let payload = read_container(r, kind, UNBOUNDED)?;
    let f = decode(kind, &payload)?;
    let mut keys = evaluation_keys_from_file(params, kind, &f)?;
    let storages = Storages::of(&f, storage);
    drop(f);
    drop(payload);
    storages.apply(params, &mut keys);
    Ok(keys)
}

/// Checks every key of the file (structure first, then residues) and
/// builds them seeded.
fn evaluation_keys_from_file(
    params: &Parameters,
    kind: FileKind,
    f: &EvaluationKeysFile,
) -> Result<EvaluationKeys, CkksError> {
    check_params_id(kind, params, &f.params)?;
    let two_n = 2 * params.n() as u64;
    if let Some(k) = &f.relin {
        check_swk(params, kind, "relin", k)?;
    }
    let mut previous = 0;
    for (i, (g, k)) in f.galois.iter().enumerate() {
        if g % 2 == 0 || *g >= two_n || *g == 1 {
            return Err(bad(
                kind,
                format!("field `galois[{i}]`: {g} is not a Galois element (odd, in 3..{two_n})"),
            ));
        }
        if *g <= previous {
            return Err(bad(
                kind,
                format!("field `galois[{i}]`: element {g} repeated or out of order"),
            ));
        }
        previous = *g;
        check_swk(params, kind, &format!("galois[{i}]"), k)?;
    }
    let mut keys = EvaluationKeys::default();
    if let Some(k) = &f.relin {
        keys.relin = Some(swk_from_file(params, kind, "relin", k)?);
    }
    for (i, (g, k)) in f.galois.iter().enumerate() {
        let key = swk_from_file(params, kind, &format!("galois[{i}]"), k)?;
        keys.galois.insert(*g, key);
    }
    Ok(keys)
}

/// How each key of a file is to be held, noted before the file's bytes are
/// dropped, so expanding (the heavy part of loading, done last) never
/// holds the file beside the expanded keys.
struct Storages {
    relin: Option<KeyStorage>,
    galois: Vec<(u64, KeyStorage)>,
}

impl Storages {
    fn of(f: &EvaluationKeysFile, galois_override: Option<KeyStorage>) -> Self {
        Storages {
            relin: f.relin.as_ref().map(|k| k.storage),
            galois: f
                .galois
                .iter()
                .map(|(g, k)| (*g, galois_override.unwrap_or(k.storage)))
                .collect(),
        }
    }

    fn apply(&self, params: &Parameters, keys: &mut EvaluationKeys) {
        if let (Some(k), Some(s)) = (keys.relin.as_mut(), self.relin) {
            k.set_storage(params, s);
        }
        for (g, s) in &self.galois {
            if let Some(k) = keys.galois.get_mut(g) {
                k.set_storage(params, *s);
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
struct BootstrappingKeysFile<'a> {
    #[serde(borrow)]
    evaluation: EvaluationKeysFile<'a>,
    /// Dense → sparse key: residues modulo `q_0` and `p_0` of `b`, then of `a`.
    #[serde(borrow)]
    to_sparse_b: [Words<'a>; 2],
    #[serde(borrow)]
    to_sparse_a: [Words<'a>; 2],
    #[serde(borrow)]
    to_dense: SwitchingKeyFile<'a>,
}

/// Saves the keys a server needs to bootstrap (relinearisation, Galois and
/// encapsulation keys; no secret).
pub fn save_bootstrapping_keys<W: Write>(
    params: &Parameters,
    keys: &BootstrappingKeys,
    w: &mut W,
) -> Result<(), CkksError> {
    let enc = &keys.encapsulation;
    let words = |v: &Vec<u64>| Words::of_words(v);
    let f = BootstrappingKeysFile {
        evaluation: evaluation_keys_file(params, &keys.evaluation),
        to_sparse_b: [words(&enc.to_sparse.b[0]), words(&enc.to_sparse.b[1])],
        to_sparse_a: [words(&enc.to_sparse.a[0]), words(&enc.to_sparse.a[1])],
        to_dense: swk_file(&enc.to_dense),
    };
    write_container_streamed(w, FileKind::BootstrappingKeys, &f)
}

pub fn load_bootstrapping_keys<R: Read>(
    params: &Parameters,
    r: &mut R,
) -> Result<BootstrappingKeys, CkksError> {
    load_bootstrapping_keys_as(params, r, None)
}

/// [`load_bootstrapping_keys`] holding every Galois key as `storage`
/// (`None`: as the file records); see [`load_evaluation_keys_as`].
pub fn load_bootstrapping_keys_as<R: Read>(
    params: &Parameters,
    r: &mut R,
    storage: Option<KeyStorage>,
) -> Result<BootstrappingKeys, CkksError> {
    let kind = FileKind::BootstrappingKeys;
    if params.p().is_empty() {
        return Err(bad(
            kind,
            "bootstrapping keys need parameters with a special prime",
        ));
    }
    let payload = read_container(r, kind, UNBOUNDED)?;
    let f: BootstrappingKeysFile = decode(kind, &payload)?;
    // Structure of everything first.
    for (field, pair) in [
        ("to_sparse_b", &f.to_sparse_b),
        ("to_sparse_a", &f.to_sparse_a),
    ] {
        for (i, w) in pair.iter().enumerate() {
            w.expect_len(kind, &format!("{field}[{i}]"), params.n())?;
        }
    }
    check_swk(params, kind, "to_dense", &f.to_dense)?;
    if f.to_dense.level as usize != params.max_level() {
        return Err(bad(
            kind,
            format!(
                "field `to_dense.level` = {} but the sparse → dense key must reach the top level {}",
                f.to_dense.level,
                params.max_level()
            ),
        ));
    }
    let mut evaluation = evaluation_keys_from_file(params, kind, &f.evaluation)?;
    let moduli = [params.q()[0], params.p()[0]];
    let residues = |pair: &[Words; 2], field: &str| -> Result<[Vec<u64>; 2], CkksError> {
        let mut out: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
        for (i, (w, &q)) in pair.iter().zip(&moduli).enumerate() {
            out[i] = w.words().collect();
            if let Some((j, x)) = out[i].iter().enumerate().find(|(_, &x)| x >= q) {
                return Err(bad(
                    kind,
                    format!("field `{field}[{i}]`: residue {j} is {x}, not below its modulus {q}"),
                ));
            }
        }
        Ok(out)
    };
    let to_sparse = DenseToSparseKey {
        b: residues(&f.to_sparse_b, "to_sparse_b")?,
        a: residues(&f.to_sparse_a, "to_sparse_a")?,
    };
    let mut to_dense = swk_from_file(params, kind, "to_dense", &f.to_dense)?;
    let storages = Storages::of(&f.evaluation, storage);
    let to_dense_storage = f.to_dense.storage;
    drop(f);
    drop(payload);
    storages.apply(params, &mut evaluation);
    to_dense.set_storage(params, to_dense_storage);
    Ok(BootstrappingKeys {
        evaluation: std::sync::Arc::new(evaluation),
        encapsulation: EncapsulationKeys {
            to_sparse,
            to_dense,
        },
    })
}

/// The secret key as written: a borrowed view, so saving makes no copy.
#[derive(Serialize)]
struct SecretKeyFileOut<'a> {
    params: [u8; 32],
    coeffs: &'a [i8],
}

#[derive(Deserialize)]
struct SecretKeyFile {
    params: [u8; 32],
    coeffs: Vec<i8>,
}

/// Saves the secret key in its own file kind. Keep it private. The encoded
/// payload is wiped once written.
pub fn save_secret_key<W: Write>(
    params: &Parameters,
    sk: &SecretKey,
    w: &mut W,
) -> Result<(), CkksError> {
    let f = SecretKeyFileOut {
        params: params_id(params),
        coeffs: &sk.coeffs,
    };
    let payload = Zeroizing::new(encode(&f));
    write_container(w, FileKind::SecretKey, &payload)
}

/// Loads a secret key: `N` coefficients in {-1, 0, 1}, and exactly `h`
/// nonzero ones for a sparse-secret parameter set. The payload and every
/// copy are wiped.
pub fn load_secret_key<R: Read>(params: &Parameters, r: &mut R) -> Result<SecretKey, CkksError> {
    let kind = FileKind::SecretKey;
    let max = params.n() as u64 + FIXED_FIELDS;
    let payload = Zeroizing::new(read_container(r, kind, max)?);
    let f: SecretKeyFile = decode(kind, &payload)?;
    let mut coeffs = Zeroizing::new(f.coeffs);
    check_params_id(kind, params, &f.params)?;
    if coeffs.len() != params.n() {
        return Err(bad(
            kind,
            format!(
                "field `coeffs` has {} values, expected N = {}",
                coeffs.len(),
                params.n()
            ),
        ));
    }
    if let Some(i) = coeffs.iter().position(|c| !(-1..=1).contains(c)) {
        return Err(bad(
            kind,
            format!(
                "field `coeffs`: coefficient {i} is {}, not in {{-1, 0, 1}}",
                coeffs[i]
            ),
        ));
    }
    if let super::SecretDistribution::FixedHammingWeight(h) = params.secret() {
        let weight = coeffs.iter().filter(|&&c| c != 0).count();
        if weight != h {
            return Err(bad(
                kind,
                format!("field `coeffs` has {weight} nonzero values; the parameters' sparse secret has {h}"),
            ));
        }
    }
    Ok(SecretKey::from_coeffs(params, std::mem::take(&mut *coeffs)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ckks::tests::test_params;
    use crate::ckks::{Encoder, Encryptor, KeyGenerator, ParametersLiteral, SecretDistribution};

    /// A reader that fails the test if more than `limit` bytes are read.
    struct Guard<'a> {
        bytes: &'a [u8],
        read: usize,
        limit: usize,
    }

    impl Read for Guard<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.bytes.len() - self.read);
            assert!(self.read + n <= self.limit, "read past byte {}", self.limit);
            buf[..n].copy_from_slice(&self.bytes[self.read..self.read + n]);
            self.read += n;
            Ok(n)
        }
    }

    fn file(kind: FileKind, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        write_container(&mut v, kind, payload).unwrap();
        v
    }

    fn message<T: std::fmt::Debug>(r: Result<T, CkksError>) -> String {
        match r {
            Err(CkksError::Format(m)) => {
                assert!(!m.contains('\n'), "{m:?}");
                m
            }
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    struct Setup {
        params: Parameters,
        sk: SecretKey,
        ct: Ciphertext,
    }

    fn setup() -> Setup {
        let params = test_params(10, 2, 3);
        let sk = KeyGenerator::new(&params).unwrap().gen_secret_key();
        let enc = Encoder::new(&params);
        let values = vec![crate::ckks::Complex64::new(0.25, 0.0); 8];
        let pt = enc.encode(&values, 2, params.default_scale()).unwrap();
        let ct = Encryptor::with_secret_key(&params, &sk)
            .unwrap()
            .encrypt(&pt);
        Setup { params, sk, ct }
    }

    fn ciphertext_file(s: &Setup, edit: impl FnOnce(&mut CiphertextFile)) -> Vec<u8> {
        let mut f = CiphertextFile {
            params: params_id(&s.params),
            level: s.ct.level() as u32,
            scale: s.ct.scale,
            slots: s.ct.slots as u64,
            c0: poly_words(&s.ct.c0),
            c1: C1::Full(poly_words(&s.ct.c1)),
        };
        edit(&mut f);
        file(FileKind::Ciphertext, &encode(&f))
    }

    fn load_ct(s: &Setup, bytes: &[u8]) -> String {
        message(load_ciphertext(&s.params, &mut &bytes[..]))
    }

    #[test]
    fn hostile_ciphertexts_are_refused_naming_the_field() {
        let s = setup();
        let ok = ciphertext_file(&s, |_| {});
        assert_eq!(
            load_ciphertext(&s.params, &mut &ok[..]).unwrap().c0,
            s.ct.c0
        );
        let q0 = s.params.q()[0];

        // A residue equal to its modulus, in c0 and in c1.
        let m = load_ct(
            &s,
            &ciphertext_file(&s, |f| {
                let mut b = f.c0.0.to_vec();
                b[8 * 5..8 * 6].copy_from_slice(&q0.to_le_bytes());
                f.c0 = Words(Cow::Owned(b));
            }),
        );
        assert!(
            m.starts_with("ciphertext file: field `c0`: residue 5 of limb 0"),
            "{m}"
        );
        let m = load_ct(
            &s,
            &ciphertext_file(&s, |f| {
                let mut b = poly_words(&s.ct.c1).0.to_vec();
                let last = b.len() - 8;
                b[last..].copy_from_slice(&u64::MAX.to_le_bytes());
                f.c1 = C1::Full(Words(Cow::Owned(b)));
            }),
        );
        assert!(
            m.contains("field `c1`") && m.contains("not below its modulus"),
            "{m}"
        );

        // Level above the chain; slot counts; scales; sizes; parameters.
        let m = load_ct(&s, &ciphertext_file(&s, |f| f.level = 3));
        assert!(
            m.contains("field `level` = 3 is above the parameters' top level 2"),
            "{m}"
        );
        for slots in [0, 3, 1024, 1 << 40] {
            let m = load_ct(&s, &ciphertext_file(&s, |f| f.slots = slots));
            assert!(
                m.contains(&format!(
                    "field `slots` = {slots} is not a power of two in 1..=512"
                )),
                "{m}"
            );
        }
        for scale in [f64::NAN, f64::INFINITY, 0.5, -1.0, 2f64.powi(200)] {
            let m = load_ct(&s, &ciphertext_file(&s, |f| f.scale = scale));
            assert!(m.contains("field `scale`"), "{scale}: {m}");
        }
        let m = load_ct(&s, &ciphertext_file(&s, |f| f.level = 1));
        assert!(
            m.contains("field `c0` holds 24576 bytes, expected 16384"),
            "{m}"
        );
        let m = load_ct(&s, &ciphertext_file(&s, |f| f.params[0] ^= 1));
        assert!(
            m.contains("field `params`: the file was made with different CKKS parameters"),
            "{m}"
        );

        // Trailing bytes after the last field.
        let mut payload = encode(&CiphertextFile {
            params: params_id(&s.params),
            level: 2,
            scale: s.ct.scale,
            slots: 8,
            c0: poly_words(&s.ct.c0),
            c1: C1::Seeded([7; 32]),
        });
        payload.push(0);
        let m = load_ct(&s, &file(FileKind::Ciphertext, &payload));
        assert!(m.contains("1 bytes after the payload's last field"), "{m}");
    }

    #[test]
    fn ciphertexts_for_another_circuit_input_are_refused() {
        let s = setup();
        let ok = ciphertext_file(&s, |_| {});
        let load = |e: Expected| load_ciphertext_expecting(&s.params, &mut &ok[..], &e);
        assert!(load(Expected {
            level: Some(2),
            slots: Some(8)
        })
        .is_ok());
        let m = message(load(Expected {
            level: Some(1),
            slots: None,
        }));
        assert!(
            m.contains("field `level` = 2, but the circuit takes its input at level 1"),
            "{m}"
        );
        let m = message(load(Expected {
            level: None,
            slots: Some(16),
        }));
        assert!(
            m.contains("field `slots` = 8, but the circuit packs its input in 16 slots"),
            "{m}"
        );
    }

    #[test]
    fn lying_length_fields_are_refused_before_reading() {
        let s = setup();
        let mut bytes = ciphertext_file(&s, |_| {});
        for len in [1u64 << 60, u64::MAX, 2 * 8 * 3 * 1024 + 257] {
            bytes[12..20].copy_from_slice(&len.to_le_bytes());
            let mut guard = Guard {
                bytes: &bytes,
                read: 0,
                limit: HEADER_LEN,
            };
            let m = message(load_ciphertext(&s.params, &mut guard));
            assert!(m.contains("field `payload length`"), "{m}");
            assert_eq!(guard.read, HEADER_LEN);
        }
        // The same for keys: a public key's bound comes from the parameters.
        let pk = KeyGenerator::new(&s.params).unwrap().gen_public_key(&s.sk);
        let mut b = Vec::new();
        save_public_key(&s.params, &pk, &mut b).unwrap();
        b[12..20].copy_from_slice(&(1u64 << 60).to_le_bytes());
        let m = message(load_public_key(&s.params, &mut &b[..]));
        assert!(
            m.starts_with("public-key file: field `payload length`"),
            "{m}"
        );
        // Unbounded kinds read what is there, never what the header claims.
        let mut b = Vec::new();
        save_evaluation_keys(&s.params, &EvaluationKeys::default(), &mut b).unwrap();
        b[12..20].copy_from_slice(&(1u64 << 60).to_le_bytes());
        let m = message(load_evaluation_keys(&s.params, &mut &b[..]));
        assert!(m.contains("truncated: payload has"), "{m}");
        // Another version, another kind, a reserved byte.
        let mut b = ciphertext_file(&s, |_| {});
        b[8] = 3;
        let m = load_ct(&s, &b);
        assert!(
            m.contains("format version 3, this build reads 4 only"),
            "{m}"
        );
        let mut b = ciphertext_file(&s, |_| {});
        b[11] = 1;
        assert!(load_ct(&s, &b).contains("reserved header byte is 1"));
    }

    #[test]
    fn hostile_keys_are_refused_naming_the_field() {
        let s = setup();
        let id = params_id(&s.params);
        let sk_file = |coeffs: Vec<i8>| {
            file(
                FileKind::SecretKey,
                &encode(&SecretKeyFileOut {
                    params: id,
                    coeffs: &coeffs,
                }),
            )
        };
        let n = s.params.n();
        for (coeffs, want) in [
            (
                vec![0i8; n - 1],
                "field `coeffs` has 1023 values, expected N = 1024",
            ),
            (
                [vec![-128i8], vec![0; n - 1]].concat(),
                "coefficient 0 is -128, not in {-1, 0, 1}",
            ),
            (
                [vec![0i8; 9], vec![2], vec![0; n - 10]].concat(),
                "coefficient 9 is 2",
            ),
        ] {
            let m = message(load_secret_key(&s.params, &mut &sk_file(coeffs)[..]));
            assert!(
                m.starts_with("secret-key file: ") && m.contains(want),
                "{m}"
            );
        }
        // A sparse-secret set needs exactly h nonzero coefficients.
        let sparse = Parameters::new(ParametersLiteral {
            secret: SecretDistribution::FixedHammingWeight(64),
            ..s.params.literal().clone()
        })
        .unwrap();
        let f = file(
            FileKind::SecretKey,
            &encode(&SecretKeyFileOut {
                params: params_id(&sparse),
                coeffs: &[vec![1i8; 65], vec![0; n - 65]].concat(),
            }),
        );
        let m = message(load_secret_key(&sparse, &mut &f[..]));
        assert!(
            m.contains("65 nonzero values; the parameters' sparse secret has 64"),
            "{m}"
        );

        // Evaluation keys: Galois elements, order, digits, levels.
        let mut kg = KeyGenerator::new(&s.params).unwrap();
        let keys = kg.gen_evaluation_keys(&s.sk, &[1, 2], false);
        let evk = |edit: &dyn Fn(&mut EvaluationKeysFile)| {
            let mut f = evaluation_keys_file(&s.params, &keys);
            edit(&mut f);
            file(FileKind::EvaluationKeys, &encode(&f))
        };
        let load = |b: Vec<u8>| message(load_evaluation_keys(&s.params, &mut &b[..]));
        let m = load(evk(&|f| f.galois[0].0 = 4));
        assert!(
            m.contains("field `galois[0]`: 4 is not a Galois element"),
            "{m}"
        );
        let m = load(evk(&|f| f.galois[0].0 = 1));
        assert!(m.contains("1 is not a Galois element"), "{m}");
        let m = load(evk(&|f| f.galois[1].0 = f.galois[0].0));
        assert!(
            m.contains("field `galois[1]`") && m.contains("repeated or out of order"),
            "{m}"
        );
        let m = load(evk(&|f| {
            let r = f.relin.as_mut().unwrap();
            r.seeds.pop();
        }));
        assert!(
            m.contains("field `relin`: 2 seeds and 3 polynomials"),
            "{m}"
        );
        let m = load(evk(&|f| f.relin.as_mut().unwrap().level = 9));
        assert!(
            m.contains("field `relin.level` = 9 is above the parameters' top level 2"),
            "{m}"
        );
        let m = load(evk(&|f| {
            let r = f.relin.as_mut().unwrap();
            let mut b = r.b[1].0.to_vec();
            b.truncate(b.len() - 8);
            r.b[1] = Words(Cow::Owned(b));
        }));
        assert!(m.contains("field `relin.b[1]` holds"), "{m}");
        let m = load(evk(&|f| {
            let g = &mut f.galois[1].1;
            let mut b = g.b[0].0.to_vec();
            b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
            g.b[0] = Words(Cow::Owned(b));
        }));
        assert!(
            m.contains("field `galois[1].b[0]`: residue 0 of limb 0"),
            "{m}"
        );
    }

    #[test]
    fn parameter_files_with_too_many_primes_are_refused() {
        let params = test_params(10, 2, 1);
        let mut literal = params.literal().clone();
        literal.log_q = vec![40; super::super::params::MAX_Q_PRIMES + 1];
        let payload = postcard::to_stdvec(&ParamsFile {
            literal,
            q: vec![],
            p: vec![],
        })
        .unwrap();
        let f = file(FileKind::Parameters, &payload);
        let m = message(load_parameters(&mut &f[..], true));
        assert!(
            m.starts_with("CKKS parameters file: field `literal`: 65 Q primes"),
            "{m}"
        );
    }
}
