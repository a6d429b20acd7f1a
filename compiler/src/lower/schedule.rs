//! Bootstrap placement by dynamic programming over the level graph.
//!
//! The *level graph* has a node per ciphertext value the circuit computes
//! (tensor values and the intermediate results of the polynomials: each
//! component of a composite sign, each approximate maximum) and an edge per
//! unit of work from an input to an output, labelled with the levels it
//! consumes. A value's level is the lowest its in-edges deliver; an edge
//! from a value at level `a` can deliver its output at any `b ≤ a − levels`.
//! Any value at or below the bootstrap's output level may be bootstrapped
//! once (costing one bootstrap per ciphertext); every edge leaving it may
//! then read the refreshed copy at the bootstrap's output level instead.
//! Edges that need their input at a canonical scale (a polynomial's first
//! product, an exact sum) pay one more level to retarget a refreshed copy
//! whose scale is not canonical.
//!
//! For a series-parallel graph (chains of residual blocks, ReLUs whose
//! input also feeds their final product, max-pooling rounds) the minimum
//! is found exactly: every edge gets a table `T[input state][output level]`
//! of the least cost (bootstraps, then estimated seconds), input states
//! being the source's level with or without a refreshed copy; series
//! composition minimises over the middle node's level and whether it is
//! bootstrapped, parallel composition (edges sharing both ends) adds the
//! tables for the same input state, so a shared source is bootstrapped at
//! most once. The reductions run until one edge joins the input to the
//! output; the choices are then read back top-down. This is Orion's
//! level-DAG shortest path generalised to nested parallel regions, with
//! bootstraps allowed between the components of a composite polynomial.

use std::collections::BTreeMap;

/// How an edge treats a refreshed (bootstrapped) input's scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ready {
    /// Any scale: the unit chooses its plaintext scale (linear transforms,
    /// the non-polynomial factor of a product).
    Any,
    /// A polynomial's input: near the canonical scale.
    Poly,
    /// An addition without an op of its own: exactly the partner's scale.
    Exact,
}

#[derive(Clone, Debug)]
pub struct LNode {
    pub name: String,
    pub cts: usize,
    /// May be bootstrapped (its range is known).
    pub bootstrappable: bool,
}

#[derive(Clone, Debug)]
pub struct LEdge {
    pub from: usize,
    pub to: usize,
    pub levels: u32,
    pub ready: Ready,
    /// Estimated seconds of the unit as a function of the level it runs at.
    pub time: Vec<f64>,
}

#[derive(Default)]
pub struct LevelGraph {
    pub nodes: Vec<LNode>,
    pub edges: Vec<LEdge>,
}

impl LevelGraph {
    pub fn node(&mut self, name: impl Into<String>, cts: usize, bootstrappable: bool) -> usize {
        self.nodes.push(LNode {
            name: name.into(),
            cts,
            bootstrappable,
        });
        self.nodes.len() - 1
    }

    pub fn edge(
        &mut self,
        from: usize,
        to: usize,
        levels: u32,
        ready: Ready,
        time: Vec<f64>,
    ) -> usize {
        self.edges.push(LEdge {
            from,
            to,
            levels,
            ready,
            time,
        });
        self.edges.len() - 1
    }
}

/// What the scheduler must know about the parameters.
#[derive(Clone, Debug)]
pub struct LevelModel {
    /// Level of a fresh ciphertext (the input).
    pub fresh: u32,
    /// Highest level in the chain.
    pub top: u32,
    /// Level a bootstrap returns at (`None`: no bootstrapping).
    pub bootstrap_level: Option<u32>,
    /// Extra levels a refreshed copy needs before a polynomial (its scale
    /// is not near the canonical one).
    pub bootstrap_poly_fix: u32,
    /// Seconds of one bootstrap of one ciphertext.
    pub bootstrap_seconds: f64,
}

/// `(bootstraps, seconds)`, compared lexicographically.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Cost(u32, f64);

const INF: Cost = Cost(u32::MAX, f64::INFINITY);

