//! The C allocator's settings for CKKS work.
//!
//! At `N = 2^16` a polynomial is 0.5 MiB per limb, up to ~20 MiB, and a
//! bootstrap allocates and frees thousands of them from two threads. With
//! glibc's defaults these come from fresh `mmap`s, from a per-thread arena
//! each, and freed heap tops go back to the kernel, so the same memory is
//! faulted in (and zeroed by the kernel) again and again: measured on
//! `bench bootstrap --preset levels16` (2 threads), 6.1 M minor page faults
//! and 36 s of system time in a 67 s run, against 2.3 M and 21 s with the
//! settings below given through `GLIBC_TUNABLES` (there with a 16 GiB trim
//! threshold), and 16.5 s instead of 21.2 s for the second bootstrap.

/// Serves allocations up to 32 MiB from the heap, keeps up to 2 GiB of freed
/// heap top, and uses one arena. Call once, before the CKKS work starts its
/// threads (the CLI does for its CKKS commands only: on the reference
/// executor, alternating runs of `bench reference` with and without these
/// settings differed by no more than this machine's run-to-run noise, so
/// there is no measured reason to impose a single arena there).
/// Does nothing where the C library is not glibc, or when `GLIBC_TUNABLES`
/// already sets malloc options (the user's choice wins).
pub fn tune_for_large_polynomials() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var("GLIBC_TUNABLES").is_ok_and(|v| v.contains("malloc")) {
            return;
        }
        // SAFETY: mallopt only changes allocator parameters; it is called
        // with valid parameter codes and values.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// Returns the heap's free pages to the kernel (glibc's `malloc_trim`):
/// with the settings above, the temporaries of key generation or of
/// reading a key file stay resident otherwise, on top of the keys, for the
/// rest of the run. Call after such a phase. Does nothing off glibc.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only returns free memory to the kernel.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
