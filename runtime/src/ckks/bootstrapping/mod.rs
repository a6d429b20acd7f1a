//! CKKS bootstrapping: refreshes a level-0 ciphertext to a high level.
//!
//! The pipeline, for `n` message slots (`gap = N/2n`):
//!
//! 1. **Pre-scale** (level 0, free): multiply by an integer so that the
//!    message's scale is `Δ_eff ≈ q_0 / 2^ρ` (`ρ` = `log_message_ratio`).
//! 2. **Encapsulation + ModRaise** ([`encapsulation`]): switch to an ephemeral
//!    sparse secret, reinterpret the level-0 residues modulo the whole chain,
//!    switch back. The ciphertext now decrypts to `t = Δ_eff·m + q_0·I`,
//!    `|I| ≤ (h' + 1)/2`.
//! 3. **Sub-sum** (sparse packing only): `log2(gap)` rotations by multiples of
//!    `n` keep the coefficients of `Y = X^gap` (times `gap`).
//! 4. **CoeffToSlot** ([`dft`]): `cts_levels` BSGS linear transforms put the
//!    coefficients `t/q_0` into slots (in bit-reversed order), and a
//!    conjugation separates real and imaginary parts — two ciphertexts for
//!    full packing, one with `2n` slots `[Re | Im]` for sparse packing.
//! 5. **EvalMod** ([`eval_mod`]): `sin(2πx)` by a Chebyshev cosine and
//!    double angles, optionally followed by the cubic arcsine correction.
//! 6. **SlotToCoeff** ([`dft`]): `stc_levels` transforms back to the message,
//!    scaled to the input scale; the imaginary part is cleaned by adding the
//!    conjugate (real messages).
//!
//! [`Bootstrapper::contract`] states what a scheduler needs: the depth it
//! consumes, the minimum input level (0: any ciphertext can be bootstrapped),
//! the output level and the expected output precision in bits.

pub mod bench;
pub mod dft;
pub mod encapsulation;
pub mod eval_mod;
pub mod presets;

use crate::ckks::circuits::linear_transform::LinearTransform;
use crate::ckks::circuits::polynomial::ChebyshevPoly;
use crate::ckks::encoding::{Encoder, Plaintext};
use crate::ckks::encryption::Ciphertext;
use crate::ckks::keys::{
    galois_element_conjugate, galois_element_for_rotation, EvaluationKeys, KeyStorage, SwitchingKey,
};
use crate::ckks::ring::Poly;
use crate::ckks::{CkksError, Complex64, Evaluator, KeyGenerator, Parameters, SecretKey};
use dft::Diagonals;
use encapsulation::EncapsulationKeys;
use eval_mod::CosineApprox;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What the user chooses about bootstrapping (the parameters fix the rest).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BootstrapConfig {
    /// `log2` of the number of message slots (`≤ log2 N − 1`).
    pub log_slots: u32,
    /// Levels (= merged FFT groups) spent on CoeffToSlot.
    pub cts_levels: usize,
    /// Levels spent on SlotToCoeff.
    pub stc_levels: usize,
    /// Hamming weight `h'` of the ephemeral sparse secret.
    pub ephemeral_hamming_weight: usize,
    /// Double-angle steps `r` of EvalMod.
    pub double_angle: u32,
    /// `ρ`: `log2(q_0 / Δ_eff)`.
    pub log_message_ratio: u32,
    /// Chebyshev coefficients below `2^-log_cosine_error` are dropped.
    pub log_cosine_error: u32,
    /// Apply the cubic arcsine correction after the sine (two more levels).
    pub arcsine: bool,
    /// The message is real: add the conjugate to clean the imaginary part.
    pub real: bool,
    /// `log2` of the output's scale; `None`: the parameters' default scale.
    /// A scale above the output level's prime keeps the roundings at the
    /// output small when the circuit primes are small (see `estimate_precision`).
    #[serde(default)]
    pub output_log_scale: Option<u32>,
    /// How the Galois keys hold their `a_j`: [`KeyStorage::Seeded`] halves
    /// their memory and regenerates `a_j` in every rotation.
    #[serde(default)]
    pub galois_key_storage: KeyStorage,
}

