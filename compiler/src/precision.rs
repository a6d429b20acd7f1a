//! Precision per layer, chosen automatically (`--alpha auto`): the α of
//! every approximated ReLU / max-pool that minimises the circuit's
//! estimated encrypted time — bootstraps first, then seconds — subject to
//! the approximated model's top-1 accuracy on a validation split staying
//! within a budget of the exact model's, with no more inputs leaving their
//! calibrated bounds than at uniform α.
//!
//! The search, deterministic throughout:
//!
//! 1. **Sensitivity.** For each layer alone, α is lowered step by step from
//!    the top of the ladder (all other layers at the top) and the logits on
//!    a probe set (the first validation samples) are compared with the
//!    uniform-α model's: the layer's error `s_l(α)` is the mean squared
//!    logit deviation, made monotone in α. A layer's descent stops at the
//!    first α where it alone makes inputs overflow their bounds or flips
//!    more probe predictions than the whole budget allows; lower α are
//!    then out of reach for it.
//! 2. **A family of plans.** For a threshold τ every layer takes the lowest
//!    α with `s_l(α) ≤ τ` (equal marginal error everywhere), so plans get
//!    cheaper as τ grows.
//! 3. **Free precision back.** Bootstraps are a step function of the
//!    depths, so a plan usually lowers some layers further than any saving
//!    needs: each layer, the most erroneous first, is raised to the highest
//!    α that keeps the plan's bootstrap count and costs at most
//!    `raise_tolerance` more estimated time. The level graph and its
//!    schedule are re-run for every trial ([`Estimator`], milliseconds).
//! 4. **Verification.** The largest τ whose raised plan keeps the full
//!    validation accuracy within the budget (and adds no overflow) is found
//!    by bisection over the thresholds; its plan is the answer. If none
//!    passes, the uniform plan is kept.
//!
//! The additive error model of step 2 is only a guide: every answer is a
//! plan that was verified on the whole validation split.

use std::collections::BTreeMap;
use std::time::Instant;

use ir::{CompositeSign, Graph, Op, Tensor};
use serde::{Deserialize, Serialize};

use crate::lower::{Estimate, Estimator, LowerError, ParamsSource};
use crate::passes::{evaluate_with_ranges, AlphaPlan, SignApproximations};
use crate::pipeline::{approximate_prepared, PipelineError, Prepared};

/// Options of the search.
#[derive(Clone, Debug)]
pub struct SearchOptions {
    /// The top of the ladder: the uniform plan every search starts from.
    pub max_alpha: u32,
    /// The bottom of the ladder.
    pub min_alpha: u32,
    /// The largest accuracy loss against the exact model on the
    /// validation split, in percentage points.
    pub max_drop_pt: f64,
    /// Validation samples used to measure sensitivities (the first ones).
    pub probe: usize,
    /// Samples per executor batch.
    pub batch: usize,
    /// A raise may cost this fraction more estimated time.
    pub raise_tolerance: f64,
}

impl Default for SearchOptions {
    fn default() -> Self {
        Self {
            max_alpha: 14,
            min_alpha: 4,
            max_drop_pt: 0.1,
            probe: 500,
            batch: 100,
            raise_tolerance: 0.005,
        }
    }
}

/// Labelled validation samples, preprocessed (`x` is `[N, …]`).
pub struct Validation<'a> {
    pub x: &'a Tensor,
    pub y: &'a [u8],
}

/// One α tried for one layer alone.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Probe {
    pub alpha: u32,
    /// Mean squared logit deviation from the uniform plan on the probe set.
    pub mse: f64,
    /// Probe predictions that differ from the uniform plan's.
    pub flips: usize,
    /// Probe inputs outside their bounds (all layers).
    pub overflows: u64,
}

/// What the search chose for one layer, and why.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayerChoice {
    pub name: String,
    pub op: String,
    pub alpha: u32,
    /// Levels of one approximate ReLU (or one pairwise maximum of a
    /// max-pool): the composite sign's depth + 1.
    pub depth: u32,
    /// `s_l(α)` at the chosen α (monotone).
    pub error: f64,
    /// The lowest α this layer could take alone.
    pub floor: u32,
    pub probes: Vec<Probe>,
    pub why: String,
}

