//! Bootstrapping end to end with small, explicitly insecure rings (the
//! N = 2^16 presets are measured by `precis bench bootstrap`).

use super::presets::Preset;
use super::*;
use crate::ckks::precision::precision_real;
use crate::ckks::{
    Decryptor, DigitSplit, Encryptor, KeyStorage, ParametersLiteral, SecretDistribution,
};

/// A chain shaped like the presets, at a small ring degree.
fn small(log_n: u32, config: &BootstrapConfig, circuit_levels: usize) -> Parameters {
    let mut log_q = vec![60];
    log_q.extend(std::iter::repeat_n(40, circuit_levels));
    log_q.extend(std::iter::repeat_n(40, config.stc_levels));
    log_q.extend(std::iter::repeat_n(60, config.eval_mod_depth()));
    log_q.extend(std::iter::repeat_n(58, config.cts_levels));
    let dnum = log_q.len().div_ceil(6);
    Parameters::new(ParametersLiteral {
        log_n,
        log_q,
        log_p: vec![61; 6],
        log_scale: 40,
        digits: DigitSplit::Even(dnum),
        secret: SecretDistribution::Ternary,
        insecure: true,
    })
    .unwrap()
}

struct Setup {
    params: Parameters,
    sk: SecretKey,
    bs: Bootstrapper,
    keys: BootstrappingKeys,
}

fn setup(log_n: u32, config: BootstrapConfig, circuit_levels: usize) -> Setup {
    let params = small(log_n, &config, circuit_levels);
    let bs = Bootstrapper::new(&params, config).unwrap();
    let mut kg = KeyGenerator::new(&params).unwrap();
    let sk = kg.gen_secret_key();
    let keys = kg.gen_bootstrapping_keys(&sk, &bs).unwrap();
    Setup {
        params,
        sk,
        bs,
        keys,
    }
}

fn real_values(n: usize, salt: u64) -> Vec<f64> {
    crate::ckks::tests::values(n, salt)
        .iter()
        .map(|z| z.re)
        .collect()
}

impl Setup {
    fn encrypt_at(&self, v: &[f64], level: usize) -> Ciphertext {
        let pt = Encoder::new(&self.params)
            .encode_real(v, level, self.params.default_scale())
            .unwrap();
        Encryptor::with_secret_key(&self.params, &self.sk)
            .unwrap()
            .encrypt(&pt)
    }
    fn decrypt(&self, ct: &Ciphertext) -> Vec<Complex64> {
        Encoder::new(&self.params).decode(&Decryptor::new(&self.params, &self.sk).decrypt(ct))
    }
}

fn check(s: &Setup, salt: u64) -> f64 {
    let n = s.bs.contract().slots;
    let v = real_values(n, salt);
    let ct = s.encrypt_at(&v, 0);
    let out = s.bs.bootstrap(&s.keys, &ct).unwrap();
    assert_eq!(out.level(), s.bs.contract().output_level);
    assert_eq!(out.slots(), n);
    let got = s.decrypt(&out);
    let re: Vec<f64> = got.iter().map(|z| z.re).collect();
    let bits = precision_real(&v, &re).min_bits;
    let imag = got.iter().map(|z| z.im.abs()).fold(0.0, f64::max);
    assert!(imag < 2f64.powi(-20), "imaginary part 2^{:.1}", imag.log2());
    bits
}

#[test]
fn bootstraps_full_slots() {
    let s = setup(11, BootstrapConfig::new(10), 2);
    let c = s.bs.contract().clone();
    assert_eq!(c.output_level, 2);
    assert_eq!(c.minimum_input_level, 0);
    let bits = check(&s, 1);
    eprintln!(
        "full slots: {bits:.1} bits (contract {:.1})",
        c.output_precision_bits
    );
    assert!(bits >= 20.0, "{bits:.1} bits");
    assert!(bits >= c.output_precision_bits, "below the contract");
}

