//! End-to-end tests of the CKKS backend with small, explicitly insecure parameters.

use super::keys::galois_element_for_rotation;
use super::precision::{precision, precision_real};
use super::*;
use std::sync::Arc;

pub(crate) fn test_params(log_n: u32, levels: usize, dnum: usize) -> Parameters {
    let mut log_q = vec![55];
    log_q.extend(std::iter::repeat_n(40, levels));
    // Enough 61-bit special primes to exceed the largest digit.
    let digit = log_q.len().div_ceil(dnum); // the first digit is the largest
    let digit_bits = 55 + 40 * (digit as u32 - 1);
    let log_p = vec![61; digit_bits.div_ceil(60) as usize];
    Parameters::new(ParametersLiteral {
        log_n,
        log_q,
        log_p,
        log_scale: 40,
        digits: DigitSplit::Even(dnum),
        secret: SecretDistribution::Ternary,
        insecure: true,
    })
    .unwrap()
}

pub(crate) struct Ctx {
    pub params: Parameters,
    pub sk: SecretKey,
    pub pk: PublicKey,
    pub enc: Encoder,
    pub eval: Evaluator,
}

pub(crate) fn setup(log_n: u32, levels: usize, dnum: usize, rotations: &[i64]) -> Ctx {
    let params = test_params(log_n, levels, dnum);
    let mut kg = KeyGenerator::new(&params).unwrap();
    let sk = kg.gen_secret_key();
    let pk = kg.gen_public_key(&sk);
    let keys = kg.gen_evaluation_keys(&sk, rotations, true);
    Ctx {
        enc: Encoder::new(&params),
        eval: Evaluator::new(&params, Some(Arc::new(keys))),
        params,
        sk,
        pk,
    }
}

/// Deterministic pseudo-random complex values in the unit square.
pub(crate) fn values(n: usize, salt: u64) -> Vec<Complex64> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64 ^ salt;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    (0..n).map(|_| Complex64::new(next(), next())).collect()
}

impl Ctx {
    pub fn encrypt(&self, v: &[Complex64]) -> Ciphertext {
        let pt = self
            .enc
            .encode(v, self.params.max_level(), self.params.default_scale())
            .unwrap();
        Encryptor::with_public_key(&self.params, &self.pk)
            .unwrap()
            .encrypt(&pt)
    }
    pub fn decrypt(&self, ct: &Ciphertext) -> Vec<Complex64> {
        self.enc
            .decode(&Decryptor::new(&self.params, &self.sk).decrypt(ct))
    }
}

#[test]
fn ckks_encode_decode_full_and_sparse() {
    let params = test_params(12, 2, 1);
    let enc = Encoder::new(&params);
    for slots in [1usize, 4, 64, 2048] {
        let v = values(slots, slots as u64);
        let pt = enc
            .encode(&v, params.max_level(), params.default_scale())
            .unwrap();
        let p = precision(&v, &enc.decode(&pt));
        // Rounding at scale 2^40 leaves ≈ 2^-41 per coefficient, ≈ √N·2^-41 per slot.
        assert!(bits(&p) >= 32.0, "{slots} slots: {p:?}");
    }
    let r: Vec<f64> = (0..2048).map(|i| (i as f64 / 100.0).sin()).collect();
    let pt = enc.encode_real(&r, 0, 2f64.powi(30)).unwrap();
    let p = precision_real(&r, &enc.decode_real(&pt));
    // Scale 2^30: ≈ √N·2^-31 ≈ 2^-25 per slot, 2^-23 at worst.
    assert!(bits(&p) >= 21.0, "{p:?}");
    assert!(
        enc.encode(&values(3, 0), 0, 1e10).is_err(),
        "non power of two"
    );
}

#[test]
fn ckks_encrypt_decrypt_public_and_secret_key() {
    let c = setup(12, 2, 1, &[]);
    let v = values(2048, 1);
    let p = precision(&v, &c.decrypt(&c.encrypt(&v)));
    // Fresh noise ≈ σ·√N·(‖s‖+2) ≪ 2^40·2^-25.
    assert!(bits(&p) >= 25.0, "public key: {p:?}");
    let pt = c.enc.encode(&v, 1, c.params.default_scale()).unwrap();
    let ct = Encryptor::with_secret_key(&c.params, &c.sk)
        .unwrap()
        .encrypt(&pt);
    assert!(ct.seed.is_some());
    let p = precision(&v, &c.decrypt(&ct));
    assert!(bits(&p) >= 28.0, "secret key: {p:?}");
}

