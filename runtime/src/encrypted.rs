//! The CKKS backend: circuits on real ciphertexts.
//!
//! [`CkksBackend`] implements [`Backend`] with `runtime::ckks`: every op of
//! the circuit maps to the evaluator (constants and plaintext vectors are
//! encoded at the operand's level when used, linear transforms encode their
//! diagonals at use and evaluate them double-hoisted, bootstraps go to the
//! preset's bootstrapper), and the executor checks each result's level and
//! scale against the circuit, exactly as for the simulation backend.
//!
//! [`CircuitKeys`] holds what a server needs for one circuit and nothing
//! else: the relinearisation key, exactly the Galois keys the circuit and
//! its bootstrapper use (each only up to the highest level it is used at)
//! and the encapsulation keys of bootstrapping. It holds no secret key.

use crate::backend::{Backend, BackendError, NodeDiagonals};
use crate::ckks::bootstrapping::{BootstrapConfig, Bootstrapper, BootstrappingKeys};
use crate::ckks::circuits::LinearTransform;
use crate::ckks::keys::{galois_element_for_rotation, EvaluationKeys, KeyStorage};
use crate::ckks::{
    Ciphertext, CkksError, Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator, Parameters,
    PublicKey, SecretKey,
};
use ir::circuit::{Bsgs, Circuit};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The parameters, bootstrapper and encoder of one circuit.
pub struct CircuitContext {
    pub params: Parameters,
    pub config: BootstrapConfig,
    pub bootstrapper: Option<Bootstrapper>,
    pub encoder: Encoder,
    pub slots: usize,
}

impl CircuitContext {
    /// Builds the parameter set and bootstrapper `circuit` was compiled for
    /// (refusing a circuit whose primes this precis does not generate).
    pub fn new(circuit: &Circuit) -> Result<Self, String> {
        let (params, config) = crate::resources::ckks_parameters(circuit)?;
        Self::with(circuit, params, config)
    }

    /// As [`CircuitContext::new`] with explicit parameters (test sets).
    pub fn with(
        circuit: &Circuit,
        params: Parameters,
        config: BootstrapConfig,
    ) -> Result<Self, String> {
        if params.q() != circuit.params.q.as_slice() {
            return Err("the parameters' primes are not the circuit's".into());
        }
        let bootstrapper = match circuit.params.bootstrap {
            Some(_) => Some(Bootstrapper::new(&params, config.clone()).map_err(|e| e.to_string())?),
            None => None,
        };
        Ok(CircuitContext {
            encoder: Encoder::new(&params),
            slots: circuit.params.slots,
            params,
            config,
            bootstrapper,
        })
    }

    /// The Galois elements the server needs, each with the highest level it
    /// is used at: the circuit's rotations and the bootstrapper's keys.
    pub fn galois_levels(&self, circuit: &Circuit) -> BTreeMap<u64, usize> {
        let n = self.params.n();
        let mut levels: BTreeMap<u64, usize> = self
            .bootstrapper
            .as_ref()
            .map(|b| b.galois_key_levels())
            .unwrap_or_default();
        for (&k, &l) in &circuit.rotations {
            let g = galois_element_for_rotation(n, k as i64);
            let e = levels.entry(g).or_insert(l as usize);
            *e = (*e).max(l as usize);
        }
        levels
    }

    /// Generates the evaluation keys for `circuit` from `sk`.
    pub fn gen_keys(
        &self,
        kg: &mut KeyGenerator,
        sk: &SecretKey,
        circuit: &Circuit,
    ) -> Result<CircuitKeys, CkksError> {
        self.gen_keys_as(kg, sk, circuit, self.config.galois_key_storage, &|_, _| {})
    }

    /// [`Self::gen_keys`] holding the Galois keys as `storage` (key files
    /// record seeds only, so a key generator that writes them need not
    /// expand them: [`KeyStorage::Seeded`] halves its memory), calling
    /// `progress(done, total)` after each Galois key.
    pub fn gen_keys_as(
        &self,
        kg: &mut KeyGenerator,
        sk: &SecretKey,
        circuit: &Circuit,
        storage: KeyStorage,
        progress: &dyn Fn(usize, usize),
    ) -> Result<CircuitKeys, CkksError> {
        let mut evaluation = EvaluationKeys::default();
        evaluation.set_relinearization_key(kg.gen_relinearization_key(sk));
        let levels = self.galois_levels(circuit);
        for (i, (&g, &level)) in levels.iter().enumerate() {
            let mut key = kg.gen_galois_key_at(sk, g, level);
            key.set_storage(&self.params, storage);
            evaluation.insert_galois(g, key);
            progress(i + 1, levels.len());
        }
        let encapsulation = match &self.bootstrapper {
            Some(_) => Some(kg.gen_encapsulation_keys(sk, self.config.ephemeral_hamming_weight)?),
            None => None,
        };
        Ok(CircuitKeys {
            evaluation: Arc::new(evaluation),
            encapsulation,
        })
    }