#[test]
fn bootstraps_sparse_slots() {
    for log_slots in [4u32, 7] {
        let s = setup(11, BootstrapConfig::new(log_slots), 1);
        let bits = check(&s, log_slots as u64);
        let stated = s.bs.contract().output_precision_bits;
        eprintln!("2^{log_slots} slots: {bits:.1} bits (contract {stated:.1})");
        assert!(bits >= 20.0, "2^{log_slots} slots: {bits:.1} bits");
        assert!(bits >= stated, "below the contract");
    }
}

#[test]
fn chained_bootstraps_keep_precision() {
    // Three bootstraps with a multiplication between each: x ↦ x·x mixes
    // the error in, so the reference follows the same products.
    let s = setup(11, BootstrapConfig::new(9), 2);
    let n = s.bs.contract().slots;
    let v = real_values(n, 11);
    let eval = Evaluator::new(&s.params, Some(s.keys.evaluation.clone()));
    let mut ct = s.encrypt_at(&v, 0);
    let mut want = v.clone();
    for round in 0..3 {
        ct = s.bs.bootstrap(&s.keys, &ct).unwrap();
        let got: Vec<f64> = s.decrypt(&ct).iter().map(|z| z.re).collect();
        let bits = precision_real(&want, &got).min_bits;
        let stated = s.bs.contract().output_precision_bits;
        eprintln!("bootstrap {round}: {bits:.1} bits (contract {stated:.1})");
        assert!(
            bits >= 20.0 && bits >= stated,
            "round {round}: {bits:.1} bits"
        );
        // Continue from what was decrypted (the reference tracks the ciphertext,
        // so each round's precision is its own), multiplying by a constant-
        // magnitude factor that keeps values in [−1, 1].
        ct = eval.mul_relin_rescale(&ct, &ct).unwrap();
        want = got.iter().map(|x| x * x).collect();
        ct = eval.drop_level(&ct, 0);
    }
}

#[test]
fn only_the_needed_galois_keys_are_generated() {
    let s = setup(10, BootstrapConfig::new(5), 1);
    let mut want = s.bs.galois_elements();
    want.sort();
    let mut have = s.keys.evaluation.galois_elements();
    have.sort();
    assert_eq!(want, have);
    assert!(s.keys.evaluation.has_relinearization_key());
    // Each key reaches exactly the level it is used at: keys only SlotToCoeff
    // uses (sparse packing has such) are truncated, the others are not.
    let levels = s.bs.galois_key_levels();
    let top = s.bs.params().max_level();
    for (g, key) in &s.keys.evaluation.galois {
        assert_eq!(key.level(), levels[g], "element {g}");
    }
    assert!(levels.values().any(|&l| l < top), "some key is truncated");
    assert_eq!(s.bs.key_bytes(), s.keys.size_bytes());
    assert!(levels.values().any(|&l| l == top));
    // A truncated key refuses a ciphertext above its level (no panic).
    let (&g, &level) = levels.iter().find(|(_, &l)| l < top).unwrap();
    let eval = Evaluator::new(s.bs.params(), Some(s.keys.evaluation.clone()));
    let ct = s.encrypt_at(&real_values(32, 2), level + 1);
    let err = eval.apply_galois(&ct, g).unwrap_err().to_string();
    assert!(err.contains(&format!("reaches level {level}")), "{err}");
    assert!(eval.apply_galois(&eval.drop_level(&ct, level), g).is_ok());
    // Truncated keys survive a save/load round trip.
    let mut buf = Vec::new();
    crate::ckks::serialize::save_evaluation_keys(s.bs.params(), &s.keys.evaluation, &mut buf)
        .unwrap();
    let back =
        crate::ckks::serialize::load_evaluation_keys(s.bs.params(), &mut buf.as_slice()).unwrap();
    assert_eq!(&back, s.keys.evaluation.as_ref());
}

