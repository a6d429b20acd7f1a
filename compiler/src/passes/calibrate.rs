//! Range calibration: runs the exact model on data and records, at the input
//! of every ReLU and max-pool, the largest |x| seen. The bound used by the
//! approximation is `B = observed max × margin`. The same collector, run on
//! an approximated model, counts inputs outside `[−B, B]` (overflows), which
//! would make the polynomial diverge under encryption.

use std::collections::{BTreeMap, HashMap};

use ir::{Graph, NodeId, Op, Tensor};
use serde::{Deserialize, Serialize};

/// The |x| histogram: 32 linear bins per octave (the exponent and the top
/// five mantissa bits of the f64), octaves 2^-40 … 2^40.
const MANTISSA_BITS: u32 = 5;
const MIN_EXP: i64 = -40;
const OCTAVES: usize = 80;

fn bin_of(a: f64) -> usize {
    // For positive finite a: (biased exponent << 5) | top mantissa bits.
    let key = (a.to_bits() >> (52 - MANTISSA_BITS)) as i64;
    let first = (1023 + MIN_EXP) << MANTISSA_BITS;
    let last = (OCTAVES as i64) << MANTISSA_BITS;
    (key - first).clamp(0, last - 1) as usize
}

/// The upper edge of bin `i`.
fn bin_upper(i: usize) -> f64 {
    let per = 1usize << MANTISSA_BITS;
    let exp = (i / per) as i32 + MIN_EXP as i32;
    2f64.powi(exp) * (1.0 + ((i % per) + 1) as f64 / per as f64)
}

/// Statistics of |x| at one layer's input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerRange {
    /// `Relu`, `MaxPool`, `ApproxRelu` or `ApproxMaxPool`.
    pub op: String,
    pub observed_max: f64,
    /// The bound B: `observed_max × margin` when calibrating; the node's own
    /// bound when checking an approximated model.
    pub bound: f64,
    pub mean_abs: f64,
    /// 99.9th percentile of |x| (histogram upper edge, within 3.2 %).
    pub p999_abs: f64,
    /// Values seen.
    pub count: u64,
    /// Values with |x| > bound.
    pub overflows: u64,
}

/// Per-layer ranges, by node name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub margin: f64,
    pub samples: usize,
    pub layers: BTreeMap<String, LayerRange>,
}

impl Calibration {
    pub fn total_overflows(&self) -> u64 {
        self.layers.values().map(|l| l.overflows).sum()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error("calibration margin {0} must be ≥ 1")]
    Margin(f64),
    #[error("calibration data is empty")]
    NoData,
    #[error("the model has no ReLU or max-pool to calibrate")]
    NothingToCalibrate,
    #[error("running the model on calibration data: {0}")]
    Exec(String),
}

struct Accumulator {
    op: &'static str,
    bound: Option<f64>,
    max: f64,
    sum: f64,
    count: u64,
    overflows: u64,
    zeros: u64,
    hist: Vec<u64>,
}

impl Accumulator {
    fn new(op: &'static str, bound: Option<f64>) -> Self {
        Self {
            op,
            bound,
            max: 0.0,
            sum: 0.0,
            count: 0,
            overflows: 0,
            zeros: 0,
            hist: vec![0; OCTAVES << MANTISSA_BITS],
        }
    }

    fn add(&mut self, t: &Tensor) {
        let limit = self.bound.unwrap_or(f64::INFINITY);
        for &v in &t.data {
            let a = (v as f64).abs();
            if !a.is_finite() {
                // A diverged polynomial upstream: count it as an overflow.
                self.overflows += 1;
                self.count += 1;
                self.max = f64::INFINITY;
                continue;
            }
            self.max = self.max.max(a);
            self.sum += a;
            self.count += 1;
            if a > limit {
                self.overflows += 1;
            }
            if a == 0.0 {
                self.zeros += 1;
            } else {
                self.hist[bin_of(a)] += 1;
            }
        }
    }

    fn percentile(&self, q: f64) -> f64 {
        let target = (q * self.count as f64).ceil() as u64;
        let mut seen = self.zeros;
        if seen >= target {
            return 0.0;
        }
        for (i, &h) in self.hist.iter().enumerate() {
            seen += h;
            if seen >= target {
                return bin_upper(i).min(self.max);
            }
        }
        self.max
    }
}

/// Runs `graph` on every batch with the reference executor and collects the
/// range at the input of each ReLU / max-pool (exact or approximated).
/// With `margin`, the bound of each layer becomes `observed max × margin`;
/// without, the bound of each approximated node is checked for overflows.
pub fn collect_ranges(
    graph: &Graph,
    batches: impl IntoIterator<Item = Tensor>,
    margin: Option<f64>,
) -> Result<Calibration, CalibrateError> {
    evaluate_with_ranges(graph, batches, margin, |_| {})
}