impl BootstrapConfig {
    /// The default recipe for `2^log_slots` slots.
    pub fn new(log_slots: u32) -> Self {
        BootstrapConfig {
            log_slots,
            cts_levels: 3,
            stc_levels: 3,
            ephemeral_hamming_weight: 32,
            // K_u = 17: two double angles let a degree-58 cosine reach 2^-50
            // within depth 6 (three need degree 38, also depth 6, one level
            // more in all), and amplify the polynomial's error 10.5× instead of 41×.
            double_angle: 2,
            log_message_ratio: 8,
            log_cosine_error: 50,
            arcsine: true,
            real: true,
            output_log_scale: None,
            galois_key_storage: KeyStorage::Expanded,
        }
    }

    /// `x − 1/4` lies in `[−K_u, K_u]`: `|I| ≤ (h' + 1)/2`, plus `1/4`, plus
    /// the message (`≤ 2^-ρ`), rounded up to a half-integer margin.
    pub fn k_u(&self) -> f64 {
        (self.ephemeral_hamming_weight as f64 + 1.0) / 2.0 + 0.5
    }

    pub fn cosine(&self) -> CosineApprox {
        CosineApprox::new(self.k_u(), self.double_angle, self.log_cosine_error)
    }

    /// Half-width of the interval of `sin(2πx)` before the arcsine correction.
    fn sine_bound(&self) -> f64 {
        2.0 * std::f64::consts::PI * 2f64.powi(-(self.log_message_ratio as i32)) * 1.25
    }

    /// `y ↦ arcsin(a·y)/a` truncated after the cubic term, on `[−1, 1]`, `a` the sine bound.
    fn arcsine_poly(&self) -> ChebyshevPoly {
        let a = self.sine_bound();
        // s + s³/6 = a·y + a³y³/6; in Chebyshev form (y³ = (3T_1 + T_3)/4), divided by a.
        let c3 = a * a / 6.0;
        ChebyshevPoly::new(vec![0.0, 1.0 + 0.75 * c3, 0.0, 0.25 * c3], -1.0, 1.0)
            .expect("finite coefficients")
    }

    /// Levels EvalMod consumes.
    pub fn eval_mod_depth(&self) -> usize {
        self.cosine().depth()
            + if self.arcsine {
                self.arcsine_poly().depth()
            } else {
                0
            }
    }

    /// Total levels bootstrapping consumes from the top of the chain.
    pub fn depth(&self) -> usize {
        self.cts_levels + self.eval_mod_depth() + self.stc_levels
    }
}

/// Wall seconds per named phase of one bootstrap, in the order of [`PHASES`].
pub type PhaseTimes = Vec<(&'static str, f64)>;

/// The phases [`Bootstrapper::bootstrap_timed`] times, in order.
pub const PHASES: [&str; 4] = [
    "mod_raise",
    "coeffs_to_slots",
    "eval_mod",
    "slots_to_coeffs",
];

/// The numbers a scheduler plans with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BootstrapContract {
    pub slots: usize,
    /// Levels consumed from the top of the chain.
    pub depth: usize,
    /// Lowest level a ciphertext may have on input (it is dropped to 0 anyway).
    pub minimum_input_level: usize,
    /// Level of the output: the multiplicative levels left to the circuit.
    pub output_level: usize,
    /// Scale of the output (for an input whose scale divides the pre-scaling
    /// target; otherwise within the rounding of the pre-scaling integer).
    pub output_scale: f64,
    /// Expected `−log2` of the largest slot error for inputs in `[−1, 1]`
    /// (an estimate from the error model in [`Bootstrapper::new`]; the tests
    /// and `precis bench bootstrap` measure it).
    pub output_precision_bits: f64,
    /// Rotation amounts whose Galois keys bootstrapping needs (plus conjugation).
    pub rotations: Vec<i64>,
}

/// Keys for bootstrapping: relinearisation, the Galois keys the transforms
/// need (and only those), and the encapsulation keys.
#[derive(Clone)]
pub struct BootstrappingKeys {
    pub evaluation: Arc<EvaluationKeys>,
    pub encapsulation: EncapsulationKeys,
}

