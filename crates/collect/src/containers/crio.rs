//! CRI-O from its bundles: each container's OCI `config.json` in the
//! containers/storage run root
//! (`/run/containers/storage/overlay-containers/<id>/userdata/`) carries
//! the kubelet's annotations (`io.kubernetes.pod.name`, `.namespace`,
//! `.uid`, `io.kubernetes.container.name`) and CRI-O's own
//! (`io.kubernetes.cri-o.ContainerType`, `.ImageName`); the init's pid is
//! in runc's state directory while it runs. podman shares the run root
//! but writes no config.json there, and sets no ContainerType.

use std::collections::HashSet;

use super::files::{self, RuntimeDir, MAX_CONFIG};
use super::oci::Kube;
use super::{podman, Container, Roots, Want};

/// Every CRI-O container whose bundle is in the run root (that `want`
/// asks for). The ids in `podmans` (podman's list claimed them: they
/// share the run root) are not looked at.
pub fn read(roots: &Roots, want: Want<'_>, podmans: &HashSet<&str>) -> Vec<Container> {
    let Some(run) = RuntimeDir::open(&roots.storage_run) else { return Vec::new() };
    let runc = RuntimeDir::open(&roots.runc);
    let mut out = Vec::new();
    for id in run.list("overlay-containers", |n| files::is_id(n) && want.id(n) && !podmans.contains(n)) {
        let rel = format!("overlay-containers/{id}/userdata/config.json");
        let Some(spec) = run.json(&rel, MAX_CONFIG) else { continue };
        let ours = spec.get("annotations").and_then(|a| a.get("io.kubernetes.cri-o.ContainerType")).is_some();
        if !ours {
            continue;
        }
        let kube = Kube::from_spec(&spec);
        let pid = if want.state { runc.as_ref().and_then(|r| podman::runc_init(r, &id)) } else { None };
        out.push(Container {
            name: kube.name(),
            image: kube.image,
            runtime: "cri-o",
            state: want.state.then(|| if pid.is_some() { "running" } else { "exited" }.into()),
            pid,
            pod_name: kube.pod_name,
            pod_namespace: kube.pod_namespace,
            pod_uid: kube.pod_uid,
            k8s_container_name: kube.container_name,
            source: roots.storage_run.join(&rel).display().to_string(),
            id,
            ..Default::default()
        });
    }
    out
}
