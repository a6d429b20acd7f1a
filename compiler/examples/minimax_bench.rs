//! Times the minimax engine: every α = 4…20 (ReLU mode, minimum depth,
//! degrees ≤ 31) from scratch into an empty cache, then again from the cache.
//!
//! `cargo run --release -p compiler --example minimax_bench`

use compiler::minimax::{Cache, CacheStatus, Mode, Objective, Request};
use std::time::Instant;

fn main() {
    let dir = std::env::temp_dir().join(format!("precis-minimax-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cache = Cache::at(&dir);
    let reqs: Vec<Request> = (4..=20)
        .map(|alpha| Request {
            alpha,
            mode: Mode::Relu,
            objective: Objective::MinDepth,
            max_degree: 31,
        })
        .collect();
    println!(
        "alpha  degrees                 depth  mults  error bits  remez  scratch ms  cached ms"
    );
    let (mut t_scratch, mut t_cached) = (0.0, 0.0);
    for req in &reqs {
        let t = Instant::now();
        let (r, s) = cache.get(req).expect("engine");
        let a = t.elapsed().as_secs_f64();
        assert_eq!(s, CacheStatus::Miss);
        let t = Instant::now();
        let (r2, s2) = cache.get(req).expect("cache");
        let b = t.elapsed().as_secs_f64();
        assert_eq!(s2, CacheStatus::Hit);
        assert_eq!(r, r2);
        t_scratch += a;
        t_cached += b;
        let sign = r.sign();
        let (depth, mults, bits) = match &r {
            compiler::minimax::Approximation::Relu(x) => (x.depth, x.mults, x.error_bits()),
            compiler::minimax::Approximation::Sign(x) => (x.depth, x.mults, x.error_bits()),
        };
        println!(
            "{:5}  {:22}  {:5}  {:5}  {:10.3}  {:5}  {:10.1}  {:9.3}",
            req.alpha,
            format!("{:?}", sign.degrees),
            depth,
            mults,
            bits,
            sign.remez_calls,
            a * 1e3,
            b * 1e3
        );
    }
    println!(
        "total: scratch {:.3} s, cached {:.2} ms",
        t_scratch,
        t_cached * 1e3
    );
    let _ = std::fs::remove_dir_all(&dir);
}
