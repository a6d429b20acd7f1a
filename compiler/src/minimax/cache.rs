//! On-disk cache of engine results.
//!
//! Location: `$PRECIS_CACHE`, else `$XDG_CACHE_HOME/precis`, else
//! `$HOME/.cache/precis`. One file per request, named with the format
//! version and every parameter
//! (`minimax-v2-relu-a14-min-depth-d31.json`). A file holds a header line
//! `precis-minimax <version> <fnv1a-64 of the body>` then the JSON body; a
//! missing, truncated, corrupt or mismatching entry is recomputed and
//! rewritten. Writes go to a unique temporary file in the same directory and
//! are renamed into place, so readers never see partial files.
//!
//! The results are bit-identical across runs and machines: the engine uses
//! only correctly rounded IEEE operations (see [`super::dd`]), parallel work is
//! gathered in a fixed order, and `serde_json` prints `f64` in shortest
//! round-trip form. No timing or host data is stored.

use super::approx::{relu, sign, ApproxError, Mode, ReluApprox, SignApprox};
use super::search::Objective;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Format version: bump whenever the engine's results may change.
pub const FORMAT_VERSION: u32 = 2;

const MAGIC: &str = "precis-minimax";

/// A cached engine result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum Approximation {
    /// ReLU mode.
    Relu(ReluApprox),
    /// Sign (comparison) mode.
    Sign(SignApprox),
}

impl Approximation {
    /// The sign approximation inside.
    pub fn sign(&self) -> &SignApprox {
        match self {
            Approximation::Relu(r) => &r.sign,
            Approximation::Sign(s) => s,
        }
    }
}

/// A request to the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Request {
    /// Precision `α`.
    pub alpha: u32,
    /// ReLU or sign.
    pub mode: Mode,
    /// Search objective.
    pub objective: Objective,
    /// Degree cap.
    pub max_degree: usize,
}

impl Request {
    /// Cache file name.
    pub fn file_name(&self) -> String {
        let mode = match self.mode {
            Mode::Relu => "relu",
            Mode::Sign => "sign",
        };
        let obj = match self.objective {
            Objective::MinDepth => "min-depth",
            Objective::MinMults => "min-mults",
        };
        format!(
            "minimax-v{FORMAT_VERSION}-{mode}-a{}-{obj}-d{}.json",
            self.alpha, self.max_degree
        )
    }

    /// Computes the result (no cache).
    pub fn compute(&self) -> Result<Approximation, ApproxError> {
        Ok(match self.mode {
            Mode::Relu => Approximation::Relu(relu(self.alpha, self.objective, self.max_degree)?),
            Mode::Sign => Approximation::Sign(sign(self.alpha, self.objective, self.max_degree)?),
        })
    }
}

#[derive(Serialize, Deserialize)]
struct Body {
    request: Request,
    result: Approximation,
}

/// How a lookup was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    /// Read from disk.
    Hit,
    /// Not present: computed and stored.
    Miss,
    /// Present but unreadable or mismatching: recomputed and replaced.
    Corrupt,
    /// Caching disabled: computed.
    Disabled,
}

/// FNV-1a, 64 bit.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The cache directory.
#[derive(Clone, Debug)]
pub struct Cache {
    dir: Option<PathBuf>,
}

impl Cache {
    /// The default location (see the module docs).
    pub fn from_env() -> Cache {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let dir = var("PRECIS_CACHE")
            .or_else(|| var("XDG_CACHE_HOME").map(|p| p.join("precis")))
            .or_else(|| var("HOME").map(|p| p.join(".cache").join("precis")));
        Cache { dir }
    }

    /// A cache in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Cache {
        Cache {
            dir: Some(dir.into()),
        }
    }

    /// No caching.
    pub fn disabled() -> Cache {
        Cache { dir: None }
    }

    /// Directory, if enabled.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Path of a request's entry.
    pub fn path(&self, req: &Request) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(req.file_name()))
    }

    fn read(path: &Path, req: &Request) -> Option<Approximation> {
        let text = std::fs::read_to_string(path).ok()?;
        let (header, body) = text.split_once('\n')?;
        let mut parts = header.split(' ');
        if parts.next()? != MAGIC || parts.next()? != FORMAT_VERSION.to_string() {
            return None;
        }
        let sum = u64::from_str_radix(parts.next()?, 16).ok()?;
        if parts.next().is_some() || sum != fnv1a64(body.as_bytes()) {
            return None;
        }
        let b: Body = serde_json::from_str(body).ok()?;
        (b.request == *req).then_some(b.result)
    }

    /// Serialised entry (header line and JSON body).
    pub fn encode(req: &Request, result: &Approximation) -> String {
        let body = serde_json::to_string(&Body {
            request: *req,
            result: result.clone(),
        })
        .expect("engine results serialise");
        format!(
            "{MAGIC} {FORMAT_VERSION} {:016x}\n{body}",
            fnv1a64(body.as_bytes())
        )
    }

    fn write(path: &Path, text: &str) -> std::io::Result<()> {
        let dir = path.parent().expect("cache file has a directory");
        std::fs::create_dir_all(dir)?;
        ir::file::write_atomic_io(path, text.as_bytes())
    }

    /// The result for `req`, from disk when a valid entry exists, otherwise
    /// computed and stored (a failed store is not an error: the result is
    /// still returned).
    pub fn get(&self, req: &Request) -> Result<(Approximation, CacheStatus), ApproxError> {
        let Some(path) = self.path(req) else {
            return Ok((req.compute()?, CacheStatus::Disabled));
        };
        let status = if path.exists() {
            if let Some(r) = Self::read(&path, req) {
                return Ok((r, CacheStatus::Hit));
            }
            CacheStatus::Corrupt
        } else {
            CacheStatus::Miss
        };
        let result = req.compute()?;
        let _ = Self::write(&path, &Self::encode(req, &result));
        Ok((result, status))
    }
}