impl BootstrappingKeys {
    /// Bytes held in memory by all keys.
    pub fn size_bytes(&self) -> usize {
        let ev = &self.evaluation;
        ev.relin.as_ref().map_or(0, |k| k.size_bytes())
            + ev.galois.values().map(|k| k.size_bytes()).sum::<usize>()
            + self.encapsulation.size_bytes()
    }
}

/// A bootstrapping circuit for one parameter set and slot count: the encoded
/// DFT matrices, the EvalMod polynomials and the level plan.
pub struct Bootstrapper {
    params: Parameters,
    config: BootstrapConfig,
    slots: usize,
    /// Slots the transforms work in: `n` (full packing) or `2n` (sparse).
    space: usize,
    cts: Vec<LinearTransform>,
    stc: Vec<LinearTransform>,
    cosine: CosineApprox,
    arcsine: Option<ChebyshevPoly>,
    /// Scale at which the cosine is evaluated.
    eval_scale: f64,
    /// `Δ_eff` the pre-scaling aims at.
    target_message_scale: f64,
    /// The scale the output has for an input whose effective scale is the target.
    output_scale: f64,
    /// `X^{N/2}` (the constant `i` in every slot), NTT domain.
    imaginary_unit: Plaintext,
    contract: BootstrapContract,
}

/// Baby-step count `n1` for a transform with the diagonals `diags`: the
/// power of two that needs the fewest distinct rotations (baby steps
/// `k mod n1` plus giant steps `k − k mod n1`, so the fewest Galois keys),
/// ties broken by the cost of evaluation, a giant step (decomposition, key
/// product, ModDown) counting as about three baby steps (a key product).
fn baby_steps(diags: &Diagonals, space: usize) -> usize {
    let count = |n1: usize| {
        let babies: std::collections::BTreeSet<usize> =
            diags.keys().map(|&k| k % n1).filter(|&b| b != 0).collect();
        let giants: std::collections::BTreeSet<usize> = diags
            .keys()
            .map(|&k| k - k % n1)
            .filter(|&g| g != 0)
            .collect();
        (babies.len() + giants.len(), babies.len() + 3 * giants.len())
    };
    (0..=space.trailing_zeros())
        .map(|e| 1usize << e)
        .min_by_key(|&n1| count(n1))
        .unwrap_or(1)
}

/// The rotations of the sub-sum of sparse packing (`n` slots, `gap = N/2n`):
/// by `n`, `2n`, …, `gap·n/2`. None for full packing.
fn sub_sum_rotations(slots: usize, gap: usize) -> impl Iterator<Item = i64> {
    (0..gap.trailing_zeros()).map(move |i| (slots << i) as i64)
}

