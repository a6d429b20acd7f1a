//! The cost model behind `estimated_seconds` and the scheduler's secondary
//! objective: seconds of each ciphertext operation at N = 2^16, 2 threads,
//! level by level, as `precis bench ops` measures them on the preset's own
//! parameters and keys (special primes, key-switching digits, Galois key
//! storage). A level's cost is not linear in its limbs: key switching pays
//! per digit, and the linear transforms' baby products and diagonals live
//! in the extended basis `Q_ℓ·P`, whose special primes every level pays for.
//!
//! A linear transform is priced as the CKKS backend runs it: a hoisted
//! baby-step giant-step transform, double or single hoisting as the backend
//! chooses ([`Hoisting::choose`]), with the measured parts: `base` (lifting
//! the input and the two final ModDowns) once, one decomposition per input
//! ciphertext whose baby steps rotate, each baby rotation of each input,
//! each giant rotation once for all inputs, each diagonal; then the fold's
//! rotations.
//!
//! Bootstrapping from `bench bootstrap` (2 threads, steady state) at the
//! slot counts circuits use.

use ir::circuit::Bsgs;
use runtime::ckks::circuits::Hoisting;

/// One level's operation costs, seconds, 2 threads (columns of `bench ops`).
#[derive(Clone, Copy, Debug)]
struct Row {
    rotate: f64,
    mul_relin: f64,
    rescale: f64,
    encode: f64,
    mul_plain: f64,
    add: f64,
    decompose: f64,
    double: Parts,
    single: Parts,
}

/// A linear transform's parts under one hoisting.
#[derive(Clone, Copy, Debug)]
struct Parts {
    base: f64,
    baby: f64,
    giant: f64,
    diagonal: f64,
}

/// Milliseconds, in `bench ops`'s column order: rotate, multiply +
/// relinearise, rescale, encode, plaintext multiply, add, decompose, then
/// base, baby, giant and diagonal of double and of single hoisting.
type Ms = [f64; 15];

fn row(ms: Ms) -> Row {
    let s = ms.map(|x| x / 1e3);
    let parts = |i: usize| Parts {
        base: s[i],
        baby: s[i + 1],
        giant: s[i + 2],
        diagonal: s[i + 3],
    };
    Row {
        rotate: s[0],
        mul_relin: s[1],
        rescale: s[2],
        encode: s[3],
        mul_plain: s[4],
        add: s[5],
        decompose: s[6],
        double: parts(7),
        single: parts(11),
    }
}

/// `precis bench ops --preset levels9 --reps 3`, levels 0..=9 (BENCHMARKS.md,
/// "Cost model").
const LEVELS9: [Ms; 10] = include!("cost_levels9.in");
/// `precis bench ops --preset levels16 --reps 3`, levels 0..=16.
const LEVELS16: [Ms; 17] = include!("cost_levels16.in");

/// Seconds of CKKS operations, 2 threads.
#[derive(Clone, Debug)]
pub struct CostModel {
    rows: Vec<Row>,
    /// The preset's special primes (for the choice of hoisting).
    special_primes: usize,
    /// One bootstrap of one ciphertext (2 threads), at the circuit's slots.
    pub bootstrap: f64,
}

