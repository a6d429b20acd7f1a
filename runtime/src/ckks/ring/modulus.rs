//! Word-sized modular arithmetic: Barrett reduction of 128-bit values and
//! Shoup multiplication by precomputed constants.

/// Largest modulus supported: every product of two residues then fits in
/// 124 bits, so up to 16 products can be summed lazily in a `u128`.
pub const MAX_MODULUS_BITS: u32 = 62;

/// An odd modulus `q < 2^62` with its Barrett constant `floor(2^128 / q)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Modulus {
    q: u64,
    /// `floor(2^64 / q)` (Barrett constant for 64-bit inputs).
    m64: u64,
    /// `2^64 mod q` and its Shoup companion (to fold the high word of 128-bit inputs).
    r64: u64,
    r64_shoup: u64,
}

impl Modulus {
    /// Panics when `q` is even, below 3 or not below `2^62`.
    pub fn new(q: u64) -> Self {
        assert!(
            q > 2 && q & 1 == 1 && q < (1u64 << MAX_MODULUS_BITS),
            "modulus {q} must be odd and in (2, 2^62)"
        );
        // q is odd, so floor((2^64 - 1)/q) = floor(2^64/q).
        let m64 = u64::MAX / q;
        let r64 = ((1u128 << 64) % q as u128) as u64;
        let r64_shoup = (((r64 as u128) << 64) / q as u128) as u64;
        Modulus {
            q,
            m64,
            r64,
            r64_shoup,
        }
    }

    #[inline(always)]
    pub fn value(&self) -> u64 {
        self.q
    }

    /// `x mod q` for any `x < 2^128`: the high word is folded in with a Shoup
    /// multiplication by `2^64 mod q`, the low word reduced by 64-bit Barrett;
    /// each part lies in `[0, 2q)`, so two conditional subtractions finish.
    #[inline(always)]
    pub fn reduce_u128(&self, x: u128) -> u64 {
        let lo = x as u64;
        let hi = (x >> 64) as u64;
        let a = self.mul_shoup_lazy(hi, self.r64, self.r64_shoup);
        let est = ((lo as u128 * self.m64 as u128) >> 64) as u64;
        let b = lo.wrapping_sub(est.wrapping_mul(self.q));
        let mut r = a + b;
        let two_q = 2 * self.q;
        if r >= two_q {
            r -= two_q;
        }
        if r >= self.q {
            r -= self.q;
        }
        r
    }

    #[inline(always)]
    pub fn reduce(&self, x: u64) -> u64 {
        if x < self.q {
            x
        } else {
            x % self.q
        }
    }

    /// Reduces a small signed integer, `|x| < q`, into `[0, q)` without a
    /// branch (for secret and error coefficients).
    #[inline(always)]
    pub fn reduce_small_ct(&self, x: i64) -> u64 {
        debug_assert!(x.unsigned_abs() < self.q);
        (x as u64).wrapping_add(self.q & ((x >> 63) as u64))
    }

    /// Reduces a signed integer into `[0, q)`.
    #[inline(always)]
    pub fn reduce_i64(&self, x: i64) -> u64 {
        let r = self.reduce(x.unsigned_abs());
        if x < 0 && r != 0 {
            self.q - r
        } else {
            r
        }
    }

    /// Reduces a signed 128-bit integer into `[0, q)`.
    #[inline(always)]
    pub fn reduce_i128(&self, x: i128) -> u64 {
        let r = self.reduce_u128(x.unsigned_abs());
        if x < 0 && r != 0 {
            self.q - r
        } else {
            r
        }
    }

    #[inline(always)]
    pub fn add(&self, a: u64, b: u64) -> u64 {
        let s = a + b;
        if s >= self.q {
            s - self.q
        } else {
            s
        }
    }

    #[inline(always)]
    pub fn sub(&self, a: u64, b: u64) -> u64 {
        if a >= b {
            a - b
        } else {
            a + self.q - b
        }
    }

    #[inline(always)]
    pub fn neg(&self, a: u64) -> u64 {
        if a == 0 {
            0
        } else {
            self.q - a
        }
    }

    #[inline(always)]
    pub fn mul(&self, a: u64, b: u64) -> u64 {
        self.reduce_u128(a as u128 * b as u128)
    }

    /// Shoup companion of the constant `w < q`: `floor(w * 2^64 / q)`.
    #[inline(always)]
    pub fn shoup(&self, w: u64) -> u64 {
        (((w as u128) << 64) / self.q as u128) as u64
    }

    /// `a * w mod q` for any `a < 2^64` using the Shoup companion of `w`.
    #[inline(always)]
    pub fn mul_shoup(&self, a: u64, w: u64, w_shoup: u64) -> u64 {
        let r = self.mul_shoup_lazy(a, w, w_shoup);
        if r >= self.q {
            r - self.q
        } else {
            r
        }
    }

    /// As [`Modulus::mul_shoup`] but the result is only reduced into `[0, 2q)`.
    #[inline(always)]
    pub fn mul_shoup_lazy(&self, a: u64, w: u64, w_shoup: u64) -> u64 {
        let hi = ((a as u128 * w_shoup as u128) >> 64) as u64;
        a.wrapping_mul(w).wrapping_sub(hi.wrapping_mul(self.q))
    }

    pub fn pow(&self, mut base: u64, mut exp: u64) -> u64 {
        let mut acc = 1 % self.q;
        base = self.reduce(base);
        while exp > 0 {
            if exp & 1 == 1 {
                acc = self.mul(acc, base);
            }
            base = self.mul(base, base);
            exp >>= 1;
        }
        acc
    }

    /// Inverse modulo a prime `q` (Fermat). Panics on zero.
    pub fn inv(&self, a: u64) -> u64 {
        let a = self.reduce(a);
        assert!(a != 0, "zero has no inverse modulo {}", self.q);
        self.pow(a, self.q - 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn barrett_matches_u128_remainder() {
        let mut state = 0x1234_5678_9abc_def1u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for q in [3u64, 65537, (1 << 50) - 27, (1 << 61) - 1, (1 << 62) - 57] {
            let m = Modulus::new(q);
            for _ in 0..20_000 {
                let x = ((next() as u128) << 64) | next() as u128;
                assert_eq!(m.reduce_u128(x), (x % q as u128) as u64, "q={q} x={x}");
                let (a, b) = (next() % q, next() % q);
                assert_eq!(m.mul(a, b), ((a as u128 * b as u128) % q as u128) as u64);
                let ws = m.shoup(b);
                let c = next();
                assert_eq!(
                    m.mul_shoup(c, b, ws),
                    ((c as u128 * b as u128) % q as u128) as u64
                );
            }
            assert_eq!(m.reduce_u128(u128::MAX), (u128::MAX % q as u128) as u64);
            assert_eq!(m.reduce_i64(-1), q - 1);
            if q > 3 {
                assert_eq!(m.mul(m.inv(12345), 12345), 1);
            }
        }
    }
}
