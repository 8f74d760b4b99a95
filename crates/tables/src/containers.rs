//! `containers`: every container on the host, from the runtimes' own
//! files (podman, docker, containerd, CRI-O) joined with /proc: its name,
//! image, state, init pid, network namespace and cgroup, and for
//! Kubernetes its pod. See sockql_collect::containers for what each
//! runtime's files give and how a read is bounded and confined.

use datafusion::logical_expr::Expr;

use crate::columns::ColumnDef;
use crate::live::Emitter;
use crate::table_columns;
use crate::{Pushdown, Scan, Table};
use sockql_collect::containers::Containers;
use sockql_collect::netns;

table_columns!(Col {
    Id: "id", Utf8, false, "Container id (64 hex digits; containerd's may be any identifier), as podman ps --no-trunc, docker ps --no-trunc and crictl ps show it";
    Name: "name", Utf8, true, "The runtime's name for it: podman's and docker's NAMES, for Kubernetes crictl's NAME (the container's name, or the pod's for a sandbox), for a plain containerd container its id; null if only its cgroup path is known";
    Image: "image", Utf8, true, "Image as the container was created from it (podman's image name, docker's Config.Image, the CRI image annotation); null where the files do not say";
    Runtime: "runtime", Utf8, false, "podman, docker, containerd or cri-o from the file it came from; else kubernetes or unknown from the cgroup path";
    State: "state", Utf8, true, "running, exited, created, paused, stopped, ... as the runtime's files say (podman: running, exited or created: its state database is not read); null if only its cgroup path is known";
    Pid: "pid", I32, true, "pid of its init in the host's pid namespace (podman inspect's State.Pid), the runtime's own if that process is in the container's cgroup, else its lowest pid; null when stopped";
    Netns: "netns", U64, true, "Network namespace inode of its init (join with netns.netns, sockets.netns); null when stopped";
    NetnsName: "netns_name", Utf8, true, "Name of that namespace under /run/netns, if it has one (podman's netavark and CNI name theirs)";
    Cgroup: "cgroup", Utf8, true, "cgroup path of its init (v2, else the first v1 hierarchy)";
    PodName: "pod_name", Utf8, true, "Kubernetes pod name (CRI annotation io.kubernetes.cri.sandbox-name or io.kubernetes.pod.name)";
    PodNamespace: "pod_namespace", Utf8, true, "Kubernetes namespace of the pod (io.kubernetes.cri.sandbox-namespace or io.kubernetes.pod.namespace)";
    PodUid: "pod_uid", Utf8, true, "Kubernetes pod uid (io.kubernetes.cri.sandbox-uid or io.kubernetes.pod.uid)";
    K8sContainerName: "k8s_container_name", Utf8, true, "Kubernetes container name within its pod (io.kubernetes.cri.container-name or io.kubernetes.container.name); null for a sandbox";
    Source: "source", Utf8, false, "File the row's metadata came from, or cgroup when only a process's cgroup path named the container";
});

#[derive(Debug, Clone, Copy)]
pub struct ContainersTable;

impl Table for ContainersTable {
    const NAME: &'static str = "containers";
    const ABOUT: &'static str =
        "Every container (podman ps -a, docker ps -a, crictl ps -a): name, image, state, init pid, netns and Kubernetes pod, from the runtimes' files";
    const COLUMNS: &'static [ColumnDef] = Col::DEFS;
    type Plan = ();

    /// The list is read whole: no filter is used.
    fn pushdown(&self, _filter: &Expr) -> Pushdown {
        Pushdown::Unsupported
    }

    fn plan(&self, _scan: &Scan<'_>) {}

    fn label(&self, _plan: &()) -> String {
        "containers: runtime files + /proc/*/cgroup".into()
    }

    fn read(&self, _plan: &(), out: &mut Emitter<'_>) -> anyhow::Result<()> {
        let names = netns::names();
        for c in Containers::read().all() {
            let r = &mut out.rows;
            r.str(Col::Id, Some(&c.id));
            r.str(Col::Name, c.name.as_deref());
            r.str(Col::Image, c.image.as_deref());
            r.str(Col::Runtime, Some(c.runtime));
            r.str(Col::State, c.state.as_deref());
            r.i32(Col::Pid, c.pid);
            r.u64(Col::Netns, c.netns);
            r.str(Col::NetnsName, c.netns.and_then(|n| names.get(&n)).map(String::as_str));
            r.str(Col::Cgroup, c.cgroup.as_deref());
            r.str(Col::PodName, c.pod_name.as_deref());
            r.str(Col::PodNamespace, c.pod_namespace.as_deref());
            r.str(Col::PodUid, c.pod_uid.as_deref());
            r.str(Col::K8sContainerName, c.k8s_container_name.as_deref());
            r.str(Col::Source, Some(&c.source));
            if out.end_row()?.is_break() {
                break;
            }
        }
        Ok(())
    }
}