#[test]
fn ckks_wrong_key_decrypts_to_garbage() {
    let c = setup(12, 2, 1, &[]);
    let v = values(2048, 2);
    let ct = c.encrypt(&v);
    let other = KeyGenerator::new(&c.params).unwrap().gen_secret_key();
    let got = c
        .enc
        .decode(&Decryptor::new(&c.params, &other).decrypt(&ct));
    let p = precision(&v, &got);
    assert!(
        p.max_error.is_nan() || p.max_error >= 1.0,
        "decryption under a wrong key must fail: {p:?}"
    );
}

#[test]
fn ckks_multiply_relinearize_rescale() {
    for dnum in [1, 3] {
        let c = setup(12, 3, dnum, &[]);
        let (a, b) = (values(2048, 3), values(2048, 4));
        let want: Vec<Complex64> = a.iter().zip(&b).map(|(x, y)| x * y).collect();
        let ct = c
            .eval
            .mul_relin_rescale(&c.encrypt(&a), &c.encrypt(&b))
            .unwrap();
        assert_eq!(ct.level(), 2);
        let p = precision(&want, &c.decrypt(&ct));
        // Stated bound: ≥ 25 bits for one multiplication at scale 2^40.
        assert!(bits(&p) >= 25.0, "dnum {dnum}: {p:?}");
        // A second multiplication (squaring) keeps ≥ 23 bits.
        let sq = c.eval.mul_relin_rescale(&ct, &ct).unwrap();
        let want2: Vec<Complex64> = want.iter().map(|x| x * x).collect();
        let p = precision(&want2, &c.decrypt(&sq));
        assert!(bits(&p) >= 23.0, "dnum {dnum} square: {p:?}");
    }
}

#[test]
fn ckks_plain_and_constant_arithmetic() {
    let c = setup(11, 2, 1, &[]);
    let (a, b) = (values(1024, 5), values(1024, 6));
    let (ca, cb) = (c.encrypt(&a), c.encrypt(&b));
    let e = &c.eval;
    let sum = e.add(&ca, &cb).unwrap();
    let diff = e.sub(&ca, &cb).unwrap();
    let neg = e.neg(&ca);
    let top = c.params.max_level();
    let pb = c.enc.encode(&b, top, c.params.q()[top] as f64).unwrap();
    let pm = e.rescale(&e.mul_plain(&ca, &pb).unwrap()).unwrap();
    let cm = e
        .rescale(&e.mul_const(&ca, -1.75, c.params.q()[top] as f64).unwrap())
        .unwrap();
    let ac = e.add_const(&ca, 0.5).unwrap();
    let checks: Vec<(&str, Ciphertext, Vec<Complex64>)> = vec![
        ("add", sum, a.iter().zip(&b).map(|(x, y)| x + y).collect()),
        ("sub", diff, a.iter().zip(&b).map(|(x, y)| x - y).collect()),
        ("neg", neg, a.iter().map(|x| -x).collect()),
        (
            "mul_plain",
            pm,
            a.iter().zip(&b).map(|(x, y)| x * y).collect(),
        ),
        ("mul_const", cm, a.iter().map(|x| x * -1.75).collect()),
        ("add_const", ac, a.iter().map(|x| x + 0.5).collect()),
    ];
    for (name, ct, want) in checks {
        let p = precision(&want, &c.decrypt(&ct));
        assert!(bits(&p) >= 25.0, "{name}: {p:?}");
    }
    // Exact scale bookkeeping: multiplying by a constant at scale q_ℓ then rescaling keeps the scale.
    let cm = e
        .rescale(&e.mul_const(&ca, 3.0, c.params.q()[top] as f64).unwrap())
        .unwrap();
    assert_eq!(cm.scale(), ca.scale());
    assert!(
        e.add(&ca, &e.mul_relin(&ca, &cb).unwrap()).is_err(),
        "scale mismatch must be refused"
    );
}