#[derive(Clone, Copy)]
enum Packing {
    Full,
    Half,
    Smaller,
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
            ("levels16", Packing::Full) => 17.9,
            ("levels16", Packing::Half) => 16.0,
            ("levels16", Packing::Smaller) => 9.8,
            (_, Packing::Full) => 11.4,
            (_, Packing::Half) => 7.5,
            (_, Packing::Smaller) => 6.7,
        };
        let table: &[Ms] = match preset {
            "levels16" => &LEVELS16,
            _ => &LEVELS9,
        };
        // insecure-n11 is levels9's chain at N = 2^11: costs scaled by N
        // (not measured: a test ring).
        let by_n = if preset == "insecure-n11" {
            1.0 / 32.0
        } else {
            1.0
        };
        let rows = table.iter().map(|ms| row(ms.map(|x| x * by_n))).collect();
        let special_primes = runtime::ckks::bootstrapping::presets::Preset::from_name(preset)
            .unwrap_or(runtime::ckks::bootstrapping::presets::Preset::Levels9)
            .build(10)
            .0
            .log_p
            .len();
        CostModel {
            rows,
            special_primes,
            bootstrap: bootstrap * by_n,
        }
    }

    /// The row of `level`; above the table, the top row grown by the
    /// limbs (a ciphertext at a level the circuit levels do not reach).
    fn at(&self, level: u32, f: impl Fn(&Row) -> f64) -> f64 {
        let top = self.rows.len() - 1;
        let l = level as usize;
        if l <= top {
            f(&self.rows[l])
        } else {
            f(&self.rows[top]) * (l + 1) as f64 / (top + 1) as f64
        }
    }

    pub fn mul_relin(&self, level: u32) -> f64 {
        self.at(level, |r| r.mul_relin)
    }
    pub fn rotate(&self, level: u32) -> f64 {
        self.at(level, |r| r.rotate)
    }
    /// Rescaling a ciphertext at `level` (to `level − 1`).
    pub fn rescale(&self, level: u32) -> f64 {
        self.at(level, |r| r.rescale)
    }
    pub fn mul_plain(&self, level: u32) -> f64 {
        self.at(level, |r| r.mul_plain)
    }
    pub fn encode(&self, level: u32) -> f64 {
        self.at(level, |r| r.encode)
    }
    pub fn add(&self, level: u32) -> f64 {
        self.at(level, |r| r.add)
    }

    /// One output ciphertext's baby-step giant-step program at `level`, as
    /// the backend runs it (see the module documentation), without the fold.
    pub fn transform_program(&self, level: u32, program: &Bsgs) -> f64 {
        use std::collections::{BTreeMap, BTreeSet};
        // Per input ciphertext: its distinct rotating baby steps and its
        // diagonals; the giant steps are shared by all inputs.
        let mut inputs: BTreeMap<u32, (BTreeSet<u64>, usize)> = BTreeMap::new();
        let mut giants = 0;
        for g in &program.giants {
            if g.babies.is_empty() {
                continue;
            }
            giants += usize::from(g.shift != 0);
            for &(ct, b) in &g.babies {
                let e = inputs.entry(ct).or_default();
                e.1 += 1;
                if b != 0 {
                    e.0.insert(b);
                }
            }
        }
        if inputs.is_empty() {
            return 0.0;
        }
        let babies: usize = inputs.values().map(|(b, _)| b.len()).sum();
        let diagonals: usize = inputs.values().map(|(_, d)| d).sum();
        let hoisting = Hoisting::choose(
            self.special_primes,
            level as usize,
            babies,
            giants,
            diagonals,
        );
        let part = |f: fn(&Parts) -> f64| {
            self.at(level, |r| match hoisting {
                Hoisting::Double => f(&r.double),
                Hoisting::Single => f(&r.single),
            })
        };
        let decompositions = inputs.values().filter(|(b, _)| !b.is_empty()).count();
        part(|x| x.base)
            + decompositions as f64 * self.at(level, |r| r.decompose)
            + babies as f64 * part(|x| x.baby)
            + giants as f64 * part(|x| x.giant)
            + diagonals as f64 * part(|x| x.diagonal)
    }

    /// A transform's fold: `rotations` rotations and additions.
    pub fn fold(&self, level: u32, rotations: usize) -> f64 {
        rotations as f64 * (self.rotate(level) + self.add(level))
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
                region,
                output,
                input,
                ct,
                ..
            } => {
                let o = &c.regions[*region as usize].outputs[*output as usize];
                match &o.transforms[*input as usize] {
                    Some(tr) => {
                        m.transform_program(l, &tr.per_ct[*ct as usize])
                            + m.fold(l, tr.fold_rotations().len())
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
