//! podman (libpod, as root) from its files: containers/storage's
//! `overlay-containers/containers.json` under the graph root lists every
//! container with its names and libpod's metadata (`image-name`, `name`);
//! runc's state directory (`/run/runc/<id>/state.json`, podman's runc
//! root) exists while the container has a process and holds its init's
//! pid; the run root's `userdata/pidfile` is written when it first starts
//! and stays after it exits. libpod's own state database (bolt) is not
//! read, so a state is one of running, exited (it ran) or created.
//! A read for names only ([`Want::state`] false) skips runc's and the
//! pid file: one file for every container.

use serde_json::Value;

use super::files::{self, RuntimeDir, MAX_CONFIG, MAX_LIST};
use super::{Container, Roots, Want};

/// Every podman container the graph root lists (that `want` asks for).
pub fn read(roots: &Roots, want: Want<'_>) -> Vec<Container> {
    let Some(storage) = RuntimeDir::open(&roots.storage) else { return Vec::new() };
    let Some(list) = storage.json("overlay-containers/containers.json", MAX_LIST) else { return Vec::new() };
    let run = RuntimeDir::open(&roots.storage_run);
    let runc = RuntimeDir::open(&roots.runc);
    let source = roots.storage.join("overlay-containers/containers.json").display().to_string();
    let mut out = Vec::new();
    for entry in list.as_array().map(Vec::as_slice).unwrap_or_default() {
        let Some(id) = entry.get("id").and_then(Value::as_str).filter(|id| files::is_id(id) && want.id(id)) else {
            continue;
        };
        // libpod's metadata is a JSON document inside a string field.
        let meta: Value = entry
            .get("metadata")
            .and_then(Value::as_str)
            .and_then(|m| serde_json::from_str(m).ok())
            .unwrap_or(Value::Null);
        // CRI-O shares containers/storage: its containers carry a pod.
        if meta.get("pod-name").is_some() || meta.get("pod-id").is_some() {
            continue;
        }
        let name = files::field(&meta, "name")
            .or_else(|| entry.get("names").and_then(|n| n.get(0)).and_then(Value::as_str).map(files::cut));
        let (state, init) = if want.state {
            let started = run.as_ref().is_some_and(|r| r.exists(&format!("overlay-containers/{id}/userdata/pidfile")));
            let init = runc.as_ref().and_then(|r| runc_init(r, id));
            let state = if init.is_some() {
                "running"
            } else if started {
                "exited"
            } else {
                "created"
            };
            (Some(state.into()), init)
        } else {
            (None, None)
        };
        out.push(Container {
            id: id.to_string(),
            name,
            image: files::field(&meta, "image-name"),
            runtime: "podman",
            state,
            pid: init,
            source: source.clone(),
            ..Default::default()
        });
    }
    out
}

/// The init pid runc's state directory holds for container `id` (also
/// CRI-O's, which uses the same runc root).
pub fn runc_init(runc: &RuntimeDir, id: &str) -> Option<i32> {
    let state = runc.json(&format!("{id}/state.json"), MAX_CONFIG)?;
    let pid = state.get("init_process_pid")?.as_i64()?;
    i32::try_from(pid).ok().filter(|&p| p > 0)
}