#[test]
fn seeded_galois_keys_bootstrap_alike_in_half_the_memory() {
    use crate::ckks::serialize::{load_bootstrapping_keys, save_bootstrapping_keys};
    let mut config = BootstrapConfig::new(9);
    config.galois_key_storage = KeyStorage::Seeded;
    let mut s = setup(10, config, 1);
    let galois = &s.keys.evaluation.galois;
    assert!(galois.values().all(|k| k.storage() == KeyStorage::Seeded));
    assert_eq!(s.bs.key_bytes(), s.keys.size_bytes());
    let mut expanded = BootstrapConfig::new(9);
    expanded.galois_key_storage = KeyStorage::Expanded;
    let full = Bootstrapper::new(&s.params, expanded).unwrap().key_bytes();
    // Galois keys: half the bytes (plus 32 per digit either way).
    let seeded: usize = galois.values().map(|k| k.size_bytes()).sum();
    let seeds: usize = galois.values().map(|k| 32 * k.seeds.len()).sum();
    let others = s.keys.size_bytes() - seeded;
    assert_eq!(full - others - seeds, 2 * (seeded - seeds));
    let bits = check(&s, 3);
    assert!(
        bits >= s.bs.contract().output_precision_bits,
        "{bits:.1} bits"
    );
    // The file records the storage; loading keeps the keys seeded.
    let mut file = Vec::new();
    save_bootstrapping_keys(&s.params, &s.keys, &mut file).unwrap();
    s.keys = load_bootstrapping_keys(&s.params, &mut file.as_slice()).unwrap();
    assert_eq!(s.bs.key_bytes(), s.keys.size_bytes());
    assert!(check(&s, 4) >= s.bs.contract().output_precision_bits);
}

#[test]
fn wrong_slot_count_and_short_chain_are_refused() {
    let s = setup(10, BootstrapConfig::new(5), 1);
    let ct = s.encrypt_at(&real_values(16, 1), 0);
    assert!(s.bs.bootstrap(&s.keys, &ct).is_err());
    let params = crate::ckks::tests::test_params(10, 3, 1);
    assert!(Bootstrapper::new(&params, BootstrapConfig::new(5)).is_err());
}

#[test]
fn presets_are_secure_and_leave_the_promised_levels() {
    for p in Preset::ALL {
        let (literal, config) = p.build(15);
        let params = Parameters::new(literal).expect("128-bit secure");
        assert!(params.is_secure());
        assert_eq!(params.max_level() - config.depth(), p.circuit_levels());
        // Every digit (times its prime count, ModUp's overflow) the
        // headroom below P, and the circuit levels in the fewest digits.
        let log2 = |v: &[u64]| v.iter().map(|&x| (x as f64).log2()).sum::<f64>();
        let log_p = log2(params.p());
        for d in params.digits() {
            let bits = log2(&params.q()[d.clone()]) + (d.len() as f64).log2();
            assert!(
                bits <= log_p - crate::ckks::params::FILL_P_HEADROOM_BITS,
                "{}: {d:?}",
                p.name()
            );
        }
        let circuit_top = p.circuit_levels();
        let circuit_digits = crate::ckks::keys::digits_up_to(&params, circuit_top).len();
        let (total, circuit) = match p {
            Preset::Levels9 => (4, 2),
            Preset::Levels16 => (8, 3),
            Preset::InsecureN11 => unreachable!(),
        };
        assert_eq!(
            (params.digits().len(), circuit_digits),
            (total, circuit),
            "{}",
            p.name()
        );
        eprintln!(
            "{}: log QP = {:.1}, {} Q primes, dnum {}, depth {}",
            p.name(),
            params.log_qp(),
            params.q().len(),
            params.digits().len(),
            config.depth()
        );
    }
}

#[test]
fn inputs_with_a_computed_scale_keep_precision() {
    // A product leaves a scale of Δ²/q, not a power of two; the pre-scaling
    // integer and the output scale must account for it exactly.
    let s = setup(11, BootstrapConfig::new(9), 2);
    let n = s.bs.contract().slots;
    let eval = Evaluator::new(&s.params, Some(s.keys.evaluation.clone()));
    let v = real_values(n, 5);
    let ct = s.encrypt_at(&v, 2);
    let one = s.encrypt_at(&vec![1.0; n], 2);
    let prod = eval.drop_level(&eval.mul_relin_rescale(&ct, &one).unwrap(), 0);
    assert!((prod.scale() / s.params.default_scale() - 1.0).abs() > 1e-9);
    let want: Vec<f64> = s.decrypt(&prod).iter().map(|z| z.re).collect();
    let out = s.bs.bootstrap(&s.keys, &prod).unwrap();
    let got: Vec<f64> = s.decrypt(&out).iter().map(|z| z.re).collect();
    let bits = precision_real(&want, &got).min_bits;
    assert!(
        bits >= 20.0 && bits >= s.bs.contract().output_precision_bits,
        "{bits:.1} bits"
    );
}

