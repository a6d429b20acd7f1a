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
use std::io::{Read, Write};

pub const MAGIC: &[u8; 8] = b"PRECISCK";
/// 3: uniform polynomials are expanded with AES-256 (was ChaCha20), and
/// switching keys record how they hold `a` in memory.
pub const FORMAT_VERSION: u16 = 3;
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

fn bad(msg: impl Into<String>) -> CkksError {
    CkksError::Format(msg.into())
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

fn read_container<R: Read>(r: &mut R, want: FileKind) -> Result<Vec<u8>, CkksError> {
    let mut header = [0u8; HEADER_LEN];
    r.read_exact(&mut header)
        .map_err(|_| bad("file too short for a precis CKKS header (truncated?)"))?;
    if &header[..8] != MAGIC {
        return Err(bad("not a precis CKKS file (bad magic)"));
    }
    let version = u16::from_le_bytes([header[8], header[9]]);
    if version != FORMAT_VERSION {
        return Err(bad(format!(
            "format version {version}, this build reads {FORMAT_VERSION}"
        )));
    }
    let kind = FileKind::from_u8(header[10])
        .ok_or_else(|| bad(format!("unknown file kind {}", header[10])))?;
    if kind != want {
        return Err(bad(format!(
            "file holds {}, expected {}",
            kind.name(),
            want.name()
        )));
    }
    let len = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
    let len = usize::try_from(len).map_err(|_| bad("payload length overflows"))?;
    let mut payload = Vec::new();
    r.take(len as u64).read_to_end(&mut payload)?;
    if payload.len() != len {
        return Err(bad(format!(
            "truncated file: payload has {} of {len} bytes",
            payload.len()
        )));
    }
    let mut sum = [0u8; CHECKSUM_LEN];
    r.read_exact(&mut sum)
        .map_err(|_| bad("truncated file: checksum missing"))?;
    let mut h = Sha256::new();
    h.update(header);
    h.update(&payload);
    if h.finalize().as_slice() != sum {
        return Err(bad("checksum mismatch: the file is corrupted"));
    }
    Ok(payload)
}

/// Polynomial limbs serialized as one byte string of little-endian words.
struct Words(Vec<u64>);

impl Serialize for Words {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::with_capacity(self.0.len() * 8);
        for w in &self.0 {
            bytes.extend_from_slice(&w.to_le_bytes());
        }
        s.serialize_bytes(&bytes)
    }
}

impl<'de> Deserialize<'de> for Words {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Words;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte string of little-endian u64 words")
            }
            fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<Words, E> {
                if b.len() % 8 != 0 {
                    return Err(E::custom("word data length is not a multiple of 8"));
                }
                Ok(Words(
                    b.chunks_exact(8)
                        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                        .collect(),
                ))
            }
        }
        d.deserialize_bytes(V)
    }
}

fn poly_words(p: &Poly) -> Words {
    Words(p.data.clone())
}