impl Cost {
    fn add(self, o: Cost) -> Cost {
        if self.0 == u32::MAX || o.0 == u32::MAX {
            return INF;
        }
        Cost(self.0 + o.0, self.1 + o.1)
    }
    fn less(self, o: Cost) -> bool {
        self.0 < o.0 || (self.0 == o.0 && self.1 < o.1 - 1e-12)
    }
    fn finite(self) -> bool {
        self.0 != u32::MAX
    }
}

/// Input states: `(level, refreshed copy available)`, index `2·level + bs`.
fn state(level: u32, bs: bool) -> usize {
    2 * level as usize + usize::from(bs)
}

enum Tree {
    Base(usize),
    /// `first`, then `mid`, then `second`; `choice[s][c] = (b, bs)`.
    Series {
        first: Box<Comp>,
        mid: usize,
        second: Box<Comp>,
        choice: Vec<Vec<(u32, bool)>>,
    },
    Parallel(Vec<Comp>),
}

struct Comp {
    from: usize,
    to: usize,
    /// `table[s][b]`.
    table: Vec<Vec<Cost>>,
    tree: Tree,
}

/// The scheduler's decisions.
#[derive(Clone, Debug, Default)]
pub struct Schedule {
    /// The level each node's value is delivered at.
    pub level: Vec<u32>,
    /// Whether each node is bootstrapped (once).
    pub bootstrapped: Vec<bool>,
    /// Whether each edge reads its source's refreshed copy.
    pub uses_copy: Vec<bool>,
    pub bootstraps: u32,
    pub seconds: f64,
}

/// Why no schedule exists.
#[derive(Debug, Clone, PartialEq)]
pub enum ScheduleError {
    NotSeriesParallel(String),
    Infeasible(String),
}

