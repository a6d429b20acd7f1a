//! `precis approx`: optimal composite polynomial approximations of ReLU and
//! sign (the minimax engine of `compiler::minimax`).

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use compiler::minimax::approx::{MAX_ALPHA, MAX_DEGREE, MIN_ALPHA};
use compiler::minimax::dd::{det_log2, Dd};
use compiler::minimax::{Approximation, Cache, CacheStatus, Mode, Objective, Request, SignApprox};
use std::fmt::Write as _;
use std::path::PathBuf;

/// What to approximate.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeArg {
    /// ReLU(x) ≈ x(1 + p(x))/2 with error ≤ 2^-α on [-1, 1].
    Relu,
    /// sgn(x) with error ≤ 2^(1-α) on 2^-α ≤ |x| ≤ 1 (comparison).
    Sign,
}

/// What the degree search minimises.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ObjectiveArg {
    /// Minimum depth, then minimum non-scalar multiplications.
    MinDepth,
    /// Minimum non-scalar multiplications, then minimum depth.
    MinMults,
}

/// Arguments of `precis approx`.
#[derive(Args, Debug)]
pub struct ApproxArgs {
    /// Precision α (4..=20).
    #[arg(long)]
    pub alpha: u32,
    /// Function to approximate.
    #[arg(long, value_enum, default_value = "relu")]
    pub mode: ModeArg,
    /// Search objective.
    #[arg(long, value_enum, default_value = "min-depth")]
    pub objective: ObjectiveArg,
    /// Largest degree of one component (odd, 3..=63).
    #[arg(long, default_value_t = 31)]
    pub max_degree: usize,
    /// Print the full result as JSON (Chebyshev coefficients, intervals,
    /// evaluation plans, certificates).
    #[arg(long)]
    pub json: bool,
    /// Write the error curve as an SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Do not read or write the on-disk cache.
    #[arg(long)]
    pub no_cache: bool,
}

/// Runs `precis approx`.
pub fn run(args: &ApproxArgs) -> Result<()> {
    if !(MIN_ALPHA..=MAX_ALPHA).contains(&args.alpha) {
        bail!(
            "--alpha must be between {MIN_ALPHA} and {MAX_ALPHA} (got {})",
            args.alpha
        );
    }
    if args.max_degree % 2 == 0 || !(3..=MAX_DEGREE).contains(&args.max_degree) {
        bail!(
            "--max-degree must be odd and between 3 and {MAX_DEGREE} (got {})",
            args.max_degree
        );
    }
    let req = Request {
        alpha: args.alpha,
        mode: match args.mode {
            ModeArg::Relu => Mode::Relu,
            ModeArg::Sign => Mode::Sign,
        },
        objective: match args.objective {
            ObjectiveArg::MinDepth => Objective::MinDepth,
            ObjectiveArg::MinMults => Objective::MinMults,
        },
        max_degree: args.max_degree,
    };
    let cache = if args.no_cache {
        Cache::disabled()
    } else {
        Cache::from_env()
    };
    let (result, status) = cache.get(&req).context("minimax engine")?;
    if let Some(path) = &args.plot {
        std::fs::write(path, error_plot(&result))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print!("{}", summary(&result));
        let origin = match (status, cache.path(&req)) {
            (CacheStatus::Hit, Some(p)) => format!("read from cache {}", p.display()),
            (CacheStatus::Miss, Some(p)) => format!("computed, cached in {}", p.display()),
            (CacheStatus::Corrupt, Some(p)) => {
                format!(
                    "cache entry was corrupt: recomputed, rewrote {}",
                    p.display()
                )
            }
            _ => "computed (cache disabled)".to_string(),
        };
        println!("  {origin}");
        if let Some(path) = &args.plot {
            println!("  error curve written to {}", path.display());
        }
    }
    Ok(())
}

fn bits(e: f64) -> f64 {
    -det_log2(e)
}

fn degrees(s: &SignApprox) -> String {
    let d: Vec<String> = s.degrees.iter().map(|d| d.to_string()).collect();
    format!("{{{}}}", d.join(", "))
}