#[test]
fn ckks_rotation_conjugation_and_hoisting() {
    let rots = [1i64, 2, 5, -1, 100, 1023];
    for dnum in [1, 2] {
        let c = setup(11, 2, dnum, &rots);
        let v = values(512, 7);
        let ct = c.encrypt(&v);
        let n = v.len() as i64;
        let hoisted = c.eval.rotate_hoisted(&ct, &rots).unwrap();
        for (&k, h) in rots.iter().zip(&hoisted) {
            let want: Vec<Complex64> = (0..n).map(|i| v[(i + k).rem_euclid(n) as usize]).collect();
            let p = precision(&want, &c.decrypt(&c.eval.rotate(&ct, k).unwrap()));
            assert!(bits(&p) >= 25.0, "rotate {k}: {p:?}");
            let p = precision(&want, &c.decrypt(h));
            assert!(bits(&p) >= 25.0, "hoisted rotate {k}: {p:?}");
        }
        let want: Vec<Complex64> = v.iter().map(|x| x.conj()).collect();
        let p = precision(&want, &c.decrypt(&c.eval.conjugate(&ct).unwrap()));
        assert!(bits(&p) >= 25.0, "conjugate: {p:?}");
        let missing = galois_element_for_rotation(c.params.n(), 3);
        assert!(matches!(
            c.eval.apply_galois(&ct, missing),
            Err(CkksError::MissingKey(_))
        ));
    }
}

#[test]
fn ckks_seeded_keys_switch_exactly_like_expanded_ones() {
    // Regenerating a_j chunk by chunk inside the key switch must give the
    // very same ciphertexts: plain and hoisted rotations (permuted inner
    // product), conjugation, and relinearisation (unpermuted), at the top
    // level and below it (keys hold more limbs than the ciphertext).
    let rots = [1i64, 7, -3];
    let c = setup(12, 3, 2, &rots);
    let mut seeded = c.eval.keys().unwrap().clone();
    seeded.set_galois_storage(&c.params, KeyStorage::Seeded);
    seeded
        .relin
        .as_mut()
        .unwrap()
        .set_storage(&c.params, KeyStorage::Seeded);
    let before: usize = seeded.galois.values().map(|k| k.size_bytes()).sum();
    let expanded: usize = c
        .eval
        .keys()
        .unwrap()
        .galois
        .values()
        .map(|k| k.size_bytes())
        .sum();
    assert!(before * 2 < expanded + 4096, "{before} vs {expanded} bytes");
    let ev = Evaluator::new(&c.params, Some(Arc::new(seeded.clone())));
    let ct = c.encrypt(&values(2048, 3));
    for ct in [ct.clone(), c.eval.drop_level(&ct, 1)] {
        for &k in &rots {
            assert_eq!(ev.rotate(&ct, k).unwrap(), c.eval.rotate(&ct, k).unwrap());
        }
        assert_eq!(
            ev.rotate_hoisted(&ct, &rots).unwrap(),
            c.eval.rotate_hoisted(&ct, &rots).unwrap()
        );
        assert_eq!(ev.conjugate(&ct).unwrap(), c.eval.conjugate(&ct).unwrap());
        assert_eq!(
            ev.mul_relin_rescale(&ct, &ct).unwrap(),
            c.eval.mul_relin_rescale(&ct, &ct).unwrap()
        );
    }
    // Expanding again restores the original keys.
    seeded.set_galois_storage(&c.params, KeyStorage::Expanded);
    assert_eq!(
        seeded.galois,
        c.eval.keys().unwrap().galois,
        "re-expanded from the seeds"
    );
}