pub fn schedule(
    g: &LevelGraph,
    source: usize,
    sink: usize,
    m: &LevelModel,
) -> Result<Schedule, ScheduleError> {
    let top = m.top;
    let states = 2 * (top as usize + 1);
    let levels = top as usize + 1;
    let fix = |e: &LEdge| match e.ready {
        Ready::Any => 0,
        Ready::Poly => m.bootstrap_poly_fix,
        Ready::Exact => 1,
    };
    let base = |ei: usize| -> Comp {
        let e = &g.edges[ei];
        let mut table = vec![vec![INF; levels]; states];
        for a in 0..=top {
            for bs in [false, true] {
                for b in 0..=top {
                    let run = b + e.levels;
                    let natural = a >= run;
                    let copy = bs && m.bootstrap_level.is_some_and(|l| l >= run + fix(e));
                    if natural || copy {
                        let t = e.time.get(run as usize).copied().unwrap_or(0.0);
                        table[state(a, bs)][b as usize] = Cost(0, t);
                    }
                }
            }
        }
        Comp {
            from: e.from,
            to: e.to,
            table,
            tree: Tree::Base(ei),
        }
    };
    let boot_cost = |n: usize| {
        Cost(
            g.nodes[n].cts as u32,
            g.nodes[n].cts as f64 * m.bootstrap_seconds,
        )
    };
    let series = |a: Comp, mid: usize, b: Comp| -> Comp {
        let node = &g.nodes[mid];
        let mut table = vec![vec![INF; levels]; states];
        let mut choice = vec![vec![(0u32, false); levels]; states];
        for s in 0..states {
            for c in 0..levels {
                let mut best = INF;
                let mut arg = (0, false);
                for bl in 0..=top {
                    let first = a.table[s][bl as usize];
                    if !first.finite() {
                        continue;
                    }
                    let plain = first.add(b.table[state(bl, false)][c]);
                    if plain.less(best) {
                        best = plain;
                        arg = (bl, false);
                    }
                    let may_boot =
                        node.bootstrappable && m.bootstrap_level.is_some_and(|l| bl <= l);
                    if may_boot {
                        let booted = first.add(boot_cost(mid)).add(b.table[state(bl, true)][c]);
                        if booted.less(best) {
                            best = booted;
                            arg = (bl, true);
                        }
                    }
                }
                table[s][c] = best;
                choice[s][c] = arg;
            }
        }
        Comp {
            from: a.from,
            to: b.to,
            table,
            tree: Tree::Series {
                first: Box::new(a),
                mid,
                second: Box::new(b),
                choice,
            },
        }
    };
    let parallel = |parts: Vec<Comp>| -> Comp {
        let mut table = vec![vec![Cost(0, 0.0); levels]; states];
        for p in &parts {
            for (row, prow) in table.iter_mut().zip(&p.table) {
                for (t, &c) in row.iter_mut().zip(prow) {
                    *t = t.add(c);
                }
            }
        }
        Comp {
            from: parts[0].from,
            to: parts[0].to,
            table,
            tree: Tree::Parallel(parts),
        }
    };

    // Reduce.
    let mut comps: Vec<Option<Comp>> = (0..g.edges.len()).map(|e| Some(base(e))).collect();
    loop {
        // Parallel merges.
        let mut by_ends: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
        for (i, c) in comps.iter().enumerate() {
            if let Some(c) = c {
                by_ends.entry((c.from, c.to)).or_default().push(i);
            }
        }
        let mut changed = false;
        for ids in by_ends.values() {
            if ids.len() > 1 {
                let parts: Vec<Comp> = ids
                    .iter()
                    .map(|&i| comps[i].take().expect("live"))
                    .collect();
                comps[ids[0]] = Some(parallel(parts));
                changed = true;
            }
        }
        // Series merges.
        let mut indeg: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut outdeg: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, c) in comps.iter().enumerate() {
            if let Some(c) = c {
                outdeg.entry(c.from).or_default().push(i);
                indeg.entry(c.to).or_default().push(i);
            }
        }
        for (&v, ins) in &indeg {
            if v == source || v == sink || ins.len() != 1 {
                continue;
            }
            let Some(outs) = outdeg.get(&v) else { continue };
            if outs.len() != 1 {
                continue;
            }
            let (i, o) = (ins[0], outs[0]);
            if comps[i].is_none() || comps[o].is_none() || i == o {
                continue;
            }
            let a = comps[i].take().expect("live");
            let b = comps[o].take().expect("live");
            comps[i] = Some(series(a, v, b));
            changed = true;
            break;
        }
        let live: Vec<usize> = (0..comps.len()).filter(|&i| comps[i].is_some()).collect();
        if live.len() == 1 {
            let c = comps[live[0]].as_ref().expect("live");
            if c.from == source && c.to == sink {
                break;
            }
        }
        if !changed {
            let stuck: Vec<String> = indeg
                .iter()
                .filter(|(&v, ins)| {
                    v != sink && (ins.len() > 1 || outdeg.get(&v).is_some_and(|o| o.len() > 1))
                })
                .map(|(&v, _)| g.nodes[v].name.clone())
                .take(3)
                .collect();
            return Err(ScheduleError::NotSeriesParallel(format!(
                "the network's value graph is not series-parallel around {}",
                stuck.join(", ")
            )));
        }
    }
    let root = comps.into_iter().flatten().next().expect("one component");
    let s0 = state(m.fresh, false);
    let cost = root.table[s0][0];
    if !cost.finite() {
        return Err(ScheduleError::Infeasible(
            "no placement of bootstraps fits the levels (a single unit needs more levels than a bootstrap leaves)".into(),
        ));
    }
    let mut out = Schedule {
        level: vec![0; g.nodes.len()],
        bootstrapped: vec![false; g.nodes.len()],
        uses_copy: vec![false; g.edges.len()],
        bootstraps: cost.0,
        seconds: cost.1,
    };
    out.level[source] = m.fresh;
    fn assign(c: &Comp, s: usize, b: u32, g: &LevelGraph, m: &LevelModel, out: &mut Schedule) {
        match &c.tree {
            Tree::Base(e) => {
                let edge = &g.edges[*e];
                let a = (s / 2) as u32;
                out.uses_copy[*e] = a < b + edge.levels;
                let _ = m;
            }
            Tree::Series {
                first,
                mid,
                second,
                choice,
            } => {
                let (bl, bs) = choice[s][b as usize];
                out.level[*mid] = bl;
                out.bootstrapped[*mid] = bs;
                assign(first, s, bl, g, m, out);
                assign(second, state(bl, bs), b, g, m, out);
            }
            Tree::Parallel(parts) => {
                for p in parts {
                    assign(p, s, b, g, m, out);
                }
            }
        }
    }
    assign(&root, s0, 0, g, m, &mut out);
    Ok(out)
}