/// Human-readable report.
pub fn summary(result: &Approximation) -> String {
    let mut o = String::new();
    let s = result.sign();
    let obj = match s.objective {
        Objective::MinDepth => "minimum depth, then multiplications",
        Objective::MinMults => "minimum multiplications, then depth",
    };
    match result {
        Approximation::Relu(r) => {
            let _ = writeln!(
                o,
                "ReLU approximation r(x) = x(1 + p(x))/2, alpha = {}",
                r.alpha
            );
            let _ = writeln!(o, "  search: {obj}; component degrees <= {}", s.max_degree);
            let _ = writeln!(
                o,
                "  gap epsilon = {}*2^-{} = {:.6e}; sign target 2^-{} on [epsilon, 1]",
                r.c,
                r.alpha,
                s.epsilon,
                r.alpha - 1
            );
            let _ = writeln!(o, "  degrees {}", degrees(s));
            let _ = writeln!(o, "  depth: sign {}, ReLU {}", s.depth, r.depth);
            let _ = writeln!(
                o,
                "  non-scalar multiplications: sign {}, ReLU {}",
                s.mults, r.mults
            );
            let _ = writeln!(
                o,
                "  certified max |p - sgn| on [epsilon, 1]: {:.6e} ({:.3} bits)",
                s.error,
                bits(s.error)
            );
            let _ = writeln!(
                o,
                "  certified max |r - ReLU| on [-1, 1]: {:.6e} ({:.3} bits; gap part {:.3} bits), target 2^-{}",
                r.error,
                bits(r.error),
                bits(r.gap_error),
                r.alpha
            );
            let _ = writeln!(o, "  on [-B, B]: B*r(x/B), error <= B*{:.6e}", r.error);
        }
        Approximation::Sign(s) => {
            let _ = writeln!(o, "sign approximation (comparison), alpha = {}", s.alpha);
            let _ = writeln!(o, "  search: {obj}; component degrees <= {}", s.max_degree);
            let _ = writeln!(
                o,
                "  gap epsilon = 2^-{}; target 2^-{} on [epsilon, 1]",
                s.alpha,
                s.alpha - 1
            );
            let _ = writeln!(o, "  degrees {}", degrees(s));
            let _ = writeln!(o, "  depth {}", s.depth);
            let _ = writeln!(o, "  non-scalar multiplications {}", s.mults);
            let _ = writeln!(
                o,
                "  certified max |p - sgn| on [epsilon, 1]: {:.6e} ({:.3} bits)",
                s.error,
                bits(s.error)
            );
        }
    }
    for (i, c) in s.components.iter().enumerate() {
        let _ = writeln!(
            o,
            "  p{}: degree {:2} on [{:.6e}, {:.6}] -> [{:.6e}, {:.6}]; minimax error {:.3e}; Remez {} iterations (spread {:.1e}); plan {} mults, depth {}",
            i + 1,
            c.degree,
            c.interval[0],
            c.interval[1],
            c.image[0],
            c.image[1],
            c.minimax_error,
            c.remez.iterations,
            c.remez.spread,
            c.plan.mults,
            c.plan.depth
        );
    }
    let _ = writeln!(o, "  degree search solved {} Remez problems", s.remez_calls);
    o
}

