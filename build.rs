//! Two jobs for the sockql binary: its link mode, and what `--version` says.
//!
//! Identical code folding in release builds: LLD (Rust's default linker
//! on x86_64 Linux) keeps one copy of functions whose code is byte for
//! byte the same (generic instantiations over types of one layout, drop
//! glue): 0.46 MB less, no code path changes (BENCHMARKS.md, "Release
//! binary"). Debug builds skip it: it slows every test link.
//!
//! Link mode: the binary is linked at a fixed address (not PIE). A PIE of
//! this size makes the loader apply ~230,000 relative relocations at every
//! start: reading 5 MB of .rela.dyn and copy-on-write faulting 4 MB of
//! .data.rel.ro, a quarter of `sockql "SELECT 1"` (6.7 -> 5.1 ms, see
//! BENCHMARKS.md). The price is no ASLR for the binary's own code (the
//! heap, stack and libraries stay randomised); SOCKQL_PIE=1 at build time
//! keeps a PIE. (The saved reports are compiled in by crates/query/build.rs.)
//!
//! Version: SOCKQL_VERSION is "0.1.0 (commit 1a2b3c4d5e6f, built
//! 2026-12-06)", so an operator can tell which build a host runs. The
//! commit is this checkout's HEAD ("unknown" outside a git checkout of
//! this repository, e.g. a source tarball unpacked inside some other
//! repository); the date is SOURCE_DATE_EPOCH's when set (reproducible
//! builds: scripts/build-deb sets it to the commit's time), else today's
//! (UTC). The script reruns when HEAD moves, so a new commit is named
//! without a clean build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOCKQL_PIE");
    if std::env::var_os("SOCKQL_PIE").is_none() {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    if std::env::var("PROFILE").as_deref() == Ok("release") {
        println!("cargo:rustc-link-arg-bins=-Wl,--icf=all");
    }
    version();
}

fn version() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = git_commit(&dir).unwrap_or_else(|| "unknown".to_string());
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => {
            s.trim().parse::<i64>().unwrap_or_else(|_| panic!("SOURCE_DATE_EPOCH={s:?} is not a number of seconds"))
        }
        Err(_) => {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
        }
    };
    let (y, m, d) = civil_from_days(epoch.div_euclid(86_400));
    let pkg = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    println!("cargo:rustc-env=SOCKQL_VERSION={pkg} (commit {commit}, built {y:04}-{m:02}-{d:02})");
}

/// `git` in `dir`, its output trimmed, if it succeeds.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

/// HEAD's commit (12 hex digits), if `dir` is the top of a git checkout;
/// asks cargo to rerun this script when HEAD or the branch it names moves.
fn git_commit(dir: &Path) -> Option<String> {
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    if Path::new(&top).canonicalize().ok()? != dir.canonicalize().ok()? {
        return None;
    }
    let commit = git(dir, &["rev-parse", "--short=12", "HEAD"])?;
    // A worktree's HEAD is in its own git dir, the branch in the common
    // one (loose, or packed); --git-path finds each. A path that does not
    // exist is not named: cargo would rerun the script on every build.
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    watched.extend(git(dir, &["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(dir, &["rev-parse", "--git-path", &name]) {
            let path = dir.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    Some(commit)
}

/// Year, month, day of a count of days since 1970-01-01 (proleptic
/// Gregorian; Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}
