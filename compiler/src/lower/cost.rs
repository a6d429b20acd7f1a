//! The cost model behind `estimated_seconds` and the scheduler's secondary
//! objective: seconds per ciphertext operation at N = 2^16 as a function of
//! the level, linear in the number of RNS limbs.
//!
//! Calibration (BENCHMARKS.md, 2-core AMD EPYC, one thread, 25 limbs, the
//! `bench ckks` run of 2026-12-02): multiply + relinearise 108–122 ms,
//! rotate 129–148 ms, rescale 25–27 ms, plaintext multiply 6–7 ms, encode
//! 14–19 ms; additions ~2 ms. Bootstrapping at full slots from `bench
//! bootstrap` (2 threads, steady state: `levels9` 10.5–12.3 s, `levels16`
//! 15.4–20.5 s); at fewer slots from the bootstraps of encrypted circuit
//! runs (`precis run`, 2026-12-03: `levels16` 9.8 s at 2^13 slots, 16.0 s
//! at 2^14; `levels9` 7.5 s at 2^14). Two threads are
//! taken to run the other operations 1.8× faster than one. Linear
//! transforms are costed as double-hoisted BSGS: one decomposition per
//! input, a hoisted baby rotation at about a third of a rotation, a full
//! rotation per giant step, and one encoding plus one product per diagonal
//! (diagonals are encoded at use).

#[derive(Clone, Copy)]
enum Packing {
    Full,
    Half,
    Smaller,
}

/// Seconds of CKKS operations, 2 threads.
#[derive(Clone, Debug)]
pub struct CostModel {
    /// Seconds at 25 limbs, one thread.
    pub mul_relin: f64,
    pub rotate: f64,
    pub rescale: f64,
    pub mul_plain: f64,
    pub encode: f64,
    pub add: f64,
    /// One bootstrap of one ciphertext (2 threads), by slot count.
    pub bootstrap: f64,
    pub threads_speedup: f64,
}

impl CostModel {
    /// The model for a preset name and slot count.
    pub fn for_preset(preset: &str, slots: usize, max_slots: usize) -> Self {
        // Sparse packing bootstraps 2·slots real values as slots complex
        // ones: a quarter of the ring's slots costs about what full
        // packing does, fewer cost less.
        let packing = if slots >= max_slots {
            Packing::Full
        } else if 2 * slots >= max_slots {
            Packing::Half
        } else {
            Packing::Smaller
        };
        let bootstrap = match (preset, packing) {
            ("levels9", Packing::Full) => 11.4,
            ("levels9", Packing::Half) => 7.5,
            // Not measured in a circuit: 7.5 s scaled by `bench
            // bootstrap`'s 2^13 / 2^14 ratio (8.92 / 10.06).
            ("levels9", Packing::Smaller) => 6.7,
            ("levels16", Packing::Full) => 17.9,
            ("levels16", Packing::Half) => 16.0,
            ("levels16", Packing::Smaller) => 9.8,
            // insecure-n11: levels9's chain at N = 2^11, its costs scaled
            // by N (not measured: a test ring).
            ("insecure-n11", _) => 11.4,
            (_, _) => 15.0,
        };
        let by_n = if preset == "insecure-n11" {
            1.0 / 32.0
        } else {
            1.0
        };
        CostModel {
            mul_relin: 0.115 * by_n,
            rotate: 0.139 * by_n,
            rescale: 0.026 * by_n,
            mul_plain: 0.0065 * by_n,
            encode: 0.0165 * by_n,
            add: 0.002 * by_n,
            bootstrap: bootstrap * by_n,
            threads_speedup: 1.8,
        }
    }

    fn at(&self, base: f64, level: u32) -> f64 {
        base * (level as f64 + 1.0) / 25.0 / self.threads_speedup
    }

    pub fn mul_relin(&self, level: u32) -> f64 {
        self.at(self.mul_relin, level)
    }
    pub fn rotate(&self, level: u32) -> f64 {
        self.at(self.rotate, level)
    }
    pub fn rescale(&self, level: u32) -> f64 {
        self.at(self.rescale, level)
    }
    pub fn mul_plain(&self, level: u32) -> f64 {
        self.at(self.mul_plain, level)
    }
    pub fn encode(&self, level: u32) -> f64 {
        self.at(self.encode, level)
    }
    pub fn add(&self, level: u32) -> f64 {
        self.at(self.add, level)
    }

    /// A linear transform at `level` with `babies` hoisted rotations,
    /// `giants` giant rotations and `products` diagonals.
    pub fn linear_transform(
        &self,
        level: u32,
        babies: usize,
        giants: usize,
        products: usize,
    ) -> f64 {
        self.rotate(level) * (1.0 + babies as f64 / 3.0 + giants as f64)
            + (self.mul_plain(level) + self.encode(level)) * products as f64
    }
}

/// Estimated seconds of a circuit: the sum of its nodes' costs.
pub fn circuit_seconds(c: &ir::circuit::Circuit, m: &CostModel) -> f64 {
    node_seconds(c, m).iter().sum()
}

/// Estimated seconds of each node of a circuit.
pub fn node_seconds(c: &ir::circuit::Circuit, m: &CostModel) -> Vec<f64> {
    use ir::circuit::Op;
    let mut t = Vec::with_capacity(c.nodes.len());
    for node in &c.nodes {
        let l = node.level;
        t.push(match &node.op {
            Op::Mul { .. } => m.mul_relin(l),
            Op::Rotate { .. } => m.rotate(l),
            Op::Rescale { .. } => m.rescale(l + 1),
            Op::MulConst { .. } | Op::MulInt { .. } => m.mul_plain(l),
            Op::MulPlain { .. } => m.mul_plain(l) + m.encode(l),
            Op::AddPlain { .. } => m.add(l) + m.encode(l),
            Op::Add { .. } | Op::Sub { .. } | Op::AddConst { .. } | Op::Neg { .. } => m.add(l),
            Op::Bootstrap { .. } => m.bootstrap,
            Op::LinearTransform {
                inputs,
                region,
                output,
                input,
                ct,
                ..
            } => {
                let o = &c.regions[*region as usize].outputs[*output as usize];
                match &o.transforms[*input as usize] {
                    Some(tr) => {
                        let b = &tr.per_ct[*ct as usize];
                        let fold = tr.fold_rotations().len() as f64;
                        m.linear_transform(l, b.baby_rotations(), b.giant_rotations(), b.products())
                            + m.rotate(l) * fold
                            + m.rotate(l) * (inputs.len() as f64 - 1.0) / 3.0
                    }
                    None => 0.0,
                }
            }
            Op::Input { .. }
            | Op::Relabel { .. }
            | Op::DropLevel { .. }
            | Op::Reinterpret { .. } => 0.0,
        });
    }
    t
}