impl Bootstrapper {
    /// Plans and precomputes bootstrapping for `params` (whose chain must have
    /// at least `config.depth()` levels above level 0).
    pub fn new(params: &Parameters, config: BootstrapConfig) -> Result<Self, CkksError> {
        let bad = |s: String| Err(CkksError::InvalidParameters(s));
        let n_total = params.n();
        let slots = 1usize << config.log_slots;
        if slots > params.max_slots() {
            return bad(format!(
                "2^{} slots exceed N/2 = {}",
                config.log_slots,
                params.max_slots()
            ));
        }
        if config.cts_levels == 0 || config.stc_levels == 0 {
            return bad("CoeffToSlot and SlotToCoeff need at least one level each".into());
        }
        if !(1..=20).contains(&config.log_message_ratio) {
            return bad("log_message_ratio must be in 1..=20".into());
        }
        let depth = config.depth();
        let top = params.max_level();
        if depth > top {
            return bad(format!(
                "bootstrapping needs {depth} levels above level 0, the chain has {top}"
            ));
        }
        let q = params.q();
        let q0 = q[0] as f64;
        let sparse = slots < params.max_slots();
        let space = if sparse { 2 * slots } else { slots };
        let gap = n_total / 2 / slots;
        let encoder = Encoder::new(params);
        let cosine = config.cosine();
        let arcsine = config.arcsine.then(|| config.arcsine_poly());

        // Levels: CtS runs from the top, EvalMod below it, StC below that.
        let eval_level = top - config.cts_levels;
        let eval_scale = q[eval_level] as f64;

        // CoeffToSlot: t/q0 (scale q0·gap after the sub-sum) → y = x/K_u.
        // Constant factors are not encoded into the diagonals (small entries
        // would lose plaintext precision): the matrices keep entries of
        // magnitude ~1 and the constant is carried by the scale. With
        // `M = c·M'`, evaluating `M'` and dividing the recorded scale by `c`
        // yields `M·v`.
        let mut cts_m = dft::coeffs_to_slots(slots, space, config.cts_levels);
        let cts_constant = 0.5 / (slots as f64 * config.k_u());
        {
            let mut f = vec![Complex64::new(slots as f64, 0.0); space];
            if sparse {
                // Second half: −i, so that adding the conjugate leaves Im(w) there.
                for v in f.iter_mut().skip(slots) {
                    *v = Complex64::new(0.0, -(slots as f64));
                }
            }
            dft::scale_rows(&mut cts_m[0], &f);
        }
        let cts = Self::encode_chain(
            &encoder,
            &cts_m,
            space,
            top,
            q0 * gap as f64,
            eval_scale * cts_constant,
        )?;

        // The scale EvalMod ends on: the cosine at eval_scale, each double
        // angle squares it and divides by its prime; the arcsine polynomial
        // returns to eval_scale.
        let cheb_out = eval_level - cosine.poly.depth();
        let mut level = cheb_out;
        let mut s = eval_scale;
        for _ in 0..config.double_angle {
            s = s * s / q[level] as f64;
            level -= 1;
        }
        if let Some(p) = &arcsine {
            s = eval_scale;
            level -= p.depth();
        }
        let stc_level = level;
        debug_assert_eq!(stc_level, top - config.cts_levels - config.eval_mod_depth());

        // SlotToCoeff: sin(2πx) = 2π·Δ_eff·m/q0 (after the arcsine: arcsine·…) → m.
        let target_message_scale = q0 / 2f64.powi(config.log_message_ratio as i32);
        let output_scale = match config.output_log_scale {
            Some(b) if !(20..=60).contains(&b) => {
                return bad(format!("output scale 2^{b} outside 2^20..=2^60"));
            }
            Some(b) => 2f64.powi(b as i32),
            None => params.default_scale(),
        };
        let mut stc_m = dft::slots_to_coeffs(slots, space, config.stc_levels);
        let mut stc_constant = q0 / (2.0 * std::f64::consts::PI * target_message_scale);
        if config.arcsine {
            // The arcsine polynomial returns arcsin(s)/a.
            stc_constant *= config.sine_bound();
        }
        if config.real {
            stc_constant *= 0.5;
        }
        if sparse {
            // Combine [Re | Im] into Re + i·Im on both halves, first.
            let one = Complex64::new(1.0, 0.0);
            let i = Complex64::new(0.0, 1.0);
            let mut comb = Diagonals::new();
            comb.insert(
                0,
                (0..space)
                    .map(|t| if t < slots { one } else { i })
                    .collect(),
            );
            comb.insert(
                slots,
                (0..space)
                    .map(|t| if t < slots { i } else { one })
                    .collect(),
            );
            stc_m[0] = dft::multiply(&stc_m[0], &comb, space);
        }
        let stc = Self::encode_chain(
            &encoder,
            &stc_m,
            space,
            stc_level,
            s,
            output_scale * stc_constant,
        )?;
        let output_level = stc_level - config.stc_levels;

        let imaginary_unit = {
            let ring = params.ring();
            let mut c = vec![0i64; n_total];
            c[n_total / 2] = 1;
            let mut poly = Poly::from_signed(ring, &c, top, false);
            poly.to_ntt(ring);
            Plaintext {
                poly,
                scale: 1.0,
                slots: space,
            }
        };

        let mut rotations: Vec<i64> = cts
            .iter()
            .chain(&stc)
            .flat_map(|lt| lt.rotations())
            .chain(sub_sum_rotations(slots, gap))
            .collect();
        rotations.sort();
        rotations.dedup();

        let output_precision_bits = estimate_precision(
            params,
            &config,
            &cosine,
            slots,
            eval_scale,
            output_scale,
            &stc,
        );
        let contract = BootstrapContract {
            slots,
            depth,
            minimum_input_level: 0,
            output_level,
            output_scale,
            output_precision_bits,
            rotations,
        };
        Ok(Bootstrapper {
            params: params.clone(),
            config,
            slots,
            space,
            cts,
            stc,
            cosine,
            arcsine,
            eval_scale,
            target_message_scale,
            output_scale,
            imaginary_unit,
            contract,
        })
    }

