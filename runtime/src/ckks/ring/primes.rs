//! Deterministic generation of NTT-friendly primes (`q ≡ 1 mod 2N`).

use super::modulus::{Modulus, MAX_MODULUS_BITS};

/// Deterministic Miller–Rabin for all 64-bit integers (the Jaeschke/Sinclair bases).
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    for p in [2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37] {
        if n % p == 0 {
            return n == p;
        }
    }
    if n >= (1u64 << MAX_MODULUS_BITS) {
        return is_prime_u128_arith(n);
    }
    let m = Modulus::new(n);
    let d0 = n - 1;
    let s = d0.trailing_zeros();
    let d = d0 >> s;
    'bases: for a in [2u64, 325, 9375, 28178, 450775, 9780504, 1795265022] {
        let a = a % n;
        if a == 0 {
            continue;
        }
        let mut x = m.pow(a, d);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = m.mul(x, x);
            if x == n - 1 {
                continue 'bases;
            }
        }
        return false;
    }
    true
}

fn is_prime_u128_arith(n: u64) -> bool {
    let mulm = |a: u64, b: u64| ((a as u128 * b as u128) % n as u128) as u64;
    let powm = |mut b: u64, mut e: u64| {
        let mut acc = 1u64;
        while e > 0 {
            if e & 1 == 1 {
                acc = mulm(acc, b);
            }
            b = mulm(b, b);
            e >>= 1;
        }
        acc
    };
    let d0 = n - 1;
    let s = d0.trailing_zeros();
    let d = d0 >> s;
    'bases: for a in [2u64, 325, 9375, 28178, 450775, 9780504, 1795265022] {
        let a = a % n;
        if a == 0 {
            continue;
        }
        let mut x = powm(a, d);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = mulm(x, x);
            if x == n - 1 {
                continue 'bases;
            }
        }
        return false;
    }
    true
}

/// Generates one prime per entry of `bits`, each `≡ 1 (mod 2n)` and the largest
/// such prime below `2^bits` not already taken (by an earlier entry or by `exclude`).
/// Primes just below a power of two keep rescaling close to a power-of-two scale
/// and keep 50-bit primes under `2^50`, where the AVX-512 IFMA NTT applies.
pub fn generate_primes(bits: &[u32], n: usize, exclude: &[u64]) -> Result<Vec<u64>, String> {
    let two_n = 2 * n as u64;
    let mut taken: Vec<u64> = exclude.to_vec();
    let mut out = Vec::with_capacity(bits.len());
    for &b in bits {
        if !(20..=61).contains(&b) {
            return Err(format!("prime size {b} bits is outside 20..=61"));
        }
        if (1u64 << (b - 1)) < two_n {
            return Err(format!("{b}-bit primes cannot be ≡ 1 mod 2N={two_n}"));
        }
        // Largest candidate below 2^b congruent to 1 mod 2n.
        let mut c = (1u64 << b) - two_n + 1;
        let floor = 1u64 << (b - 1);
        loop {
            if c < floor {
                return Err(format!("ran out of {b}-bit primes ≡ 1 mod {two_n}"));
            }
            if !taken.contains(&c) && is_prime(c) {
                break;
            }
            c -= two_n;
        }
        taken.push(c);
        out.push(c);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn miller_rabin_agrees_with_trial_division() {
        let trial = |n: u64| n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0);
        for n in 0..5000u64 {
            assert_eq!(is_prime(n), trial(n), "{n}");
        }
        for n in [(1u64 << 61) - 1, (1u64 << 62) - 57, 18446744073709551557] {
            assert!(is_prime(n));
        }
        // Strong pseudoprimes to several bases.
        for n in [3215031751u64, 3825123056546413051] {
            assert!(!is_prime(n));
        }
    }

    #[test]
    fn generated_primes_are_ntt_friendly_distinct_and_sized() {
        let n = 1 << 12;
        let bits = [60, 40, 40, 40, 61, 61];
        let ps = generate_primes(&bits, n, &[]).unwrap();
        for (p, b) in ps.iter().zip(bits) {
            assert!(is_prime(*p));
            assert_eq!(p % (2 * n as u64), 1);
            assert_eq!(64 - p.leading_zeros(), b);
        }
        let mut sorted = ps.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ps.len());
        assert_eq!(ps, generate_primes(&bits, n, &[]).unwrap(), "deterministic");
    }
}