    /// Encrypts a packed input (one slot vector per ciphertext) at the
    /// circuit's input level and scale.
    pub fn encrypt(
        &self,
        circuit: &Circuit,
        packed: &[Vec<f64>],
        key: EncryptionKey<'_>,
    ) -> Result<Vec<Ciphertext>, CkksError> {
        let mut enc = match key {
            EncryptionKey::Public(pk) => Encryptor::with_public_key(&self.params, pk)?,
            EncryptionKey::Secret(sk) => Encryptor::with_secret_key(&self.params, sk)?,
        };
        packed
            .iter()
            .map(|v| {
                let pt = self.encoder.encode_real(
                    v,
                    circuit.input.level as usize,
                    circuit.input.scale,
                )?;
                let mut ct = enc.encrypt(&pt);
                ct.set_scale(circuit.input.scale);
                Ok(ct)
            })
            .collect()
    }

    /// Decrypts and decodes ciphertexts to their real slot values.
    pub fn decrypt(&self, sk: &SecretKey, cts: &[Ciphertext]) -> Vec<Vec<f64>> {
        let dec = Decryptor::new(&self.params, sk);
        cts.iter()
            .map(|ct| self.encoder.decode_real(&dec.decrypt(ct)))
            .collect()
    }
}

/// Which key encrypts the input.
pub enum EncryptionKey<'a> {
    Public(&'a PublicKey),
    Secret(&'a SecretKey),
}

/// The server's keys for one circuit (no secret key).
#[derive(Clone)]
pub struct CircuitKeys {
    pub evaluation: Arc<EvaluationKeys>,
    pub encapsulation: Option<crate::ckks::bootstrapping::encapsulation::EncapsulationKeys>,
}

impl CircuitKeys {
    pub fn size_bytes(&self) -> usize {
        let ev = &self.evaluation;
        ev.relin.as_ref().map_or(0, |k| k.size_bytes())
            + ev.galois.values().map(|k| k.size_bytes()).sum::<usize>()
            + self.encapsulation.as_ref().map_or(0, |e| e.size_bytes())
    }
}

/// [`Backend`] on CKKS ciphertexts.
pub struct CkksBackend<'a> {
    ctx: &'a CircuitContext,
    eval: Evaluator,
    bootstrap_keys: Option<BootstrappingKeys>,
}

impl<'a> CkksBackend<'a> {
    pub fn new(ctx: &'a CircuitContext, keys: &CircuitKeys) -> Self {
        let bootstrap_keys = keys.encapsulation.as_ref().map(|e| BootstrappingKeys {
            evaluation: keys.evaluation.clone(),
            encapsulation: e.clone(),
        });
        CkksBackend {
            ctx,
            eval: Evaluator::new(&ctx.params, Some(keys.evaluation.clone())),
            bootstrap_keys,
        }
    }
}

fn be(e: CkksError) -> BackendError {
    BackendError(e.to_string())
}

