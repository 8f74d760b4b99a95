//! What an OCI bundle's config.json says of a container: the
//! annotations Kubernetes runtimes write there (containerd's CRI plugin:
//! `io.kubernetes.cri.*`; CRI-O, and docker through dockershim or
//! cri-dockerd: `io.kubernetes.pod.*` / `io.kubernetes.container.name`).

use serde_json::Value;

use super::files::cut;

/// A container's Kubernetes attribution and image, from annotations or
/// labels (a JSON object of strings).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Kube {
    pub pod_name: Option<String>,
    pub pod_namespace: Option<String>,
    pub pod_uid: Option<String>,
    pub container_name: Option<String>,
    /// True for a pod's sandbox (pause) container.
    pub sandbox: bool,
    pub image: Option<String>,
}

/// The first of `keys` that `map` has as a string, cut to the field cap.
fn first(map: &Value, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| map.get(*k)?.as_str()).map(cut)
}

impl Kube {
    /// From an object of annotations or labels (`None` or not an object:
    /// nothing).
    pub fn from_map(map: Option<&Value>) -> Kube {
        let Some(map) = map.filter(|m| m.is_object()) else { return Kube::default() };
        let kind = first(
            map,
            &["io.kubernetes.cri.container-type", "io.kubernetes.cri-o.ContainerType", "io.kubernetes.docker.type"],
        );
        Kube {
            pod_name: first(map, &["io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"]),
            pod_namespace: first(map, &["io.kubernetes.cri.sandbox-namespace", "io.kubernetes.pod.namespace"]),
            pod_uid: first(map, &["io.kubernetes.cri.sandbox-uid", "io.kubernetes.pod.uid"]),
            container_name: first(map, &["io.kubernetes.cri.container-name", "io.kubernetes.container.name"]),
            sandbox: matches!(kind.as_deref(), Some("sandbox" | "podsandbox")),
            image: first(map, &["io.kubernetes.cri.image-name", "io.kubernetes.cri-o.ImageName"]),
        }
    }

    /// From an OCI runtime spec (config.json): its `annotations`.
    pub fn from_spec(spec: &Value) -> Kube {
        Kube::from_map(spec.get("annotations"))
    }

    /// The name the runtime's CLI (crictl ps / crictl pods) shows: the
    /// container's name, or the pod's for a sandbox.
    pub fn name(&self) -> Option<String> {
        if self.sandbox {
            self.pod_name.clone().or_else(|| self.container_name.clone())
        } else {
            self.container_name.clone()
        }
    }
}
