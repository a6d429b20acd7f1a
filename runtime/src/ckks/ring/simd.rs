//! Runtime dispatch of the word-arithmetic kernels to the CPU's wider
//! instructions.
//!
//! The crate is built for the baseline x86-64 target, where a 64×64→128-bit
//! product is a `mul` through fixed registers and nothing vectorises 64-bit
//! multiplications. [`wide`] runs a closure inside a function compiled for
//! x86-64-v4 (AVX-512 F/DQ/VL/BW, BMI2, ADX) when the processor has those
//! features: the closure and the `#[inline(always)]` arithmetic it calls are
//! inlined there and compiled with them (`mulx`, `adcx`, `vpmullq`, 512-bit
//! vectors). Elsewhere the closure runs as compiled for the baseline.
//! Results are identical either way: only instruction selection changes.
//! Setting the environment variable `PRECIS_BASELINE_KERNELS=1` forces the
//! baseline path (to compare the two, or to rule the dispatch out).

/// Runs `f`, compiled with x86-64-v4 features when the CPU supports them.
/// `f` should do its work inline (the per-element arithmetic marked
/// `#[inline(always)]`), not through calls to separately compiled functions.
#[inline(always)]
pub fn wide<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if has_v4() {
            // SAFETY: the features `v4` is compiled with were detected above.
            return unsafe { v4(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
fn has_v4() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        std::env::var_os("PRECIS_BASELINE_KERNELS").is_none_or(|v| v != "1")
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("bmi2")
            && std::arch::is_x86_feature_detected!("adx")
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw,bmi1,bmi2,adx,lzcnt,popcnt,fma,avx2")]
unsafe fn v4<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_returns_what_the_closure_returns() {
        let m = crate::ckks::ring::Modulus::new((1 << 61) - 1);
        let a: Vec<u64> = (0..1000u64).map(|i| i * 0x9e37_79b9 % m.value()).collect();
        let plain: Vec<u64> = a.iter().map(|&x| m.mul(x, x)).collect();
        let fast = wide(|| a.iter().map(|&x| m.mul(x, x)).collect::<Vec<_>>());
        assert_eq!(plain, fast);
    }
}