    /// Encodes consecutive transforms starting at `level`, one level each,
    /// with plaintext scales that take a ciphertext from `in_scale` to
    /// `out_scale` in equal steps (each plaintext scale close to its prime
    /// divided by the same factor).
    fn encode_chain(
        encoder: &Encoder,
        matrices: &[Diagonals],
        space: usize,
        level: usize,
        in_scale: f64,
        out_scale: f64,
    ) -> Result<Vec<LinearTransform>, CkksError> {
        let q = encoder.params().q();
        let mut scale = in_scale;
        let mut out = Vec::with_capacity(matrices.len());
        for (i, m) in matrices.iter().enumerate() {
            let l = level - i;
            let remaining = (matrices.len() - i) as f64;
            let ql = q[l] as f64;
            let pt_scale = ql * (out_scale / scale).powf(1.0 / remaining);
            out.push(LinearTransform::new_compact(
                encoder,
                m,
                space,
                l,
                pt_scale,
                Some(baby_steps(m, space)),
            )?);
            scale = scale * pt_scale / ql;
        }
        Ok(out)
    }

    pub fn contract(&self) -> &BootstrapContract {
        &self.contract
    }
    pub fn config(&self) -> &BootstrapConfig {
        &self.config
    }
    pub fn params(&self) -> &Parameters {
        &self.params
    }

    /// Galois elements of the keys bootstrapping needs (rotations and conjugation).
    pub fn galois_elements(&self) -> Vec<u64> {
        self.galois_key_levels().into_keys().collect()
    }

    /// For each Galois element bootstrapping uses, the highest level of a
    /// ciphertext it is applied to: keys used only by SlotToCoeff (low in the
    /// chain) can then be generated at that level, with fewer limbs and digits.
    pub fn galois_key_levels(&self) -> std::collections::BTreeMap<u64, usize> {
        let n = self.params.n();
        let top = self.params.max_level();
        let mut levels = std::collections::BTreeMap::new();
        let mut need = |g: u64, level: usize| {
            if g != 1 {
                let l = levels.entry(g).or_insert(level);
                *l = (*l).max(level);
            }
        };
        for k in sub_sum_rotations(self.slots, n / 2 / self.slots) {
            need(galois_element_for_rotation(n, k), top);
        }
        for lt in self.cts.iter().chain(&self.stc) {
            for k in lt.rotations() {
                need(galois_element_for_rotation(n, k), lt.level());
            }
        }
        // Conjugation splits real and imaginary parts after CoeffToSlot (and
        // cleans the imaginary part at the output, lower).
        need(galois_element_conjugate(n), top - self.config.cts_levels);
        levels
    }

    /// Bytes the keys of [`KeyGenerator::gen_bootstrapping_keys`] will take
    /// in memory, known before generating them.
    pub fn key_bytes(&self) -> usize {
        let params = &self.params;
        let n = params.n();
        let switching_key = |level: usize, storage: KeyStorage| {
            let digits = crate::ckks::keys::digits_up_to(params, level).len();
            SwitchingKey::size_bytes_for(digits, level + 1 + params.p().len(), n, storage)
        };
        let top = params.max_level();
        let galois: usize = self
            .galois_key_levels()
            .values()
            .map(|&l| switching_key(l, self.config.galois_key_storage))
            .sum();
        // Relinearisation and sparse → dense keys at the top, expanded; the
        // dense → sparse key holds `b` and `a` modulo q_0 and p_0.
        galois + 2 * switching_key(top, KeyStorage::Expanded) + 4 * n * 8
    }