impl Backend for CkksBackend<'_> {
    type Ct = Ciphertext;

    fn level(&self, a: &Ciphertext) -> u32 {
        a.level() as u32
    }

    fn scale(&self, a: &Ciphertext) -> f64 {
        a.scale()
    }

    fn add(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext, BackendError> {
        self.eval.add(a, b).map_err(be)
    }

    fn sub(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext, BackendError> {
        self.eval.sub(a, b).map_err(be)
    }

    fn neg(&self, a: &Ciphertext) -> Result<Ciphertext, BackendError> {
        Ok(self.eval.neg(a))
    }

    fn add_const(&self, a: &Ciphertext, c: f64) -> Result<Ciphertext, BackendError> {
        self.eval.add_const(a, c).map_err(be)
    }

    fn add_plain(&self, a: &Ciphertext, plain: &[f64]) -> Result<Ciphertext, BackendError> {
        let pt = self
            .ctx
            .encoder
            .encode_real(plain, a.level(), a.scale())
            .map_err(be)?;
        self.eval.add_plain(a, &pt).map_err(be)
    }

    fn mul_const(&self, a: &Ciphertext, c: f64, scale: f64) -> Result<Ciphertext, BackendError> {
        self.eval.mul_const(a, c, scale).map_err(be)
    }

    fn mul_int(&self, a: &Ciphertext, k: i64) -> Result<Ciphertext, BackendError> {
        Ok(self.eval.mul_int(a, k))
    }

    fn mul_plain(
        &self,
        a: &Ciphertext,
        plain: &[f64],
        scale: f64,
    ) -> Result<Ciphertext, BackendError> {
        let pt = self
            .ctx
            .encoder
            .encode_real(plain, a.level(), scale)
            .map_err(be)?;
        self.eval.mul_plain(a, &pt).map_err(be)
    }

    fn mul(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext, BackendError> {
        self.eval.mul_relin(a, b).map_err(be)
    }

    fn relabel(&self, a: &Ciphertext, factor: f64) -> Result<Ciphertext, BackendError> {
        let mut out = a.clone();
        out.set_scale(a.scale() * factor);
        Ok(out)
    }

    fn rotate(&self, a: &Ciphertext, k: u64) -> Result<Ciphertext, BackendError> {
        self.eval.rotate(a, k as i64).map_err(be)
    }

    fn rescale(&self, a: &Ciphertext) -> Result<Ciphertext, BackendError> {
        self.eval.rescale(a).map_err(be)
    }

    fn drop_level(&self, a: &Ciphertext, level: u32) -> Result<Ciphertext, BackendError> {
        if level as usize > a.level() {
            return Err(BackendError(format!(
                "drop from level {} to {level}",
                a.level()
            )));
        }
        Ok(self.eval.drop_level(a, level as usize))
    }

    fn bootstrap(&self, a: &Ciphertext) -> Result<Ciphertext, BackendError> {
        let (Some(bs), Some(keys)) = (&self.ctx.bootstrapper, &self.bootstrap_keys) else {
            return Err(BackendError("no bootstrapper or bootstrapping keys".into()));
        };
        bs.bootstrap(keys, a).map_err(be)
    }

    fn linear_transform(
        &self,
        inputs: &[&Ciphertext],
        program: &Bsgs,
        diagonals: &NodeDiagonals,
        fold: Option<(usize, usize)>,
        scale: f64,
    ) -> Result<Ciphertext, BackendError> {
        let level = inputs[0].level();
        // Each input ciphertext's baby steps hoisted from its own
        // decomposition; one rotation per giant step for all inputs.
        let mut per_input: BTreeMap<u32, BTreeMap<usize, BTreeMap<usize, &[f64]>>> =
            BTreeMap::new();
        for (g, diags) in program.giants.iter().zip(&diagonals.values) {
            for (&(ct, b), d) in g.babies.iter().zip(diags) {
                per_input
                    .entry(ct)
                    .or_default()
                    .entry(g.shift as usize)
                    .or_default()
                    .insert(b as usize, d.as_slice());
            }
        }
        let mut transforms = Vec::with_capacity(per_input.len());
        for (ct, groups) in &per_input {
            match LinearTransform::from_prerotated(
                &self.ctx.encoder,
                groups,
                self.ctx.slots,
                level,
                scale,
            ) {
                Ok(lt) => transforms.push((*ct as usize, lt)),
                // Every diagonal from this ciphertext is zero.
                Err(CkksError::InvalidArgument(m)) if m == "no nonzero diagonal" => continue,
                Err(e) => return Err(be(e)),
            }
        }
        if transforms.is_empty() {
            return Err(BackendError("a transform without diagonals".into()));
        }
        let terms: Vec<(&Ciphertext, &LinearTransform)> = transforms
            .iter()
            .map(|(ct, lt)| (inputs[*ct], lt))
            .collect();
        let mut out = self.eval.linear_transform_sum(&terms, None).map_err(be)?;
        if let Some((step, count)) = fold {
            let mut k = step;
            while k < step * count {
                let r = self.eval.rotate(&out, k as i64).map_err(be)?;
                out = self.eval.add(&out, &r).map_err(be)?;
                k *= 2;
            }
        }
        Ok(out)
    }
}
