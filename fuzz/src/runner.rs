//! Runs a target over mutated inputs: panics are caught, memory growth and
//! time per input are bounded, every finding is written out.

use crate::{alloc, mutate, Rng, Target};
use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// How a run is made.
#[derive(Clone, Debug)]
pub struct Options {
    /// Mutated inputs to run (the seeds themselves are run first, unmutated).
    pub inputs: u64,
    /// Seed of the mutation streams.
    pub seed: u64,
    /// Most bytes one input may add to live memory.
    pub memory_limit: usize,
    /// Longest one input may run.
    pub time_limit: Duration,
    /// Where findings are written (`<target>-<index>.bin`).
    pub crash_dir: PathBuf,
    /// Stop at the first finding (the default test does); otherwise go on
    /// and count (memory and time findings always abort the process).
    pub stop_at_first: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            inputs: 1000,
            seed: 1,
            memory_limit: 1 << 30,
            time_limit: Duration::from_secs(20),
            crash_dir: PathBuf::from("target/precis-fuzz/crashes"),
            stop_at_first: true,
        }
    }
}

/// Something that must not happen on any input.
#[derive(Clone, Debug)]
pub struct Finding {
    pub index: u64,
    pub what: String,
    /// Where the input was written, if it could be.
    pub file: Option<PathBuf>,
}

/// What a run saw.
#[derive(Clone, Debug)]
pub struct Report {
    pub target: &'static str,
    /// Inputs run, seeds included.
    pub inputs: u64,
    pub accepted: u64,
    pub refused: u64,
    /// Distinct refusal messages, digits masked (a rough picture of how many
    /// checks the inputs reached).
    pub distinct_refusals: usize,
    pub findings: Vec<Finding>,
    pub seconds: f64,
    /// Largest growth of live memory for one input, and that input's size.
    pub peak_memory: usize,
    pub peak_memory_input_len: usize,
    /// Slowest input.
    pub slowest: Duration,
}

impl Report {
    pub fn inputs_per_second(&self) -> f64 {
        self.inputs as f64 / self.seconds.max(1e-9)
    }
}

/// The input being run, for the abort paths (memory limit, watchdog).
struct Current {
    target: &'static str,
    index: u64,
    input: Vec<u8>,
    crash_dir: PathBuf,
}

static CURRENT: Mutex<Option<Current>> = Mutex::new(None);
/// Milliseconds since [`epoch`] at which the current input started; 0 idle.
static STARTED_MS: AtomicU64 = AtomicU64::new(0);
static TIME_LIMIT_MS: AtomicU64 = AtomicU64::new(20_000);
static LAST_PANIC: Mutex<String> = Mutex::new(String::new());
/// One run at a time: the allocator's and the watchdog's state is global.
static RUN: Mutex<()> = Mutex::new(());

thread_local! {
    /// Set while a target runs on this thread or on threads it waits for
    /// (rayon workers' panics are re-raised on this thread).
    static IN_TARGET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn epoch() -> Instant {
    static E: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *E.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64 + 1
}

fn save(dir: &std::path::Path, target: &str, index: u64, input: &[u8]) -> Option<PathBuf> {
    std::fs::create_dir_all(dir).ok()?;
    let path = dir.join(format!("{target}-{index}.bin"));
    std::fs::write(&path, input).ok()?;
    Some(path)
}

/// Reports the current input as a finding and aborts the process (memory
/// limit, hang: neither can be unwound).
pub(crate) fn abort_with_finding(what: &str) -> ! {
    let saved = CURRENT.try_lock().ok().and_then(|c| {
        c.as_ref().map(|c| {
            let file = save(&c.crash_dir, c.target, c.index, &c.input);
            (c.target, c.index, file)
        })
    });
    match saved {
        Some((target, index, file)) => eprintln!(
            "precis-fuzz FINDING: target {target}, input {index}: {what}; input written to {}",
            file.map_or("(could not write)".into(), |f| f.display().to_string())
        ),
        None => eprintln!("precis-fuzz FINDING: {what}"),
    }
    std::process::abort()
}

fn install_hooks() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Panics inside a target are recorded, not printed; any other panic
        // (a failing test, a bug of the harness) goes to the previous hook.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_TARGET.with(|t| t.get()) {
                return previous(info);
            }
            let msg = match info.payload().downcast_ref::<&str>() {
                Some(s) => s.to_string(),
                None => info
                    .payload()
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "(non-string panic payload)".into()),
            };
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            if let Ok(mut p) = LAST_PANIC.lock() {
                *p = format!("{msg}{at}");
            }
        }));
        std::thread::Builder::new()
            .name("precis-fuzz-watchdog".into())
            .spawn(|| loop {
                std::thread::sleep(Duration::from_millis(100));
                let started = STARTED_MS.load(Relaxed);
                let limit = TIME_LIMIT_MS.load(Relaxed);
                if started != 0 && now_ms().saturating_sub(started) > limit {
                    abort_with_finding(&format!("hang: one input ran over {limit} ms"));
                }
            })
            .expect("watchdog thread");
    });
}