    /// Bytes held by the encoded transforms.
    pub fn size_bytes(&self) -> usize {
        self.cts
            .iter()
            .chain(&self.stc)
            .map(|lt| lt.size_bytes())
            .sum::<usize>()
            + self.imaginary_unit.poly.data.len() * 8
    }

    /// Multiplies by `i` in every slot (exact, no level); `ct` has `space` slots.
    fn times_i(&self, eval: &Evaluator, ct: &Ciphertext) -> Result<Ciphertext, CkksError> {
        eval.mul_plain(ct, &self.imaginary_unit)
    }

    fn eval_mod(&self, eval: &Evaluator, ct: &Ciphertext) -> Result<Ciphertext, CkksError> {
        // y = x/K_u − 1/(4K_u): the shift by a quarter turns the cosine into a sine.
        let y = eval.add_const(ct, -0.25 / self.config.k_u())?;
        let mut s = eval.eval_mod(&y, &self.cosine, self.eval_scale)?;
        if let Some(p) = &self.arcsine {
            // Reinterpret s as s/a (free), then arcsin(s)/a ≈ y + a²y³/6.
            let sc = s.scale() * self.config.sine_bound();
            s.set_scale(sc);
            s = eval.evaluate_chebyshev_in_depth(&s, p, self.eval_scale)?;
        }
        Ok(s)
    }

    /// Refreshes `ct` (any level, real values in `[−1, 1]` when
    /// `config.real`) to [`BootstrapContract::output_level`], same slots and
    /// (up to rounding of the pre-scaling integer) [`BootstrapContract::output_scale`].
    pub fn bootstrap(
        &self,
        keys: &BootstrappingKeys,
        ct: &Ciphertext,
    ) -> Result<Ciphertext, CkksError> {
        Ok(self.bootstrap_timed(keys, ct)?.0)
    }

    /// [`Bootstrapper::bootstrap`], also returning the wall seconds of each
    /// phase: `mod_raise` (pre-scaling, encapsulation, ModRaise, sub-sum),
    /// `coeffs_to_slots`, `eval_mod`, `slots_to_coeffs` (with the imaginary
    /// part's cleaning).
    pub fn bootstrap_timed(
        &self,
        keys: &BootstrappingKeys,
        ct: &Ciphertext,
    ) -> Result<(Ciphertext, PhaseTimes), CkksError> {
        let mut phases = Vec::with_capacity(4);
        let mut clock = std::time::Instant::now();
        let mut lap = |name: &'static str| {
            phases.push((name, clock.elapsed().as_secs_f64()));
            clock = std::time::Instant::now();
        };
        if ct.slots() != self.slots {
            return Err(CkksError::Mismatch(format!(
                "bootstrapper for {} slots, ciphertext has {}",
                self.slots,
                ct.slots()
            )));
        }
        let eval = Evaluator::new(&self.params, Some(keys.evaluation.clone()));
        let top = self.params.max_level();
        let q0 = self.params.q()[0] as f64;

        // 1. Pre-scale at level 0 by an integer c, Δ_eff = c·Δ_in.
        let x = eval.drop_level(ct, 0);
        let c = (self.target_message_scale / x.scale()).round().max(1.0);
        if c > 2f64.powi(40) {
            return Err(CkksError::InvalidArgument(format!(
                "input scale 2^{:.1} too small to bootstrap",
                x.scale().log2()
            )));
        }
        let effective = c * x.scale();
        let x = eval.mul_int(&x, c as i64);

        // 2. Encapsulation and ModRaise.
        let x = eval.switch_to_sparse(&x, &keys.encapsulation.to_sparse)?;
        let x = eval.mod_raise(&x, top)?;
        let mut x = eval.switch_to_dense(&x, &keys.encapsulation.to_dense)?;

