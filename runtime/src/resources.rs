//! What a circuit needs from the CKKS backend: its parameter set (checked
//! against the primes the circuit was compiled for), its keys and their
//! sizes, and an estimate of the peak memory of one encrypted run.

use crate::ckks::bootstrapping::presets::Preset;
use crate::ckks::bootstrapping::{BootstrapConfig, Bootstrapper};
use crate::ckks::keys::{digits_up_to, galois_element_for_rotation, KeyStorage, SwitchingKey};
use crate::ckks::Parameters;
use ir::circuit::{Circuit, Op};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The CKKS parameters and bootstrapping configuration of `c`'s preset, after
/// checking that they generate exactly the primes `c` was compiled for.
pub fn ckks_parameters(c: &Circuit) -> Result<(Parameters, BootstrapConfig), String> {
    let preset = Preset::from_name(&c.params.preset).ok_or_else(|| {
        format!(
            "the circuit's parameter set '{}' is not a preset of this precis ({})",
            c.params.preset,
            Preset::ALL.map(|p| p.name()).join(", ")
        )
    })?;
    let (literal, config) = preset.build(c.params.slots.trailing_zeros());
    let params = Parameters::new(literal).map_err(|e| e.to_string())?;
    if params.q() != c.params.q.as_slice() || params.log_n() != c.params.log_n {
        return Err(format!(
            "the circuit was compiled for other primes than preset {} generates here",
            c.params.preset
        ));
    }
    Ok((params, config))
}

/// Peak resident memory of this process (Linux `VmHWM`), bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Key and memory sizes of a circuit, in bytes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// The circuit's own Galois keys (rotations not also used by bootstrapping).
    pub circuit_key_bytes: usize,
    /// Bootstrapping keys (relinearisation, its Galois keys, encapsulation).
    pub bootstrap_key_bytes: usize,
    pub key_bytes: usize,
    /// Distinct Galois keys in all.
    pub galois_keys: usize,
    /// The bootstrapper's encoded DFT matrices.
    pub bootstrapper_bytes: usize,
    /// Largest working set of ciphertexts and encoded diagonals at one time.
    pub working_bytes: usize,
    pub estimated_peak_bytes: usize,
}

/// The sizes for `c` on its preset.
pub fn resources(c: &Circuit) -> Result<Resources, String> {
    let (params, config) = ckks_parameters(c)?;
    let n = params.n();
    let specials = params.p().len();
    let storage = config.galois_key_storage;
    let key = |level: u32, storage: KeyStorage| {
        let digits = digits_up_to(&params, level as usize).len();
        SwitchingKey::size_bytes_for(digits, level as usize + 1 + specials, n, storage)
    };
    let mut levels: BTreeMap<u64, u32> = BTreeMap::new();
    let (bootstrap_key_bytes, bootstrapper_bytes) = if c.params.bootstrap.is_some() {
        let bs = Bootstrapper::new(&params, config.clone()).map_err(|e| e.to_string())?;
        for (g, l) in bs.galois_key_levels() {
            levels.insert(g, l as u32);
        }
        (bs.key_bytes(), bs.size_bytes())
    } else {
        (key(params.max_level() as u32, KeyStorage::Expanded), 0)
    };
    let mut circuit_key_bytes = 0;
    for (&k, &l) in &c.rotations {
        let g = galois_element_for_rotation(n, k as i64);
        match levels.get(&g) {
            Some(&have) if have >= l => {}
            Some(&have) => {
                // Shared with bootstrapping but needed higher: the larger key.
                circuit_key_bytes += key(l, storage) - key(have, storage);
                levels.insert(g, l);
            }
            None => {
                circuit_key_bytes += key(l, storage);
                levels.insert(g, l);
            }
        }
    }
    let ct_bytes = |level: u32| 2 * (level as usize + 1) * n * 8;
    // Live ciphertexts over the run, plus the transform being evaluated.
    let mut last = vec![0usize; c.nodes.len()];
    for (i, node) in c.nodes.iter().enumerate() {
        for v in node.op.operands() {
            last[v.index()] = i;
        }
    }
    for v in &c.output.values {
        last[v.index()] = usize::MAX;
    }
    let mut live = 0usize;
    let mut working = 0usize;
    for (i, node) in c.nodes.iter().enumerate() {
        live += ct_bytes(node.level);
        let transient = match &node.op {
            Op::LinearTransform {
                region,
                output,
                input,
                ct,
                ..
            } => {
                let o = &c.regions[*region as usize].outputs[*output as usize];
                o.transforms[*input as usize].as_ref().map_or(0, |t| {
                    let b = &t.per_ct[*ct as usize];
                    let ext = (node.level as usize + 1 + specials) * n * 8;
                    let per_giant = b.products().div_ceil(b.giants.len().max(1));
                    let fold = usize::from(t.fold().is_some());
                    2 * ext * (b.baby_rotations() + 1 + fold) + ext * per_giant
                })
            }
            Op::Bootstrap { .. } => 6 * ct_bytes(params.max_level() as u32),
            _ => 0,
        };
        working = working.max(live + transient);
        for v in node.op.operands() {
            if last[v.index()] == i {
                live -= ct_bytes(c.nodes[v.index()].level);
            }
        }
    }
    let key_bytes = circuit_key_bytes + bootstrap_key_bytes;
    Ok(Resources {
        circuit_key_bytes,
        bootstrap_key_bytes,
        key_bytes,
        galois_keys: levels.len(),
        bootstrapper_bytes,
        working_bytes: working,
        estimated_peak_bytes: key_bytes + bootstrapper_bytes + working,
    })
}