/// SVG of `log2 |error|` over `[-1, 1]`.
pub fn error_plot(result: &Approximation) -> String {
    let s = result.sign();
    let relu = matches!(result, Approximation::Relu(_));
    let n = 2000;
    let err = |x: f64| -> f64 {
        let p = s.eval_dd(Dd::from_f64(x)).to_f64();
        let sg = if x > 0.0 {
            1.0
        } else if x < 0.0 {
            -1.0
        } else {
            0.0
        };
        if relu {
            0.5 * x.abs() * (p - sg).abs()
        } else {
            (p - sg).abs()
        }
    };
    let target = if relu {
        -(s.alpha as f64)
    } else {
        1.0 - s.alpha as f64
    };
    let (ymin, ymax) = ((target - 12.0).floor(), 1.0);
    let (w, h, ml, mr, mt, mb) = (900.0, 420.0, 60.0, 20.0, 40.0, 45.0);
    let px = |x: f64| ml + (x + 1.0) / 2.0 * (w - ml - mr);
    let py = |y: f64| mt + (ymax - y.clamp(ymin, ymax)) / (ymax - ymin) * (h - mt - mb);
    let mut pts = String::new();
    for i in 0..=n {
        let x = -1.0 + 2.0 * i as f64 / n as f64;
        let e = err(x);
        let y = if e > 0.0 { det_log2(e) } else { ymin };
        let _ = write!(pts, "{:.2},{:.2} ", px(x), py(y));
    }
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let title = format!(
        "{} alpha={} degrees {}: log2 |error| (certified {:.2} bits)",
        if relu { "ReLU" } else { "sign" },
        s.alpha,
        degrees(s),
        match result {
            Approximation::Relu(r) => bits(r.error),
            Approximation::Sign(s) => bits(s.error),
        }
    );
    let _ = writeln!(
        o,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{title}</text>"#,
        w / 2.0
    );
    // Axes and grid.
    let mut y = ymin;
    while y <= ymax {
        let _ = writeln!(
            o,
            r##"<line x1="{ml}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#ddd"/><text x="{2}" y="{3:.1}" text-anchor="end">{y}</text>"##,
            py(y),
            w - mr,
            ml - 6.0,
            py(y) + 4.0
        );
        y += 2.0;
    }
    for x in [-1.0, -0.5, 0.0, 0.5, 1.0] {
        let _ = writeln!(
            o,
            r##"<line x1="{0:.1}" y1="{mt}" x2="{0:.1}" y2="{1}" stroke="#ddd"/><text x="{0:.1}" y="{2}" text-anchor="middle">{x}</text>"##,
            px(x),
            h - mb,
            h - mb + 16.0
        );
    }
    let _ = writeln!(
        o,
        r#"<text x="{}" y="{}" text-anchor="middle">x</text>"#,
        (w + ml) / 2.0,
        h - 8.0
    );
    let _ = writeln!(
        o,
        r##"<line x1="{ml}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#c00" stroke-dasharray="6,4"/><text x="{1}" y="{2:.1}" text-anchor="end" fill="#c00">target 2^{target}</text>"##,
        py(target),
        w - mr,
        py(target) - 4.0
    );
    for x in [-s.epsilon, s.epsilon] {
        let _ = writeln!(
            o,
            r##"<line x1="{0:.1}" y1="{mt}" x2="{0:.1}" y2="{1}" stroke="#888" stroke-dasharray="2,3"/>"##,
            px(x),
            h - mb
        );
    }
    let _ = writeln!(
        o,
        r##"<polyline fill="none" stroke="#1f5fbf" stroke-width="1" points="{pts}"/>"##
    );
    let _ = writeln!(o, "</svg>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use compiler::minimax::{relu, sign};

    fn args(alpha: u32) -> ApproxArgs {
        ApproxArgs {
            alpha,
            mode: ModeArg::Relu,
            objective: ObjectiveArg::MinDepth,
            max_degree: 31,
            json: false,
            plot: None,
            no_cache: true,
        }
    }

    #[test]
    fn approx_rejects_out_of_range_parameters_clearly() {
        let e = run(&args(3)).unwrap_err().to_string();
        assert!(e.contains("--alpha must be between 4 and 20"), "{e}");
        let e = run(&args(21)).unwrap_err().to_string();
        assert!(e.contains("(got 21)"), "{e}");
        let mut a = args(8);
        a.max_degree = 32;
        let e = run(&a).unwrap_err().to_string();
        assert!(e.contains("--max-degree must be odd"), "{e}");
    }

    #[test]
    fn approx_summary_reports_degrees_depth_mults_and_bits() {
        let r = Approximation::Relu(relu(6, Objective::MinDepth, 31).unwrap());
        let s = summary(&r);
        assert!(s.contains("degrees {3, 7}"), "{s}");
        assert!(s.contains("depth: sign 5, ReLU 6"), "{s}");
        assert!(
            s.contains("non-scalar multiplications: sign 7, ReLU 8"),
            "{s}"
        );
        assert!(s.contains("certified max |r - ReLU| on [-1, 1]"), "{s}");
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"coeffs\"") && json.contains("\"interval\""));
        let back: Approximation = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        let s = summary(&Approximation::Sign(
            sign(8, Objective::MinDepth, 31).unwrap(),
        ));
        assert!(
            s.contains("sign approximation (comparison), alpha = 8"),
            "{s}"
        );
    }

    #[test]
    fn approx_plot_is_an_svg_error_curve() {
        let r = Approximation::Relu(relu(7, Objective::MinDepth, 31).unwrap());
        let svg = error_plot(&r);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        let pts = svg
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(pts.split_whitespace().count(), 2001);
        assert!(svg.contains("target 2^-7"));
    }
}
