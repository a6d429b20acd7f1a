//! Structured mutation fuzzing of every parser precis exposes to files from
//! strangers: the ONNX frontend, the IR file, the CKKS parameter, key and
//! ciphertext files, `.npy`, `.npz`, IDX and the model-description JSON.
//!
//! Coverage-guided fuzzers (cargo-fuzz / libFuzzer) need a nightly
//! toolchain for their instrumentation; the project builds and tests on
//! stable, so this crate is a deterministic structured mutation harness
//! instead:
//!
//! * every [`Target`] supplies valid seed files of its format, a parse
//!   function (the real entry point: `Ok` accepted, `Err` a clean refusal),
//!   optionally a *reseal* function that repairs checksums and length fields
//!   after a mutation (so mutations reach the decoders behind a CRC or a
//!   SHA-256 instead of all dying at the checksum), and a dictionary of
//!   format tokens;
//! * [`mutate`] applies 1–8 stacked mutations drawn from a SplitMix64
//!   generator seeded per target and input index: bit flips, byte and word
//!   overwrites with boundary values (both endiannesses), LEB128 varints of
//!   huge values (postcard and protobuf lengths), "lying length" edits of
//!   words that look like lengths, truncations, deletions, duplications,
//!   splices of two seeds, dictionary tokens and rewritten decimal numbers
//!   (text headers, JSON);
//! * [`run`] feeds each input to the target under `catch_unwind`, with a
//!   counting global allocator ([`alloc`]) that aborts with a report when
//!   one input makes live memory grow past a limit (an allocation driven by
//!   an unchecked length field), and a watchdog that aborts when one input
//!   runs past a time limit (a hang). Panics, multi-line error messages,
//!   memory and time violations are findings; each writes the offending
//!   input to the crash directory, so it can become a regression test.
//!
//! Adding a target (for example the circuit file, once it exists) is one
//! function returning a [`Target`] plus one line in [`targets::all`]; see
//! `fuzz/README.md`.

pub mod alloc;
pub mod mutate;
pub mod runner;
pub mod targets;

pub use mutate::{mutate, Rng};
pub use runner::{run, Finding, Options, Report};

/// One parser under test.
pub struct Target {
    /// Short name used on the command line and in reports.
    pub name: &'static str,
    /// Valid files of the format (the corpus mutations start from).
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Repairs checksums and length fields of a mutated file, so that
    /// mutations get past integrity checks (applied to 3 inputs in 4).
    pub reseal: Option<fn(&mut [u8])>,
    /// The real entry point; `Err` is a clean refusal and must be one line.
    pub parse: fn(&[u8]) -> Result<(), String>,
    /// Format tokens spliced in by the dictionary mutation.
    pub dictionary: &'static [&'static [u8]],
}