/// A plan's estimated cost and, once verified, its validation accuracy.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Candidate {
    pub tau: f64,
    /// `Σ s_l(α_l)`.
    pub predicted_error: f64,
    pub bootstraps: u32,
    pub estimated_seconds: f64,
    pub alphas: BTreeMap<String, u32>,
    pub accuracy: f64,
    pub overflows: u64,
    pub passed: bool,
}

/// The search's answer and everything it measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SearchReport {
    pub validation_samples: usize,
    pub probe_samples: usize,
    pub max_drop_pt: f64,
    pub exact_accuracy: f64,
    pub uniform_alpha: u32,
    pub uniform: Candidate,
    pub chosen: Candidate,
    pub layers: Vec<LayerChoice>,
    /// The plans verified, in the order they were.
    pub verified: Vec<Candidate>,
    pub estimates: usize,
    pub evaluations: usize,
    pub seconds: f64,
}

impl SearchReport {
    /// The chosen per-layer precision.
    pub fn plan(&self) -> AlphaPlan {
        AlphaPlan {
            default: self.uniform_alpha,
            per_layer: self.chosen.alphas.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("{0}")]
    Pipeline(#[from] PipelineError),
    #[error("lowering: {0}")]
    Lower(#[from] LowerError),
    #[error("evaluation: {0}")]
    Exec(String),
    #[error("{0}")]
    Options(String),
}

/// The search's view of a model: its layers, the polynomials per α, the
/// estimator and the validation data.
struct Search<'a> {
    prepared: &'a Prepared,
    source: &'a dyn SignApproximations,
    data: &'a Validation<'a>,
    opts: &'a SearchOptions,
    signs: BTreeMap<u32, CompositeSign>,
    /// The uniform plan's final graph: the estimator's template.
    template: Graph,
    estimator: Estimator,
    estimates: usize,
    evaluations: usize,
    progress: &'a mut dyn FnMut(&str),
}

/// Logits (row-major) and overflow count of `graph` on samples `range`.
struct Run {
    logits: Vec<f32>,
    classes: usize,
    overflows: u64,
}

impl Run {
    fn row(&self, i: usize) -> &[f32] {
        &self.logits[i * self.classes..(i + 1) * self.classes]
    }
    fn argmax(&self, i: usize) -> usize {
        let r = self.row(i);
        (0..r.len()).fold(0, |b, k| if r[k] > r[b] { k } else { b })
    }
    fn accuracy(&self, y: &[u8]) -> f64 {
        let n = y.len();
        (0..n).filter(|&i| self.argmax(i) == y[i] as usize).count() as f64 / n.max(1) as f64
    }
}

impl Search<'_> {
    fn plan_graph(&mut self, alphas: &BTreeMap<String, u32>) -> Result<Graph, SearchError> {
        let plan = AlphaPlan {
            default: self.opts.max_alpha,
            per_layer: alphas.clone(),
        };
        let stages = approximate_prepared(self.prepared, &plan, self.source)?;
        Ok(stages.output().clone())
    }

    fn run(&mut self, graph: &Graph, n: usize) -> Result<Run, SearchError> {
        self.evaluations += 1;
        let x = self.data.x;
        let per: usize = x.shape[1..].iter().product();
        let b = self.opts.batch.max(1);
        let batches = (0..n.div_ceil(b)).map(|i| {
            let (s, e) = (i * b, ((i + 1) * b).min(n));
            let mut shape = x.shape.clone();
            shape[0] = e - s;
            Tensor {
                shape,
                data: x.data[s * per..e * per].to_vec(),
            }
        });
        let mut logits = Vec::with_capacity(n * 10);
        let mut classes = 0;
        let ranges = evaluate_with_ranges(graph, batches, None, |outs| {
            classes = outs[0].shape.get(1).copied().unwrap_or(1);
            logits.extend_from_slice(&outs[0].data);
        })
        .map_err(|e| SearchError::Exec(e.to_string()))?;
        Ok(Run {
            logits,
            classes,
            overflows: ranges.total_overflows(),
        })
    }

    fn sign(&mut self, alpha: u32) -> Result<CompositeSign, SearchError> {
        if let Some(s) = self.signs.get(&alpha) {
            return Ok(s.clone());
        }
        let s = self
            .source
            .relu_sign(alpha)
            .map_err(|e| SearchError::Options(format!("α = {alpha}: {e}")))?;
        self.signs.insert(alpha, s.clone());
        Ok(s)
    }

    /// The schedule's verdict on a plan: the template with each layer's
    /// polynomial swapped (the schedule reads only the polynomials).
    fn estimate(&mut self, alphas: &BTreeMap<String, u32>) -> Result<Estimate, SearchError> {
        let mut g = self.template.clone();
        for (name, &alpha) in alphas {
            let sign = self.sign(alpha)?;
            let id = g.find(name).ok_or_else(|| {
                SearchError::Options(format!("layer %{name} is not in the approximated graph"))
            })?;
            match g.op_mut(id) {
                Op::ApproxRelu(a) => a.sign = sign,
                Op::ApproxMaxPool(a) => a.sign = sign,
                _ => {
                    return Err(SearchError::Options(format!(
                        "layer %{name} is not an approximation"
                    )))
                }
            }
        }
        self.estimates += 1;
        Ok(self.estimator.estimate(&g)?)
    }

    /// Levels of one approximate ReLU or pairwise maximum at `alpha`.
    fn depth(&mut self, alpha: u32) -> Result<u32, SearchError> {
        Ok(self.sign(alpha)?.depth() + 1)
    }
}

impl Candidate {
    /// Fewer bootstraps, or as many in less estimated time.
    fn cheaper_than(&self, o: &Candidate) -> bool {
        self.bootstraps < o.bootstraps
            || (self.bootstraps == o.bootstraps && self.estimated_seconds < o.estimated_seconds)
    }
}

/// Runs the search (see the module documentation). `params` gives the CKKS parameters the cost is estimated for; `progress` gets
/// one line per phase.
pub fn search(
    prepared: &Prepared,
    source: &dyn SignApproximations,
    params: &dyn ParamsSource,
    data: &Validation,
    opts: &SearchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<SearchReport, SearchError> {
    let start = Instant::now();
    let n = data.y.len();
    if n == 0 || data.x.shape.first() != Some(&n) {
        return Err(SearchError::Options(format!(
            "validation: {} labels for inputs of shape {:?}",
            n, data.x.shape
        )));
    }
    if !(opts.min_alpha >= 1 && opts.min_alpha <= opts.max_alpha) {
        return Err(SearchError::Options(format!(
            "α ladder {}..={} is empty",
            opts.min_alpha, opts.max_alpha
        )));
    }
    if !(opts.max_drop_pt >= 0.0 && opts.max_drop_pt.is_finite()) {
        return Err(SearchError::Options(format!(
            "--max-drop {} must be a non-negative number of points",
            opts.max_drop_pt
        )));
    }
    let probe = opts.probe.clamp(1, n);
    let names: Vec<(String, String)> = prepared
        .folded
        .topo_order()
        .into_iter()
        .filter_map(|id| {
            let node = prepared.folded.node(id);
            matches!(node.op, Op::Relu | Op::MaxPool(_))
                .then(|| (node.name.clone(), node.op.kind().to_string()))
        })
        .collect();
    let uniform_graph =
        approximate_prepared(prepared, &AlphaPlan::uniform(opts.max_alpha), source)?
            .output()
            .clone();
    let estimator = Estimator::new(&uniform_graph, params)?;
    let mut s = Search {
        prepared,
        source,
        data,
        opts,
        signs: BTreeMap::new(),
        template: uniform_graph.clone(),
        estimator,
        estimates: 0,
        evaluations: 0,
        progress,
    };

    // The references: exact and uniform, on the whole split.
    (s.progress)(&format!("exact model on {n} validation samples"));
    let exact = s.run(&prepared.folded, n)?;
    let exact_accuracy = exact.accuracy(data.y);
    (s.progress)(&format!("uniform α = {} on {n} samples", opts.max_alpha));
    let base = s.run(&uniform_graph, n)?;
    let base_est = s.estimate(&BTreeMap::new())?;
    let base_probe_overflows = s.run(&uniform_graph, probe)?.overflows;
    let uniform = Candidate {
        tau: 0.0,
        predicted_error: 0.0,
        bootstraps: base_est.bootstraps,
        estimated_seconds: base_est.seconds,
        alphas: BTreeMap::new(),
        accuracy: base.accuracy(data.y),
        overflows: base.overflows,
        passed: 100.0 * (exact_accuracy - base.accuracy(data.y)) <= opts.max_drop_pt + 1e-9,
    };

    // 1. Sensitivities.
    let flip_cap = (2.0 * opts.max_drop_pt / 100.0 * probe as f64).ceil() as usize + 2;
    let mut errors: Vec<BTreeMap<u32, f64>> = Vec::new();
    let mut probes_of: Vec<Vec<Probe>> = Vec::new();
    let mut floors = Vec::new();
    for (li, (name, _)) in names.iter().enumerate() {
        (s.progress)(&format!(
            "sensitivity of %{name} ({}/{}) on {probe} samples",
            li + 1,
            names.len()
        ));
        let mut e = BTreeMap::from([(opts.max_alpha, 0.0)]);
        let mut probes = Vec::new();
        let mut floor = opts.max_alpha;
        let mut worst = 0f64;
        for alpha in (opts.min_alpha..opts.max_alpha).rev() {
            let g = s.plan_graph(&BTreeMap::from([(name.clone(), alpha)]))?;
            let r = s.run(&g, probe)?;
            let mut mse = 0f64;
            let mut flips = 0;
            for i in 0..probe {
                mse += r
                    .row(i)
                    .iter()
                    .zip(base.row(i))
                    .map(|(a, b)| ((a - b) as f64).powi(2))
                    .sum::<f64>();
                flips += usize::from(r.argmax(i) != base.argmax(i));
            }
            mse /= probe as f64;
            let ok = mse.is_finite() && r.overflows <= base_probe_overflows && flips <= flip_cap;
            probes.push(Probe {
                alpha,
                mse,
                flips,
                overflows: r.overflows,
            });
            if !ok {
                break;
            }
            worst = worst.max(mse);
            e.insert(alpha, worst);
            floor = alpha;
        }
        errors.push(e);
        probes_of.push(probes);
        floors.push(floor);
    }

    // 2.–3. The plan of a threshold, with free precision given back.
    let mut thresholds: Vec<f64> = errors
        .iter()
        .flat_map(|e| e.values().copied())
        .filter(|&v| v > 0.0)
        .collect();
    thresholds.sort_by(f64::total_cmp);
    thresholds.dedup();
    let top = opts.max_alpha;
    let lowest_within = |e: &BTreeMap<u32, f64>, tau: f64| -> u32 {
        e.iter()
            .filter(|(_, &v)| v <= tau)
            .map(|(&a, _)| a)
            .min()
            .unwrap_or(top)
    };
    let mut planned: BTreeMap<usize, Candidate> = BTreeMap::new();
    let mut candidate = |s: &mut Search, k: usize| -> Result<Candidate, SearchError> {
        if let Some(c) = planned.get(&k) {
            return Ok(c.clone());
        }
        let tau = thresholds[k];
        let mut alphas: Vec<u32> = errors.iter().map(|e| lowest_within(e, tau)).collect();
        let to_map = |alphas: &[u32]| -> BTreeMap<String, u32> {
            names
                .iter()
                .zip(alphas)
                .filter(|(_, &a)| a != top)
                .map(|((n, _), &a)| (n.clone(), a))
                .collect()
        };
        let reference = s.estimate(&to_map(&alphas))?;
        let mut order: Vec<usize> = (0..names.len()).collect();
        order.sort_by(|&a, &b| {
            errors[b][&alphas[b]]
                .total_cmp(&errors[a][&alphas[a]])
                .then(a.cmp(&b))
        });
        let mut current = reference;
        for l in order {
            for up in (alphas[l] + 1..=top).rev() {
                let mut trial = alphas.clone();
                trial[l] = up;
                let est = s.estimate(&to_map(&trial))?;
                if est.bootstraps <= reference.bootstraps
                    && est.seconds <= reference.seconds * (1.0 + opts.raise_tolerance)
                {
                    alphas = trial;
                    current = est;
                    break;
                }
            }
        }
        let c = Candidate {
            tau,
            predicted_error: alphas.iter().zip(&errors).map(|(a, e)| e[a]).sum(),
            bootstraps: current.bootstraps,
            estimated_seconds: current.seconds,
            alphas: to_map(&alphas),
            accuracy: f64::NAN,
            overflows: 0,
            passed: false,
        };
        planned.insert(k, c.clone());
        Ok(c)
    };

    // 4. Bisection for the largest passing threshold.
    let mut verified: Vec<Candidate> = Vec::new();
    let mut best: Option<Candidate> = None;
    let (mut lo, mut hi) = (0usize, thresholds.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        let mut c = candidate(&mut s, mid)?;
        let known = verified.iter().find(|v| v.alphas == c.alphas).cloned();
        let c = match known {
            Some(v) => v,
            None => {
                (s.progress)(&format!(
                    "verifying plan τ = {:.3e} ({} bootstraps, {:.0} s) on {n} samples",
                    c.tau, c.bootstraps, c.estimated_seconds
                ));
                let g = s.plan_graph(&c.alphas)?;
                let r = s.run(&g, n)?;
                c.accuracy = r.accuracy(data.y);
                c.overflows = r.overflows;
                c.passed = 100.0 * (exact_accuracy - c.accuracy) <= opts.max_drop_pt + 1e-9
                    && c.overflows <= base.overflows;
                verified.push(c.clone());
                c
            }
        };
        if c.passed {
            if best.as_ref().is_none_or(|b| c.cheaper_than(b)) {
                best = Some(c);
            }
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let chosen = match best {
        Some(b) if b.cheaper_than(&uniform) => b,
        _ => uniform.clone(),
    };

    // The report: per layer, the choice and what moving it would do.
    let mut out_layers = Vec::new();
    let chosen_est = s.estimate(&chosen.alphas)?;
    for (li, (name, op)) in names.iter().enumerate() {
        let alpha = chosen.alphas.get(name).copied().unwrap_or(top);
        let depth = s.depth(alpha)?;
        let with = |a: u32| {
            let mut m = chosen.alphas.clone();
            if a == top {
                m.remove(name);
            } else {
                m.insert(name.clone(), a);
            }
            m
        };
        let why = if alpha < top {
            let up = s.estimate(&with(alpha + 1))?;
            if up.bootstraps > chosen_est.bootstraps {
                format!(
                    "α = {} would cost {} more bootstrap(s)",
                    alpha + 1,
                    up.bootstraps - chosen_est.bootstraps
                )
            } else {
                format!(
                    "α = {} would cost {:+.1} s",
                    alpha + 1,
                    up.seconds - chosen_est.seconds
                )
            }
        } else if floors[li] == top {
            "any lower α alone exceeds the budget or overflows".to_string()
        } else {
            let down = s.estimate(&with(alpha - 1))?;
            if down.bootstraps < chosen_est.bootstraps {
                format!(
                    "α = {} saves a bootstrap alone but not within the budget",
                    alpha - 1
                )
            } else {
                format!("α = {} saves no bootstrap", alpha - 1)
            }
        };
        out_layers.push(LayerChoice {
            name: name.clone(),
            op: op.clone(),
            alpha,
            depth,
            error: errors[li].get(&alpha).copied().unwrap_or(0.0),
            floor: floors[li],
            probes: probes_of[li].clone(),
            why,
        });
    }
    Ok(SearchReport {
        validation_samples: n,
        probe_samples: probe,
        max_drop_pt: opts.max_drop_pt,
        exact_accuracy,
        uniform_alpha: top,
        uniform,
        chosen,
        layers: out_layers,
        verified,
        estimates: s.estimates,
        evaluations: s.evaluations,
        seconds: start.elapsed().as_secs_f64(),
    })
}