/// Masks digit runs so that messages differing only in numbers count once.
fn shape_of(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len().min(120));
    let mut in_digits = false;
    for c in msg.chars().take(120) {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            in_digits = false;
            out.push(c);
        }
    }
    out
}

/// Runs the seeds, then `options.inputs` mutated inputs, of `target`.
pub fn run(target: &Target, options: &Options) -> Report {
    let _one_at_a_time = RUN.lock().unwrap_or_else(|e| e.into_inner());
    install_hooks();
    alloc::set_limit(options.memory_limit);
    TIME_LIMIT_MS.store(options.time_limit.as_millis() as u64, Relaxed);
    let corpus = (target.seeds)();
    assert!(!corpus.is_empty(), "target {} has no seeds", target.name);
    let max_len = corpus.iter().map(Vec::len).max().unwrap_or(0) * 2 + 4096;
    let mut report = Report {
        target: target.name,
        inputs: 0,
        accepted: 0,
        refused: 0,
        distinct_refusals: 0,
        findings: Vec::new(),
        seconds: 0.0,
        peak_memory: 0,
        peak_memory_input_len: 0,
        slowest: Duration::ZERO,
    };
    let mut shapes = HashSet::new();
    let start = Instant::now();
    let total = corpus.len() as u64 + options.inputs;
    for index in 0..total {
        let input = match corpus.get(index as usize) {
            Some(seed) => seed.clone(),
            None => {
                let mut rng = Rng::for_input(options.seed, target.name, index);
                let mut data = corpus[rng.below(corpus.len())].clone();
                mutate(&mut rng, &mut data, &corpus, target.dictionary, max_len);
                if let Some(reseal) = target.reseal {
                    if !rng.one_in(4) {
                        reseal(&mut data);
                    }
                }
                data
            }
        };
        *CURRENT.lock().expect("current input") = Some(Current {
            target: target.name,
            index,
            input: input.clone(),
            crash_dir: options.crash_dir.clone(),
        });
        let t0 = Instant::now();
        let base = alloc::start_input();
        STARTED_MS.store(now_ms(), Relaxed);
        IN_TARGET.with(|t| t.set(true));
        let outcome = catch_unwind(AssertUnwindSafe(|| (target.parse)(&input)));
        IN_TARGET.with(|t| t.set(false));
        STARTED_MS.store(0, Relaxed);
        let peak = alloc::peak_growth(base);
        let took = t0.elapsed();
        report.slowest = report.slowest.max(took);
        if peak > report.peak_memory {
            report.peak_memory = peak;
            report.peak_memory_input_len = input.len();
        }
        report.inputs += 1;
        let finding = match outcome {
            Ok(Ok(())) => {
                report.accepted += 1;
                None
            }
            Ok(Err(msg)) => {
                report.refused += 1;
                if shapes.len() < 100_000 {
                    shapes.insert(shape_of(&msg));
                }
                if msg.contains('\n') || msg.trim().is_empty() {
                    Some(format!("refusal is not one line: {msg:?}"))
                } else {
                    None
                }
            }
            Err(_) => Some(format!(
                "panic: {}",
                LAST_PANIC.lock().map(|p| p.clone()).unwrap_or_default()
            )),
        };
        if let Some(what) = finding {
            let file = save(&options.crash_dir, target.name, index, &input);
            report.findings.push(Finding { index, what, file });
            if options.stop_at_first {
                break;
            }
        }
    }
    *CURRENT.lock().expect("current input") = None;
    report.seconds = start.elapsed().as_secs_f64();
    report.distinct_refusals = shapes.len();
    report
}
