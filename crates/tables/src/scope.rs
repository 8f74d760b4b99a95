//! Which network namespaces a scan reads, and reading each one.
//!
//! By default a table covers the namespace sockql runs in. `--all-netns`
//! (or `\netns all` in the shell) covers every namespace on the host; a
//! filter `netns = N` / `netns_name = 'x'` (pushed down) enters only those,
//! with or without `--all-netns`.

use std::ops::ControlFlow;

use datafusion::logical_expr::Expr;

use crate::filters::{as_i64, as_str, column_in_literals};
use sockql_collect::containers;
use sockql_collect::netns::{self, Netns};
use sockql_collect::notice;

use crate::SourceOptions;

/// True for the filters that choose namespaces.
pub fn is_netns_filter(f: &Expr) -> bool {
    match column_in_literals(f) {
        Some(("netns", v)) => v.iter().all(|v| as_i64(v).is_some()),
        Some(("netns_name", v)) => v.iter().all(|v| as_str(v).is_some()),
        _ => false,
    }
}

/// The namespaces a scan with `filters` must read: those the filters
/// name, else every one (`--all-netns`), else the home namespace
/// (`--container`'s, or sockql's own).
pub fn targets(filters: &[Expr], options: &SourceOptions) -> Vec<Netns> {
    let all = options.all_netns();
    let mut inodes: Option<Vec<u64>> = None;
    let mut names: Option<Vec<String>> = None;
    for f in filters {
        match column_in_literals(f) {
            Some(("netns", v)) => {
                let got: Option<Vec<u64>> = v.iter().map(|v| as_i64(v).and_then(|i| u64::try_from(i).ok())).collect();
                if let Some(got) = got {
                    inodes = Some(match inodes {
                        Some(prev) => prev.into_iter().filter(|i| got.contains(i)).collect(),
                        None => got,
                    });
                }
            }
            Some(("netns_name", v)) => {
                let got: Option<Vec<String>> = v.iter().map(|v| as_str(v).map(str::to_string)).collect();
                if let Some(got) = got {
                    names = Some(match names {
                        Some(prev) => prev.into_iter().filter(|n| got.contains(n)).collect(),
                        None => got,
                    });
                }
            }
            _ => {}
        }
    }
    if inodes.is_none() && names.is_none() {
        return match (all, options.home_netns()) {
            (true, _) => netns::list(),
            (false, None) => vec![netns::current_netns()],
            // A container's namespace: entered by its init's pid as
            // `--container` found it, without listing every namespace
            // (containers::home). That process gone or changed, the
            // namespace is looked for among all; gone with the container,
            // the scan reads nothing rather than sockql's own namespace.
            (false, Some(home)) => {
                if let Some(ns) = containers::home::netns(home) {
                    return vec![ns];
                }
                let found: Vec<Netns> = netns::list().into_iter().filter(|n| n.inode == home).collect();
                if found.is_empty() {
                    notice::note_once(
                        &format!("home-netns-gone-{home}"),
                        format!("the container's network namespace {home} is gone: its rows are missing"),
                    );
                }
                found
            }
        };
    }
    netns::list()
        .into_iter()
        .filter(|n| inodes.as_ref().is_none_or(|i| i.contains(&n.inode)))
        .filter(|n| names.as_ref().is_none_or(|want| n.name.as_ref().is_some_and(|nm| want.contains(nm))))
        .collect()
}

/// How EXPLAIN shows the namespaces of a scan.
pub fn describe(targets: &[Netns]) -> String {
    let current = netns::current();
    let parts: Vec<String> = targets
        .iter()
        .map(|n| match (&n.name, n.inode == current) {
            (_, true) => "current".to_string(),
            (Some(name), _) => name.clone(),
            (None, _) => n.inode.to_string(),
        })
        .collect();
    format!("netns=[{}]", parts.join(","))
}

/// Run `open` inside each target namespace (what it opens there, a socket,
/// stays in that namespace) and keep what it returned, with the namespace;
/// `None` leaves a namespace out. Unreachable namespaces are skipped as
/// [`each`] skips them.
pub fn open_in_each<T: Send>(
    targets: &[Netns],
    mut open: impl FnMut(&Netns) -> anyhow::Result<Option<T>> + Send,
) -> anyhow::Result<Vec<(Netns, T)>> {
    let mut opened = Vec::new();
    each(targets, |ns| {
        if let Some(t) = open(ns)? {
            opened.push((ns.clone(), t));
        }
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(opened)
}

/// Run `read` inside each target namespace in turn until it breaks. A
/// namespace that cannot be entered (it vanished, or no CAP_SYS_ADMIN) is
/// skipped with a note, never an error.
pub fn each(
    targets: &[Netns],
    mut read: impl FnMut(&Netns) -> anyhow::Result<ControlFlow<()>> + Send,
) -> anyhow::Result<()> {
    for ns in targets {
        match netns::run_in(ns, || read(ns)) {
            Ok(Ok(ControlFlow::Break(()))) => break,
            Ok(Ok(ControlFlow::Continue(()))) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) => notice::note_once(
                &format!("netns-enter-{}", ns.inode),
                format!(
                    "cannot enter network namespace {} ({e}); its rows are missing",
                    ns.name.clone().unwrap_or_else(|| ns.inode.to_string())
                ),
            ),
        }
    }
    Ok(())
}
