//! containerd from its task directories: every task (a created or running
//! container) has an OCI bundle at
//! `/run/containerd/io.containerd.runtime.v2.task/<namespace>/<id>/`, its
//! `config.json` carrying the CRI plugin's annotations (pod name,
//! namespace and uid, container name and type, image) and `init.pid` its
//! init's pid. Containers without a task, and labels, live in containerd's
//! metadata database (bolt), which is not read.

use super::files::{self, RuntimeDir, MAX_CONFIG};
use super::oci::Kube;
use super::{Container, Roots, Want};

/// containerd's rule for namespace and container identifiers: letters and
/// digits, joined by single `.`, `_` or `-`, at most 76 characters.
pub fn is_identifier(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 76
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && !b.windows(2).any(|w| matches!(w, [x, y] if !x.is_ascii_alphanumeric() && !y.is_ascii_alphanumeric()))
}

/// Every task's container (that `want` asks for).
pub fn read(roots: &Roots, want: Want<'_>) -> Vec<Container> {
    let Some(tasks) = RuntimeDir::open(&roots.containerd_tasks) else { return Vec::new() };
    let mut out = Vec::new();
    for ns in tasks.list(".", is_identifier) {
        for id in tasks.list(&ns, |n| is_identifier(n) && want.id(n)) {
            let rel = format!("{ns}/{id}/config.json");
            let kube = tasks.json(&rel, MAX_CONFIG).map(|spec| Kube::from_spec(&spec)).unwrap_or_default();
            let pid = want.state.then(|| tasks.pid(&format!("{ns}/{id}/init.pid"))).flatten();
            out.push(Container {
                // ctr's containers have no name but their id.
                name: kube.name().or_else(|| Some(files::cut(&id))),
                image: kube.image,
                runtime: "containerd",
                // A pid is verified against /proc by the caller: a task
                // whose init is gone is stopped; one without is created.
                state: want.state.then(|| if pid.is_some() { "running" } else { "created" }.into()),
                pid,
                pod_name: kube.pod_name,
                pod_namespace: kube.pod_namespace,
                pod_uid: kube.pod_uid,
                k8s_container_name: kube.container_name,
                source: roots.containerd_tasks.join(&rel).display().to_string(),
                id,
                ..Default::default()
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn identifiers_follow_containerds_rule() {
        for ok in ["k8s.io", "default", "a", "web-1", "x_y.z"] {
            assert!(super::is_identifier(ok), "{ok}");
        }
        for bad in ["", ".", "..", "-a", "a-", "a..b", "a/b", "a b", &"a".repeat(77)] {
            assert!(!super::is_identifier(bad), "{bad}");
        }
    }
}