        // 3. Sub-sum over the rotations by multiples of n (sparse packing).
        let gap = self.params.n() / 2 / self.slots;
        for k in sub_sum_rotations(self.slots, gap) {
            let r = eval.rotate(&x, k)?;
            x = eval.add(&x, &r)?;
        }
        x.set_scale(q0 * gap as f64);
        x.slots = self.space;
        lap(PHASES[0]);

        // 4. CoeffToSlot.
        for lt in &self.cts {
            x = eval.rescale(&eval.linear_transform(&x, lt)?)?;
        }
        x.set_scale(self.eval_scale);
        let conj = eval.conjugate(&x)?;
        lap(PHASES[1]);

        // 5. EvalMod (6. SlotToCoeff input).
        let mut y = if self.space == self.slots {
            // Full packing: real and imaginary parts separately.
            let re = eval.add(&x, &conj)?;
            let im = self.times_i(&eval, &eval.sub(&conj, &x)?)?;
            let (re, im) = rayon::join(|| self.eval_mod(&eval, &re), || self.eval_mod(&eval, &im));
            let (re, im) = (re?, im?);
            let im = self.times_i(&eval, &im)?;
            eval.add(&re, &im)?
        } else {
            self.eval_mod(&eval, &eval.add(&x, &conj)?)?
        };
        lap(PHASES[2]);

        // 6. SlotToCoeff.
        for lt in &self.stc {
            y = eval.rescale(&eval.linear_transform(&y, lt)?)?;
        }
        if self.config.real {
            y = eval.add(&y, &eval.conjugate(&y)?)?;
        }
        y.slots = self.slots;
        // StC assumed Δ_eff = target: at output_scale the slots read
        // m·effective/target, so the true scale is output_scale·effective/target.
        y.set_scale(self.output_scale * effective / self.target_message_scale);
        lap(PHASES[3]);
        Ok((y, phases))
    }
}

