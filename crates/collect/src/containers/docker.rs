//! docker from its files: `/var/lib/docker/containers/<id>/config.v2.json`
//! holds the name (`Name`, with a leading `/`), the image as given
//! (`Config.Image`), the labels (cri-dockerd's `io.kubernetes.pod.*`) and
//! the state the daemon last saved (`State`: Running, Paused, Pid, ...).

use serde_json::Value;

use super::files::{self, RuntimeDir, MAX_CONFIG};
use super::oci::Kube;
use super::{Container, Roots, Want};

/// Every container under docker's root (that `want` asks for: one file
/// each, which holds the state too).
pub fn read(roots: &Roots, want: Want<'_>) -> Vec<Container> {
    let Some(docker) = RuntimeDir::open(&roots.docker) else { return Vec::new() };
    let mut out = Vec::new();
    for id in docker.list("containers", |n| files::is_id(n) && want.id(n)) {
        let rel = format!("containers/{id}/config.v2.json");
        let Some(config) = docker.json(&rel, MAX_CONFIG) else { continue };
        let state = config.get("State").unwrap_or(&Value::Null);
        let flag = |k: &str| state.get(k).and_then(Value::as_bool).unwrap_or(false);
        let running = flag("Running");
        let pid = state.get("Pid").and_then(Value::as_i64).and_then(|p| i32::try_from(p).ok()).filter(|&p| p > 0);
        let kube = Kube::from_map(config.get("Config").and_then(|c| c.get("Labels")));
        let name = files::field(&config, "Name").map(|n| n.strip_prefix('/').map(str::to_string).unwrap_or(n));
        out.push(Container {
            name,
            image: config.get("Config").and_then(|c| files::field(c, "Image")),
            runtime: "docker",
            state: Some(status(running, &flag, state).into()),
            pid: if running { pid } else { None },
            pod_name: kube.pod_name,
            pod_namespace: kube.pod_namespace,
            pod_uid: kube.pod_uid,
            k8s_container_name: kube.container_name,
            source: roots.docker.join(&rel).display().to_string(),
            id,
            ..Default::default()
        });
    }
    out
}

/// docker's own status word for a saved state (`State.StateString`).
fn status(running: bool, flag: &dyn Fn(&str) -> bool, state: &Value) -> &'static str {
    if running {
        if flag("Paused") {
            "paused"
        } else if flag("Restarting") {
            "restarting"
        } else {
            "running"
        }
    } else if flag("RemovalInProgress") {
        "removing"
    } else if flag("Dead") {
        "dead"
    } else if state.get("StartedAt").and_then(Value::as_str).is_none_or(|t| t.starts_with("0001-01-01")) {
        "created"
    } else {
        "exited"
    }
}