#[test]
fn ckks_insecure_parameters_are_refused_by_default() {
    let lit = ParametersLiteral {
        log_n: 12,
        log_q: vec![55, 40, 40],
        log_p: vec![61, 61, 61],
        log_scale: 40,
        digits: DigitSplit::Even(1),
        secret: SecretDistribution::Ternary,
        insecure: false,
    };
    // log2(QP) ≈ 318 > 109 allowed at N = 2^12.
    assert!(matches!(
        Parameters::new(lit.clone()),
        Err(CkksError::Insecure(_))
    ));
    let ok = Parameters::new(ParametersLiteral {
        insecure: true,
        ..lit.clone()
    })
    .unwrap();
    assert!(!ok.is_secure());
    // A secure set: N = 2^13, log2(QP) ≈ 190 ≤ 218.
    let secure = Parameters::new(ParametersLiteral {
        log_n: 13,
        log_q: vec![50, 40, 40],
        log_p: vec![60],
        digits: DigitSplit::Even(3),
        ..lit.clone()
    })
    .unwrap();
    assert!(secure.is_secure());
    // A sparse secret below the accepted weight is refused too.
    let sparse = ParametersLiteral {
        log_n: 13,
        log_q: vec![50, 40, 40],
        log_p: vec![60],
        digits: DigitSplit::Even(3),
        secret: SecretDistribution::FixedHammingWeight(64),
        ..lit
    };
    assert!(matches!(
        Parameters::new(sparse),
        Err(CkksError::Insecure(_))
    ));
}