/// Error model behind [`BootstrapContract::output_precision_bits`], in slot
/// units for inputs in `[−1, 1]`, as the largest error over the `n` slots.
/// `ρ_S = √N·√(N/18)/S` is the slot noise of one rescale rounding at scale
/// `S` (a ternary secret times `±1/2` roundings, `√N` per slot).
///
/// * **EvalMod input.** CoeffToSlot delivers `y = (x − 1/4)/K_u` with noise
///   of about [`EVAL_MOD_INPUT_ROUNDINGS`] roundings at the EvalMod scale
///   (its rescales, key switches and the conjugation's ModDown). The sine
///   `cos(2πK_u·y)` has slope `2πK_u` where the message lives, so this noise
///   is amplified by `2πK_u` (107 for `h' = 32`); it is most of the error.
/// * **EvalMod polynomial.** About three roundings plus the truncation of
///   the cosine, amplified by the double angles: `2c² − 1` has slope `4c`,
///   and with the angle near `−π/2` at the end the `r` steps contribute
///   `Π_k 4·cos(π/2^(k+1))` (2.8, 10.5, 41 for `r` = 1, 2, 3).
/// * SlotToCoeff sums `2n` coefficients with unit weights and scales by
///   `q_0/(2π·Δ_eff) = 2^ρ/(2π)`, which turns both into Gaussian slot errors.
/// * **SlotToCoeff quantisation.** Its plaintexts hold the DFT entries to
///   `1/Δ_pt`; per slot the error is about `√(Σ diagonals / Δ_pt²)` over its
///   transforms. Fitted at N = 2^13, full slots, 36-bit SlotToCoeff primes
///   (`Δ_pt ≈ 2^27.8`): slot errors had standard deviation 2^-23.84 where the
///   output roundings alone give 2^-24.43 (and do with 41- or 46-bit
///   primes). Doubled as a margin.
/// * **Output part.** The roundings at the output scale `Δ_out`: the last
///   rescale's `e_1` and the ModDown of the conjugation that cleans the
///   imaginary part, `e_2`. The output is `2·Re(y) + e_2`, so the real part
///   carries `√(2 + 1/2)` times one rounding: per slot
///   `√(2n)·√(N/18)/Δ_out` (only the `2n` coefficients of the slots' subring
///   reach them). These errors arise in the slots themselves, where a
///   rounding `e·s` is the product of two slot values, `e(ζ)·s(ζ)`: its real
///   part is Laplace-distributed, so the largest of `n` lies near
///   `σ/√2·(ln n + 3)` (the `+ 3` leaves a few percent chance of exceeding it).
///
/// The Gaussian parts are added in quadrature and their largest of `n` is
/// taken as `σ·√(2·ln(2n/p))`, exceeded with probability at most `p = 10^-3`;
/// the output part is added in quadrature to that.
fn estimate_precision(
    params: &Parameters,
    config: &BootstrapConfig,
    cosine: &CosineApprox,
    slots: usize,
    eval_scale: f64,
    output_scale: f64,
    stc: &[LinearTransform],
) -> f64 {
    use std::f64::consts::PI;
    let n = params.n() as f64;
    let rounding = (n / 18.0).sqrt() * n.sqrt() / eval_scale;
    let input = EVAL_MOD_INPUT_ROUNDINGS * rounding * 2.0 * PI * config.k_u();
    let amplification: f64 = (1..=config.double_angle)
        .map(|k| 4.0 * (PI / f64::from(1u32 << (k + 1))).cos())
        .product();
    let polynomial = amplification * (3.0 * rounding + cosine.truncation_error);
    let coeffs = (2 * slots) as f64;
    let ratio = 2f64.powi(config.log_message_ratio as i32);
    let eval_mod_std = input.hypot(polynomial) / (2.0 * PI) * ratio * coeffs.sqrt();
    // Fitted on one configuration: doubled as a margin.
    let quantisation_std: f64 = 2.0
        * stc
            .iter()
            .map(|lt| lt.diagonal_count() as f64 / (lt.scale() * lt.scale()))
            .sum::<f64>()
            .sqrt();
    let gaussian_max = eval_mod_std.hypot(quantisation_std)
        * (2.0 * (2.0 * slots as f64 / MAX_EXCEEDED_PROBABILITY).ln()).sqrt();
    let output_std = (n / 18.0).sqrt() * coeffs.sqrt() * 2.5f64.sqrt() / output_scale;
    let output_max = output_std / std::f64::consts::SQRT_2 * ((slots as f64).ln() + 3.0);
    -gaussian_max.hypot(output_max).log2()
}

/// Roundings at the EvalMod scale that the EvalMod input carries, in the
/// error model (`estimate_precision`). Fitted at N = 2^13, full slots, with
/// 54- and 56-bit EvalMod primes, where this term dominates (slot error
/// standard deviations 2^-21.77 and 2^-23.80, which 6.2 roundings give),
/// and rounded up.
pub const EVAL_MOD_INPUT_ROUNDINGS: f64 = 7.0;

/// The error model's largest slot error is exceeded with this probability.
const MAX_EXCEEDED_PROBABILITY: f64 = 1e-3;

impl KeyGenerator {
    /// The keys `bootstrapper` needs: relinearisation, its Galois keys
    /// (rotations and conjugation, nothing else, each only up to the level it
    /// is used at) and the encapsulation keys.
    pub fn gen_bootstrapping_keys(
        &mut self,
        sk: &SecretKey,
        bootstrapper: &Bootstrapper,
    ) -> Result<BootstrappingKeys, CkksError> {
        let mut evaluation = EvaluationKeys::default();
        evaluation.set_relinearization_key(self.gen_relinearization_key(sk));
        for (g, level) in bootstrapper.galois_key_levels() {
            let mut key = self.gen_galois_key_at(sk, g, level);
            key.set_storage(&bootstrapper.params, bootstrapper.config.galois_key_storage);
            evaluation.insert_galois(g, key);
        }
        let encapsulation =
            self.gen_encapsulation_keys(sk, bootstrapper.config.ephemeral_hamming_weight)?;
        Ok(BootstrappingKeys {
            evaluation: Arc::new(evaluation),
            encapsulation,
        })
    }
}

#[cfg(test)]
mod tests;