#[test]
fn bootstrapping_keys_survive_a_file_round_trip() {
    use crate::ckks::serialize::{
        load_bootstrapping_keys, load_evaluation_keys, save_bootstrapping_keys,
    };
    let mut s = setup(10, BootstrapConfig::new(5), 1);
    let mut file = Vec::new();
    save_bootstrapping_keys(&s.params, &s.keys, &mut file).unwrap();
    s.keys = load_bootstrapping_keys(&s.params, &mut file.as_slice()).unwrap();
    let bits = check(&s, 7);
    assert!(
        bits >= s.bs.contract().output_precision_bits,
        "{bits:.1} bits"
    );
    // The wrong kind, a flipped byte and a truncation are refused by name.
    let err = load_evaluation_keys(&s.params, &mut file.as_slice())
        .unwrap_err()
        .to_string();
    assert!(err.contains("bootstrapping keys"), "{err}");
    let mut corrupt = file.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 1;
    let err = load_bootstrapping_keys(&s.params, &mut corrupt.as_slice())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("checksum"), "{err}");
    let err = load_bootstrapping_keys(&s.params, &mut &file[..file.len() - 100])
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("truncated"), "{err}");
}

/// At a 2^36 output scale (the `levels16` preset's) the output roundings
/// dominate and their slot errors are heavy-tailed (a rounding times the
/// secret, both slot values): the contract must still hold.
#[test]
fn bootstraps_at_a_36_bit_output_scale_keep_the_contract() {
    let mut lifted = None;
    for output_log_scale in [None, Some(40)] {
        let mut config = BootstrapConfig::new(11);
        config.output_log_scale = output_log_scale;
        let bits = bootstrap_on_36_bit_primes(config);
        if let Some(plain) = lifted {
            // Output at 2^40 on the same 36-bit chain: the roundings shrink.
            assert!(bits > plain + 1.0, "{bits:.1} vs {plain:.1} bits");
        }
        lifted = Some(bits);
    }
}

/// Bootstraps twice on a chain of 36-bit circuit primes; the worst precision.
fn bootstrap_on_36_bit_primes(config: BootstrapConfig) -> f64 {
    let mut log_q = vec![60];
    log_q.extend(std::iter::repeat_n(36, 2 + config.stc_levels));
    log_q.extend(std::iter::repeat_n(60, config.eval_mod_depth()));
    log_q.extend(std::iter::repeat_n(56, config.cts_levels));
    let dnum = log_q.len().div_ceil(3);
    let params = Parameters::new(ParametersLiteral {
        log_n: 12,
        log_q,
        log_p: vec![61; 3],
        log_scale: 36,
        digits: DigitSplit::Even(dnum),
        secret: SecretDistribution::Ternary,
        insecure: true,
    })
    .unwrap();
    let bs = Bootstrapper::new(&params, config).unwrap();
    let mut kg = KeyGenerator::new(&params).unwrap();
    let sk = kg.gen_secret_key();
    let keys = kg.gen_bootstrapping_keys(&sk, &bs).unwrap();
    let s = Setup {
        params,
        sk,
        bs,
        keys,
    };
    let contract = s.bs.contract().clone();
    let mut worst = f64::INFINITY;
    for salt in 0..2 {
        let v = real_values(contract.slots, 50 + salt);
        let out = s.bs.bootstrap(&s.keys, &s.encrypt_at(&v, 0)).unwrap();
        assert!((out.scale() / contract.output_scale - 1.0).abs() < 1e-9);
        let bits = check(&s, 50 + salt);
        eprintln!(
            "output scale 2^{:.0} on 36-bit primes: {bits:.1} bits (contract {:.1})",
            contract.output_scale.log2(),
            contract.output_precision_bits
        );
        assert!(
            bits >= contract.output_precision_bits,
            "{bits:.2} bits below the contract"
        );
        worst = worst.min(bits);
    }
    worst
}