/// [`collect_ranges`] that also hands each batch's outputs to `on_outputs`
/// (so one run yields both predictions and range/overflow statistics).
pub fn evaluate_with_ranges(
    graph: &Graph,
    batches: impl IntoIterator<Item = Tensor>,
    margin: Option<f64>,
    mut on_outputs: impl FnMut(Vec<Tensor>),
) -> Result<Calibration, CalibrateError> {
    if let Some(m) = margin {
        if !(m >= 1.0 && m.is_finite()) {
            return Err(CalibrateError::Margin(m));
        }
    }
    // operand id → the layers it feeds.
    let mut feeds: HashMap<NodeId, Vec<String>> = HashMap::new();
    let mut acc: BTreeMap<String, Accumulator> = BTreeMap::new();
    for id in graph.topo_order() {
        let node = graph.node(id);
        let bound = match &node.op {
            Op::Relu | Op::MaxPool(_) => None,
            Op::ApproxRelu(a) => Some(a.bound),
            Op::ApproxMaxPool(a) => Some(a.bound),
            _ => continue,
        };
        let operand = graph.operands(id)[0];
        feeds.entry(operand).or_default().push(node.name.clone());
        acc.insert(node.name.clone(), Accumulator::new(node.op.kind(), bound));
    }
    if acc.is_empty() {
        return Err(CalibrateError::NothingToCalibrate);
    }
    let mut samples = 0;
    for batch in batches {
        samples += batch.shape.first().copied().unwrap_or(0);
        let outputs = runtime::reference::run_traced(graph, &[batch], &mut |id, value| {
            if let Some(layers) = feeds.get(&id) {
                for l in layers {
                    acc.get_mut(l).expect("layer").add(value);
                }
            }
        })
        .map_err(|e| CalibrateError::Exec(e.to_string()))?;
        on_outputs(outputs);
    }
    if samples == 0 {
        return Err(CalibrateError::NoData);
    }
    let layers = acc
        .into_iter()
        .map(|(name, a)| {
            let bound = match (margin, a.bound) {
                (Some(m), _) => round_bound(a.max * m),
                (None, Some(b)) => b,
                (None, None) => a.max,
            };
            let range = LayerRange {
                op: a.op.to_string(),
                observed_max: a.max,
                bound,
                mean_abs: if a.count > 0 {
                    a.sum / a.count as f64
                } else {
                    0.0
                },
                p999_abs: a.percentile(0.999),
                count: a.count,
                overflows: a.overflows,
            };
            (name, range)
        })
        .collect();
    Ok(Calibration {
        margin: margin.unwrap_or(1.0),
        samples,
        layers,
    })
}

/// Rounds a bound up to 8 significant bits, so that it does not depend on
/// the last bits of the executor's arithmetic (and stays ≥ the unrounded
/// value, < 0.8 % above it). Zero (a layer that only saw zeros) becomes the
/// smallest positive bound.
pub fn round_bound(b: f64) -> f64 {
    if b.is_infinite() {
        return b;
    }
    if b.is_nan() || b <= 0.0 {
        return f64::MIN_POSITIVE;
    }
    let exp = b.log2().floor() as i32;
    let q = 2f64.powi(exp - 7);
    (b / q).ceil() * q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_bins_bracket_their_values() {
        for &v in &[1e-9, 0.001, 0.37, 1.0, 1.5, 3.999, 1234.5] {
            let i = bin_of(v);
            assert!(
                bin_upper(i) > v && v >= bin_upper(i) / (1.0 + 1.0 / 16.0) * 0.99,
                "{v}"
            );
            if i > 0 {
                assert!(bin_upper(i - 1) <= v, "{v}");
            }
        }
    }
    use crate::passes::testing::{conv, random_input};
    use ir::Pads2d;

    #[test]
    fn bounds_are_max_times_margin_and_overflows_are_counted() {
        let mut g = Graph::new("cal");
        let x = g.add_input("x", vec![1, 2, 5, 5]).unwrap();
        let c = g
            .add("conv", conv(2, 3, 3, 1, Pads2d::same(1), 3), &[x])
            .unwrap();
        let r = g.add("relu", Op::Relu, &[c]).unwrap();
        g.set_outputs(vec![r]);
        let data = random_input(&[4, 2, 5, 5], 9);
        // The exact maximum |conv output| from a traced run.
        let mut want = 0.0f64;
        runtime::reference::run_traced(&g, std::slice::from_ref(&data), &mut |id, v| {
            if id == c {
                want = v.data.iter().fold(want, |m, &x| m.max((x as f64).abs()));
            }
        })
        .unwrap();
        let cal = collect_ranges(&g, [data.clone()], Some(1.25)).unwrap();
        let l = &cal.layers["relu"];
        assert_eq!(l.observed_max, want);
        assert_eq!(l.bound, round_bound(want * 1.25));
        assert!(l.bound >= want * 1.25 && l.bound < want * 1.25 * 1.008);
        assert_eq!(l.count, 4 * 3 * 25);
        assert!(l.p999_abs <= want && l.p999_abs > 0.5 * want, "{l:?}");
        assert!(l.mean_abs < l.observed_max);
        assert_eq!(cal.samples, 4);

        // Halve the data's bound: the overflow count is exactly the number
        // of values above it.
        let half = want / 2.0;
        let mut above = 0;
        runtime::reference::run_traced(&g, std::slice::from_ref(&data), &mut |id, v| {
            if id == c {
                above += v.data.iter().filter(|x| (**x as f64).abs() > half).count() as u64;
            }
        })
        .unwrap();
        let mut approx = g.clone();
        *approx.op_mut(r) = Op::ApproxRelu(ir::ApproxRelu {
            bound: half,
            sign: crate::passes::testing::toy_sign(),
        });
        let check = collect_ranges(&approx, [data], None).unwrap();
        assert_eq!(check.layers["relu"].overflows, above);
        assert!(above > 0);
        assert!(matches!(
            collect_ranges(&g, std::iter::empty(), Some(1.0)),
            Err(CalibrateError::NoData)
        ));
        assert!(matches!(
            collect_ranges(&g, [random_input(&[1, 2, 5, 5], 1)], Some(0.5)),
            Err(CalibrateError::Margin(_))
        ));
    }
}