/// Rebuilds an NTT-domain polynomial, checking its size and that every
/// residue is reduced.
fn words_poly(params: &Parameters, w: Words, level: usize, ext: bool) -> Result<Poly, CkksError> {
    let ring = params.ring();
    let mut p = Poly::zero(ring, level, ext, true);
    if w.0.len() != p.data.len() {
        return Err(bad(format!(
            "polynomial has {} words, expected {}",
            w.0.len(),
            p.data.len()
        )));
    }
    p.data = w.0;
    for i in 0..p.limb_count() {
        let q = ring.modulus(p.modulus_index(ring, i)).value();
        if p.limb(i).iter().any(|&x| x >= q) {
            return Err(bad("polynomial residue out of range"));
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

fn check_params_id(params: &Parameters, id: &[u8; 32]) -> Result<(), CkksError> {
    if &params_id(params) != id {
        return Err(bad("the file was made with different CKKS parameters"));
    }
    Ok(())
}

fn decode<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, CkksError> {
    postcard::from_bytes(payload).map_err(|e| bad(format!("malformed payload: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("serializing to memory cannot fail")
}

pub fn save_parameters<W: Write>(params: &Parameters, w: &mut W) -> Result<(), CkksError> {
    write_container(w, FileKind::Parameters, &params_payload(params))
}

/// Loads parameters; the primes are regenerated from the literal and must
/// match the recorded ones. A file that records the explicit insecure flag
/// is refused unless the caller opts in with `allow_insecure`: a file alone
/// can never downgrade security.
pub fn load_parameters<R: Read>(r: &mut R, allow_insecure: bool) -> Result<Parameters, CkksError> {
    let payload = read_container(r, FileKind::Parameters)?;
    let f: ParamsFile = decode(&payload)?;
    if f.literal.insecure && !allow_insecure {
        return Err(CkksError::Insecure(
            "the parameters file records the explicit insecure flag; loading it needs allow_insecure"
                .into(),
        ));
    }
    let params = Parameters::new(f.literal)?;
    if params.q() != f.q.as_slice() || params.p() != f.p.as_slice() {
        return Err(bad("recorded primes differ from the regenerated ones"));
    }
    Ok(params)
}

#[derive(Serialize, Deserialize)]
enum C1 {
    Seeded(Seed),
    Full(Words),
}

#[derive(Serialize, Deserialize)]
struct CiphertextFile {
    params: [u8; 32],
    level: u32,
    scale: f64,
    slots: u64,
    c0: Words,
    c1: C1,
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

pub fn load_ciphertext<R: Read>(params: &Parameters, r: &mut R) -> Result<Ciphertext, CkksError> {
    let payload = read_container(r, FileKind::Ciphertext)?;
    let f: CiphertextFile = decode(&payload)?;
    check_params_id(params, &f.params)?;
    let level = f.level as usize;
    if level > params.max_level() {
        return Err(bad("ciphertext level above the parameters' maximum"));
    }
    let slots = f.slots as usize;
    if slots == 0 || !slots.is_power_of_two() || slots > params.max_slots() {
        return Err(bad("invalid slot count"));
    }
    if !(f.scale.is_finite() && f.scale > 0.0) {
        return Err(bad("invalid scale"));
    }
    let c0 = words_poly(params, f.c0, level, false)?;
    let (c1, seed) = match f.c1 {
        C1::Seeded(s) => (uniform_poly(params.ring(), &s, level, false), Some(s)),
        C1::Full(w) => (words_poly(params, w, level, false)?, None),
    };
    Ok(Ciphertext {
        c0,
        c1,
        scale: f.scale,
        slots,
        seed,
    })
}

#[derive(Serialize, Deserialize)]
struct PublicKeyFile {
    params: [u8; 32],
    seed: Seed,
    b: Words,
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
    let payload = read_container(r, FileKind::PublicKey)?;
    let f: PublicKeyFile = decode(&payload)?;
    check_params_id(params, &f.params)?;
    let level = params.max_level();
    Ok(PublicKey {
        b: words_poly(params, f.b, level, true)?,
        a: uniform_poly(params.ring(), &f.seed, level, true),
        seed: f.seed,
    })
}

#[derive(Serialize, Deserialize)]
struct SwitchingKeyFile {
    /// Highest ciphertext level the key switches (keys may be truncated).
    level: u32,
    /// How the loaded key holds its `a_j` (the file always stores seeds).
    storage: KeyStorage,
    seeds: Vec<Seed>,
    b: Vec<Words>,
}

#[derive(Serialize, Deserialize)]
struct EvaluationKeysFile {
    params: [u8; 32],
    relin: Option<SwitchingKeyFile>,
    galois: Vec<(u64, SwitchingKeyFile)>,
}

fn swk_file(k: &SwitchingKey) -> SwitchingKeyFile {
    SwitchingKeyFile {
        level: k.level() as u32,
        storage: k.storage(),
        seeds: k.seeds.clone(),
        b: k.b.iter().map(poly_words).collect(),
    }
}

fn swk_from_file(params: &Parameters, f: SwitchingKeyFile) -> Result<SwitchingKey, CkksError> {
    let level = f.level as usize;
    if level > params.max_level() {
        return Err(bad(format!(
            "switching key level {level} above the parameters' maximum {}",
            params.max_level()
        )));
    }
    let dnum = super::keys::digits_up_to(params, level).len();
    if f.seeds.len() != dnum || f.b.len() != dnum {
        return Err(bad(format!(
            "switching key at level {level} has {} digits, expected {dnum}",
            f.b.len()
        )));
    }
    let mut key = SwitchingKey {
        a: None,
        b: f.b
            .into_iter()
            .map(|w| words_poly(params, w, level, true))
            .collect::<Result<_, _>>()?,
        seeds: f.seeds,
    };
    key.set_storage(params, f.storage);
    Ok(key)
}

/// Saves relinearisation and Galois keys; each `a` is stored as its seed.
pub fn save_evaluation_keys<W: Write>(
    params: &Parameters,
    keys: &EvaluationKeys,
    w: &mut W,
) -> Result<(), CkksError> {
    let f = evaluation_keys_file(params, keys);
    write_container(w, FileKind::EvaluationKeys, &encode(&f))
}

fn evaluation_keys_file(params: &Parameters, keys: &EvaluationKeys) -> EvaluationKeysFile {
    EvaluationKeysFile {
        params: params_id(params),
        relin: keys.relin.as_ref().map(swk_file),
        galois: keys.galois.iter().map(|(g, k)| (*g, swk_file(k))).collect(),
    }
}

pub fn load_evaluation_keys<R: Read>(
    params: &Parameters,
    r: &mut R,
) -> Result<EvaluationKeys, CkksError> {
    let payload = read_container(r, FileKind::EvaluationKeys)?;
    evaluation_keys_from_file(params, decode(&payload)?)
}

fn evaluation_keys_from_file(
    params: &Parameters,
    f: EvaluationKeysFile,
) -> Result<EvaluationKeys, CkksError> {
    check_params_id(params, &f.params)?;
    let two_n = 2 * params.n() as u64;
    let mut keys = EvaluationKeys::default();
    if let Some(k) = f.relin {
        keys.relin = Some(swk_from_file(params, k)?);
    }
    for (g, k) in f.galois {
        if g % 2 == 0 || g >= two_n {
            return Err(bad(format!("invalid Galois element {g}")));
        }
        keys.galois.insert(g, swk_from_file(params, k)?);
    }
    Ok(keys)
}

#[derive(Serialize, Deserialize)]
struct BootstrappingKeysFile {
    evaluation: EvaluationKeysFile,
    /// Dense → sparse key: residues modulo `q_0` and `p_0` of `b`, then of `a`.
    to_sparse_b: [Words; 2],
    to_sparse_a: [Words; 2],
    to_dense: SwitchingKeyFile,
}

/// Saves the keys a server needs to bootstrap (relinearisation, Galois and
/// encapsulation keys; no secret).
pub fn save_bootstrapping_keys<W: Write>(
    params: &Parameters,
    keys: &BootstrappingKeys,
    w: &mut W,
) -> Result<(), CkksError> {
    let enc = &keys.encapsulation;
    let words = |v: &Vec<u64>| Words(v.clone());
    let f = BootstrappingKeysFile {
        evaluation: evaluation_keys_file(params, &keys.evaluation),
        to_sparse_b: [words(&enc.to_sparse.b[0]), words(&enc.to_sparse.b[1])],
        to_sparse_a: [words(&enc.to_sparse.a[0]), words(&enc.to_sparse.a[1])],
        to_dense: swk_file(&enc.to_dense),
    };
    write_container(w, FileKind::BootstrappingKeys, &encode(&f))
}

pub fn load_bootstrapping_keys<R: Read>(
    params: &Parameters,
    r: &mut R,
) -> Result<BootstrappingKeys, CkksError> {
    let payload = read_container(r, FileKind::BootstrappingKeys)?;
    let f: BootstrappingKeysFile = decode(&payload)?;
    let evaluation = evaluation_keys_from_file(params, f.evaluation)?;
    if params.p().is_empty() {
        return Err(bad(
            "bootstrapping keys need parameters with a special prime",
        ));
    }
    let moduli = [params.q()[0], params.p()[0]];
    let residues = |w: [Words; 2], what: &str| -> Result<[Vec<u64>; 2], CkksError> {
        let [x, y] = w;
        for (v, &q) in [&x.0, &y.0].into_iter().zip(&moduli) {
            if v.len() != params.n() || v.iter().any(|&r| r >= q) {
                return Err(bad(format!(
                    "encapsulation key {what}: expected {} residues below its modulus",
                    params.n()
                )));
            }
        }
        Ok([x.0, y.0])
    };
    let to_sparse = DenseToSparseKey {
        b: residues(f.to_sparse_b, "b")?,
        a: residues(f.to_sparse_a, "a")?,
    };
    let to_dense = swk_from_file(params, f.to_dense)?;
    if to_dense.level() != params.max_level() {
        return Err(bad(
            "encapsulation key (sparse → dense) must reach the top level",
        ));
    }
    Ok(BootstrappingKeys {
        evaluation: std::sync::Arc::new(evaluation),
        encapsulation: EncapsulationKeys {
            to_sparse,
            to_dense,
        },
    })
}

#[derive(Serialize, Deserialize)]
struct SecretKeyFile {
    params: [u8; 32],
    coeffs: Vec<i8>,
}

/// Saves the secret key in its own file kind. Keep it private.
pub fn save_secret_key<W: Write>(
    params: &Parameters,
    sk: &SecretKey,
    w: &mut W,
) -> Result<(), CkksError> {
    let f = SecretKeyFile {
        params: params_id(params),
        coeffs: sk.coeffs.clone(),
    };
    write_container(w, FileKind::SecretKey, &encode(&f))
}

pub fn load_secret_key<R: Read>(params: &Parameters, r: &mut R) -> Result<SecretKey, CkksError> {
    let payload = read_container(r, FileKind::SecretKey)?;
    let f: SecretKeyFile = decode(&payload)?;
    check_params_id(params, &f.params)?;
    if f.coeffs.len() != params.n() || f.coeffs.iter().any(|c| c.abs() > 1) {
        return Err(bad(
            "secret key coefficients must be N values in {-1, 0, 1}",
        ));
    }
    Ok(SecretKey::from_coeffs(params, f.coeffs))
}