#[test]
fn ckks_sparse_secrets_are_held_to_the_sparse_bound() {
    use super::params::{max_log_qp_128, max_log_qp_128_sparse};
    // N = 2^16, 60 + 24×50-bit Q primes and five 60-bit specials: log2(QP)
    // ≈ 1560, above the h = 192 bound (1553) and below the dense one (1772).
    let above = ParametersLiteral {
        log_n: 16,
        log_q: std::iter::once(60)
            .chain(std::iter::repeat_n(50, 24))
            .collect(),
        log_p: vec![60; 5],
        log_scale: 50,
        digits: DigitSplit::Even(5),
        secret: SecretDistribution::FixedHammingWeight(192),
        insecure: false,
    };
    let dense = Parameters::new(ParametersLiteral {
        secret: SecretDistribution::Ternary,
        ..above.clone()
    })
    .unwrap();
    let log_qp = dense.log_qp();
    assert!(
        log_qp > max_log_qp_128_sparse(16).unwrap() && log_qp <= max_log_qp_128(16).unwrap(),
        "{log_qp}"
    );
    assert!(dense.is_secure(), "passes the dense bound");
    for h in [192, 256, 4096] {
        let sparse = ParametersLiteral {
            secret: SecretDistribution::FixedHammingWeight(h),
            ..above.clone()
        };
        match Parameters::new(sparse.clone()) {
            Err(CkksError::Insecure(m)) => {
                assert!(m.contains("1553") && m.contains("sparse"), "{m}")
            }
            other => panic!("h = {h}: {other:?}"),
        }
        let flagged = Parameters::new(ParametersLiteral {
            insecure: true,
            ..sparse
        })
        .unwrap();
        assert!(!flagged.is_secure(), "h = {h}");
    }
    // Ten bits less (the last Q prime of 40 bits): within the sparse bound.
    let mut below = above.clone();
    *below.log_q.last_mut().unwrap() = 40;
    let ok = Parameters::new(below).unwrap();
    assert!(ok.log_qp() <= 1553.0 && ok.is_secure(), "{}", ok.log_qp());
    // No published sparse bound below N = 2^15: refused, however small QP.
    let small = ParametersLiteral {
        log_n: 14,
        log_q: vec![50, 40],
        log_p: vec![60],
        log_scale: 40,
        digits: DigitSplit::Even(2),
        secret: SecretDistribution::FixedHammingWeight(192),
        insecure: false,
    };
    match Parameters::new(small.clone()) {
        Err(CkksError::Insecure(m)) => assert!(m.contains("no published"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(Parameters::new(ParametersLiteral {
        secret: SecretDistribution::Ternary,
        ..small
    })
    .unwrap()
    .is_secure());
}

#[test]
fn ckks_benchmark_parameters_meet_128_bit_security() {
    // The benchmark set (N = 2^16, 25 Q limbs of 60 + 24×50 bits) with the
    // special primes it uses must pass without the insecure flag.
    let p = crate::ckks::params::Parameters::new(ParametersLiteral {
        log_n: 16,
        log_q: std::iter::once(60)
            .chain(std::iter::repeat_n(50, 24))
            .collect(),
        log_p: vec![60; 5],
        log_scale: 50,
        digits: DigitSplit::Even(5),
        secret: SecretDistribution::Ternary,
        insecure: false,
    });
    let p = p.unwrap();
    assert!(p.log_qp() <= 1772.0, "{}", p.log_qp());
}

#[test]
fn ckks_serialization_round_trips() {
    use super::serialize::*;
    let c = setup(11, 2, 2, &[1]);
    let mut kg = KeyGenerator::new(&c.params).unwrap();
    let keys = kg.gen_evaluation_keys(&c.sk, &[1], false);

    let mut buf = Vec::new();
    save_parameters(&c.params, &mut buf).unwrap();
    // These test parameters are insecure: loading them needs the opt-in.
    assert!(matches!(
        load_parameters(&mut buf.as_slice(), false),
        Err(CkksError::Insecure(_))
    ));
    let params = load_parameters(&mut buf.as_slice(), true).unwrap();
    assert_eq!(params, c.params);

    let mut buf = Vec::new();
    save_secret_key(&c.params, &c.sk, &mut buf).unwrap();
    let sk = load_secret_key(&c.params, &mut buf.as_slice()).unwrap();
    assert_eq!(sk.ntt, c.sk.ntt);

    let mut buf = Vec::new();
    save_public_key(&c.params, &c.pk, &mut buf).unwrap();
    assert_eq!(
        load_public_key(&c.params, &mut buf.as_slice()).unwrap(),
        c.pk
    );

    let mut buf = Vec::new();
    save_evaluation_keys(&c.params, &keys, &mut buf).unwrap();
    let words = c.params.n() * (c.params.q().len() + c.params.p().len());
    let key_count = 2 * c.params.digits().len(); // relin + one Galois key
    assert!(
        buf.len() < key_count * words * 8 + 4096,
        "seeded a: about half size"
    );
    assert_eq!(
        load_evaluation_keys(&c.params, &mut buf.as_slice()).unwrap(),
        keys
    );
    // Seeded keys load seeded, and write the same file.
    let mut compact = keys.clone();
    compact.set_galois_storage(&c.params, KeyStorage::Seeded);
    let mut buf2 = Vec::new();
    save_evaluation_keys(&c.params, &compact, &mut buf2).unwrap();
    assert_eq!(buf2.len(), buf.len());
    let back = load_evaluation_keys(&c.params, &mut buf2.as_slice()).unwrap();
    assert!(back
        .galois
        .values()
        .all(|k| k.storage() == KeyStorage::Seeded));
    assert_eq!(back, compact);

    // Seeded (fresh secret-key) and full ciphertexts.
    let v = values(1024, 9);
    let pt = c.enc.encode(&v, 2, c.params.default_scale()).unwrap();
    let seeded = Encryptor::with_secret_key(&c.params, &c.sk)
        .unwrap()
        .encrypt(&pt);
    let full = c.eval.rotate(&seeded, 1).unwrap();
    let (mut b1, mut b2) = (Vec::new(), Vec::new());
    save_ciphertext(&c.params, &seeded, &mut b1).unwrap();
    save_ciphertext(&c.params, &full, &mut b2).unwrap();
    assert!(
        b1.len() * 10 < b2.len() * 6,
        "seeded ciphertext about half size"
    );
    assert_eq!(
        load_ciphertext(&c.params, &mut b1.as_slice()).unwrap(),
        seeded
    );
    let back = load_ciphertext(&c.params, &mut b2.as_slice()).unwrap();
    assert_eq!(back, full);
    let want: Vec<Complex64> = (0..1024).map(|i| v[(i + 1) % 1024]).collect();
    assert!(precision(&want, &c.decrypt(&back)).min_bits >= 25.0);
}

#[test]
fn ckks_corrupted_or_misused_files_are_rejected() {
    use super::serialize::*;
    let c = setup(10, 1, 1, &[]);
    let ct = c.encrypt(&values(512, 10));
    let mut buf = Vec::new();
    save_ciphertext(&c.params, &ct, &mut buf).unwrap();
    let err = |r: Result<Ciphertext, CkksError>| match r {
        Err(CkksError::Format(m)) => m,
        other => panic!("expected a format error, got {other:?}"),
    };
    let m = err(load_ciphertext(&c.params, &mut &buf[..buf.len() - 100]));
    assert!(m.contains("truncated"), "{m}");
    let m = err(load_ciphertext(&c.params, &mut &buf[..10]));
    assert!(m.contains("truncated"), "{m}");
    for pos in [3, 25, buf.len() / 2, buf.len() - 1] {
        let mut bad = buf.clone();
        bad[pos] ^= 0x10;
        assert!(
            load_ciphertext(&c.params, &mut bad.as_slice()).is_err(),
            "flip at {pos}"
        );
    }
    let mut bad = buf.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    assert!(err(load_ciphertext(&c.params, &mut bad.as_slice())).contains("checksum"));

    // A secret key can never be read as evaluation keys (nor a public key).
    let mut skb = Vec::new();
    save_secret_key(&c.params, &c.sk, &mut skb).unwrap();
    match load_evaluation_keys(&c.params, &mut skb.as_slice()) {
        Err(CkksError::Format(m)) => assert!(m.contains("SECRET"), "{m}"),
        _ => panic!("secret key accepted as evaluation keys"),
    }
    assert!(load_public_key(&c.params, &mut skb.as_slice()).is_err());

    // A corrupted public key is refused by its checksum.
    let mut pkb = Vec::new();
    save_public_key(&c.params, &c.pk, &mut pkb).unwrap();
    let last = pkb.len() - 40;
    pkb[last] ^= 0x80;
    match load_public_key(&c.params, &mut pkb.as_slice()) {
        Err(CkksError::Format(m)) => assert!(m.contains("checksum"), "{m}"),
        _ => panic!("corrupted public key accepted"),
    }

    // A truncated evaluation-key file is rejected too.
    let keys = KeyGenerator::new(&c.params)
        .unwrap()
        .gen_evaluation_keys(&c.sk, &[], false);
    let mut kb = Vec::new();
    save_evaluation_keys(&c.params, &keys, &mut kb).unwrap();
    assert!(matches!(
        load_evaluation_keys(&c.params, &mut &kb[..kb.len() / 3]),
        Err(CkksError::Format(_))
    ));

    // Files made under other parameters are refused.
    let other = test_params(10, 2, 1);
    assert!(err(load_ciphertext(&other, &mut buf.as_slice())).contains("different CKKS parameters"));
}

#[test]
fn ckks_linear_transform_bsgs_matches_matrix_vector_product() {
    use super::circuits::LinearTransform;
    let slots = 64;
    // A dense random matrix (all 64 diagonals): BSGS with 8 baby and 8 giant steps.
    let rows: Vec<Vec<Complex64>> = (0..slots).map(|r| values(slots, 100 + r as u64)).collect();
    let params = test_params(11, 2, 1);
    let enc = Encoder::new(&params);
    let top = params.max_level();
    let lt = LinearTransform::from_matrix(&enc, &rows, top, params.q()[top] as f64, None).unwrap();
    assert_eq!(lt.baby_steps(), 8);
    let mut kg = KeyGenerator::new(&params).unwrap();
    let sk = kg.gen_secret_key();
    let keys = kg.gen_evaluation_keys(&sk, &lt.rotations(), false);
    assert_eq!(lt.rotations().len(), 14);
    let eval = Evaluator::new(&params, Some(Arc::new(keys)));
    let v = values(slots, 11);
    let pt = enc.encode(&v, top, params.default_scale()).unwrap();
    let ct = Encryptor::with_secret_key(&params, &sk)
        .unwrap()
        .encrypt(&pt);
    let out = eval
        .rescale(&eval.linear_transform(&ct, &lt).unwrap())
        .unwrap();
    assert_eq!(
        out.scale(),
        ct.scale() * params.q()[top] as f64 / params.q()[top] as f64
    );
    let want: Vec<Complex64> = rows
        .iter()
        .map(|r| r.iter().zip(&v).map(|(a, b)| a * b).sum())
        .collect();
    let got = enc.decode(&Decryptor::new(&params, &sk).decrypt(&out));
    let p = precision(&want, &got);
    // 64 products of unit-size entries: values up to ~8, noise grows by ~√64.
    assert!(bits(&p) >= 20.0, "{p:?}");

    // The compact form of the same diagonals gives the same ciphertext.
    let diags: std::collections::BTreeMap<usize, Vec<Complex64>> = (0..slots)
        .map(|k| (k, (0..slots).map(|t| rows[t][(t + k) % slots]).collect()))
        .collect();
    let compact =
        LinearTransform::new_compact(&enc, &diags, slots, top, params.q()[top] as f64, None)
            .unwrap();
    assert!(compact.size_bytes() * 4 < lt.size_bytes());
    assert_eq!(compact.rotations(), lt.rotations());
    let again = eval
        .rescale(&eval.linear_transform(&ct, &compact).unwrap())
        .unwrap();
    assert_eq!(again, out);

    // A ciphertext below the transform's level: both forms drop to it.
    let low = eval.drop_level(&ct, top - 1);
    let out_low = eval
        .rescale(&eval.linear_transform(&low, &lt).unwrap())
        .unwrap();
    let got_low = enc.decode(&Decryptor::new(&params, &sk).decrypt(&out_low));
    let p_low = precision(&want, &got_low);
    assert!(bits(&p_low) >= 20.0, "{p_low:?}");
    let again_low = eval
        .rescale(&eval.linear_transform(&low, &compact).unwrap())
        .unwrap();
    assert_eq!(again_low, out_low);

    // Both hoistings compute the same map to the same precision (their
    // roundings differ, so the ciphertexts do), at both levels.
    use super::circuits::Hoisting;
    for input in [&ct, &low] {
        for h in [Hoisting::Double, Hoisting::Single] {
            let y = eval
                .rescale(
                    &eval
                        .linear_transform_hoisted(input, &compact, Some(h))
                        .unwrap(),
                )
                .unwrap();
            assert_eq!(y.level(), input.level() - 1);
            let got = enc.decode(&Decryptor::new(&params, &sk).decrypt(&y));
            let p = precision(&want, &got);
            assert!(bits(&p) >= 20.0, "{h:?} at level {}: {p:?}", input.level());
        }
    }

    // A sum over two inputs shares the giant steps: M·v + M'·v' with M' a
    // subset of M's diagonals (its giant steps a subset too).
    let v2 = values(slots, 12);
    let ct2 = Encryptor::with_secret_key(&params, &sk)
        .unwrap()
        .encrypt(&enc.encode(&v2, top, params.default_scale()).unwrap());
    let sub: std::collections::BTreeMap<usize, Vec<Complex64>> = diags
        .iter()
        .filter(|(k, _)| *k % 3 == 0)
        .map(|(&k, d)| (k, d.clone()))
        .collect();
    let lt2 =
        LinearTransform::new_compact(&enc, &sub, slots, top, params.q()[top] as f64, None).unwrap();
    let want2: Vec<Complex64> = (0..slots)
        .map(|t| {
            want[t]
                + sub
                    .iter()
                    .map(|(&k, d)| d[t] * v2[(t + k) % slots])
                    .sum::<Complex64>()
        })
        .collect();
    for h in [Hoisting::Double, Hoisting::Single] {
        let y = eval
            .rescale(
                &eval
                    .linear_transform_sum(&[(&ct, &compact), (&ct2, &lt2)], Some(h))
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(y.scale(), out.scale());
        let got = enc.decode(&Decryptor::new(&params, &sk).decrypt(&y));
        let p = precision(&want2, &got);
        assert!(bits(&p) >= 19.0, "sum, {h:?}: {p:?}");
    }
    // Terms at different levels are refused.
    assert!(eval
        .linear_transform_sum(&[(&ct, &compact), (&low, &lt2)], None)
        .is_err());
}

#[test]
fn hoisting_is_chosen_by_the_limbs_it_saves() {
    use super::circuits::Hoisting;
    // A convolution-like transform: many diagonals per baby step.
    assert_eq!(Hoisting::choose(7, 9, 8, 16, 128), Hoisting::Single);
    // A dense DFT-like one at a high level: few diagonals per baby step.
    assert_eq!(Hoisting::choose(4, 32, 8, 8, 64), Hoisting::Double);
    // No special primes, nothing to save.
    assert_eq!(Hoisting::choose(0, 3, 1, 1, 100), Hoisting::Double);
}

#[test]
fn ckks_chebyshev_degree_27_polynomial() {
    use super::circuits::ChebyshevPoly;
    let c = setup(12, 7, 2, &[]);
    let f = |x: f64| (2.5 * x).sin() / (1.0 + x * x);
    let slots = 2048;
    let xs: Vec<f64> = (0..slots)
        .map(|i| -1.0 + 2.0 * i as f64 / (slots - 1) as f64)
        .collect();
    for (a, b, depth) in [(-1.0, 1.0, 5), (-4.0, 4.0, 6)] {
        let poly = ChebyshevPoly::interpolate(f, 27, a, b);
        assert_eq!(poly.degree(), 27);
        assert_eq!(
            poly.depth(),
            depth,
            "⌈log2(27+1)⌉ = 5, plus 1 for the affine map"
        );
        let inputs: Vec<f64> = xs
            .iter()
            .map(|x| 0.5 * (b - a) * x + 0.5 * (a + b))
            .collect();
        let zs: Vec<Complex64> = inputs.iter().map(|&x| Complex64::new(x, 0.0)).collect();
        let ct = c.encrypt(&zs);
        let target = c.params.default_scale();
        let out = c.eval.evaluate_chebyshev(&ct, &poly, target).unwrap();
        assert_eq!(out.scale(), target, "output scale is exact");
        assert_eq!(out.level(), ct.level() - depth);
        let want: Vec<f64> = inputs.iter().map(|&x| poly.evaluate(x)).collect();
        let got: Vec<f64> = c.decrypt(&out).iter().map(|z| z.re).collect();
        let p = precision_real(&want, &got);
        // Stated bound: ≥ 20 bits against the cleartext polynomial.
        assert!(bits(&p) >= 20.0, "[{a}, {b}]: {p:?}");
    }
}

/// Reports a precision measurement (visible with `--nocapture`) and returns its worst-slot bits.
fn bits(p: &super::precision::PrecisionStats) -> f64 {
    eprintln!(
        "precision: {:.2} bits worst slot, {:.2} bits mean",
        p.min_bits, p.mean_bits
    );
    p.min_bits
}

#[test]
#[ignore = "slow: N = 2^16 with the 128-bit secure benchmark parameters"]
fn ckks_secure_n16_benchmark_parameters_end_to_end() {
    let params = Parameters::new(super::bench::bench_literal(16, 24, 3, false)).unwrap();
    assert!(params.is_secure());
    let mut kg = KeyGenerator::new(&params).unwrap();
    let sk = kg.gen_secret_key();
    let pk = kg.gen_public_key(&sk);
    let keys = kg.gen_evaluation_keys(&sk, &[1, 3], true);
    let c = Ctx {
        enc: Encoder::new(&params),
        eval: Evaluator::new(&params, Some(Arc::new(keys))),
        params,
        sk,
        pk,
    };
    let v = values(c.params.max_slots(), 12);
    let ct = c.encrypt(&v);
    let want: Vec<Complex64> = v.iter().map(|x| x * x).collect();
    let sq = c.eval.mul_relin_rescale(&ct, &ct).unwrap();
    // Scale 2^50 with N = 2^16: ≥ 30 bits after one multiplication.
    assert!(bits(&precision(&want, &c.decrypt(&sq))) >= 30.0);
    let r = c.eval.rotate_hoisted(&sq, &[1, 3]).unwrap();
    let n = want.len();
    for (k, ct) in [1usize, 3].iter().zip(&r) {
        let w: Vec<Complex64> = (0..n).map(|i| want[(i + k) % n]).collect();
        assert!(bits(&precision(&w, &c.decrypt(ct))) >= 30.0);
    }
    let w: Vec<Complex64> = want.iter().map(|x| x.conj()).collect();
    assert!(bits(&precision(&w, &c.decrypt(&c.eval.conjugate(&sq).unwrap()))) >= 30.0);
}