/// The longest path of level costs from `source` (the critical-path depth).
pub fn critical_depth(g: &LevelGraph, source: usize) -> u32 {
    let mut depth = vec![None::<u32>; g.nodes.len()];
    depth[source] = Some(0);
    // Edges are added in topological order of their targets by the lowering;
    // iterate to a fixpoint to be safe.
    for _ in 0..g.nodes.len() {
        let mut changed = false;
        for e in &g.edges {
            if let Some(d) = depth[e.from] {
                let v = d + e.levels;
                if depth[e.to].is_none_or(|x| v > x) {
                    depth[e.to] = Some(v);
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    depth.into_iter().flatten().max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(fresh: u32, bs: u32) -> LevelModel {
        LevelModel {
            fresh,
            top: fresh.max(bs),
            bootstrap_level: Some(bs),
            bootstrap_poly_fix: 0,
            bootstrap_seconds: 10.0,
        }
    }

    #[test]
    fn a_chain_needs_the_lower_bound() {
        // 10 units of 5 levels, fresh 12, 10 levels after a bootstrap:
        // 50 − 12 = 38 levels to supply → ⌈38/10⌉ = 4 bootstraps.
        let mut g = LevelGraph::default();
        let mut prev = g.node("in", 1, false);
        let src = prev;
        for i in 0..10 {
            let n = g.node(format!("u{i}"), 1, true);
            g.edge(prev, n, 5, Ready::Any, vec![0.0; 13]);
            prev = n;
        }
        let s = schedule(&g, src, prev, &model(12, 10)).unwrap();
        assert_eq!(s.bootstraps, 4);
    }

    #[test]
    fn a_shared_source_is_bootstrapped_once() {
        // x feeds a 8-level chain and directly the join: with x at level 3
        // both branches need x refreshed; one bootstrap serves both.
        let mut g = LevelGraph::default();
        let src = g.node("in", 1, false);
        let x = g.node("x", 1, true);
        g.edge(src, x, 7, Ready::Any, vec![0.0; 11]);
        let a = g.node("a", 1, true);
        g.edge(x, a, 8, Ready::Any, vec![0.0; 11]);
        let y = g.node("y", 1, true);
        g.edge(a, y, 1, Ready::Any, vec![0.0; 11]);
        g.edge(x, y, 1, Ready::Any, vec![0.0; 11]);
        let s = schedule(&g, src, y, &model(10, 10)).unwrap();
        assert_eq!(s.bootstraps, 1);
        assert!(s.bootstrapped[x]);
    }

    #[test]
    fn not_series_parallel_is_reported() {
        let mut g = LevelGraph::default();
        let s = g.node("s", 1, false);
        let a = g.node("a", 1, true);
        let b = g.node("b", 1, true);
        let t = g.node("t", 1, true);
        g.edge(s, a, 1, Ready::Any, vec![0.0; 6]);
        g.edge(s, b, 1, Ready::Any, vec![0.0; 6]);
        g.edge(a, b, 1, Ready::Any, vec![0.0; 6]);
        g.edge(a, t, 1, Ready::Any, vec![0.0; 6]);
        g.edge(b, t, 1, Ready::Any, vec![0.0; 6]);
        // a → b crosses the two branches: the Wheatstone bridge.
        assert!(matches!(
            schedule(&g, s, t, &model(5, 5)),
            Err(ScheduleError::NotSeriesParallel(_))
        ));
    }
}
