//! The namespace `--container NAME` (or the shell's `\container NAME`)
//! scopes queries to, entered without listing every namespace on the
//! host: the container is found from the runtimes' files (its init pid,
//! believed only if that process's cgroup names it, [`Containers::read_named`]),
//! remembered here by its namespace's inode, and each scan enters
//! `/proc/<init>/ns/net` after checking through one descriptor of
//! `/proc/<init>` that the process is still in the container's cgroup
//! and in that namespace. When it is not (the container stopped or
//! restarted), [`netns`] says so and the caller lists the namespaces as
//! before, so a reused pid never scopes a query to another container.

use std::path::PathBuf;
use std::sync::Mutex;

use super::{procview, Container, Containers};
use crate::netns::{self, Netns};

/// A container a session is scoped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    pub id: String,
    /// Its init (or lowest) pid, whose ns/net is entered.
    pub pid: i32,
    /// The inode of that namespace when it was chosen.
    pub netns: u64,
}

/// Homes chosen in this process, newest last. A shell may switch many
/// times: only the last [`KEPT`] are kept (an older one is found by
/// listing the namespaces, as without this).
static HOMES: Mutex<Vec<Home>> = Mutex::new(Vec::new());
const KEPT: usize = 16;

/// Remember `home` as the container of namespace `home.netns`.
pub fn remember(home: Home) {
    let Ok(mut homes) = HOMES.lock() else { return };
    homes.retain(|h| h.netns != home.netns);
    homes.push(home);
    if homes.len() > KEPT {
        homes.remove(0);
    }
}

/// The remembered container's namespace `inode`, ready to enter, if its
/// process is still in the container and in that namespace. `None`: not
/// remembered, or changed since (the caller lists namespaces instead).
pub fn netns(inode: u64) -> Option<Netns> {
    let home = HOMES.lock().ok()?.iter().find(|h| h.netns == inode)?.clone();
    let view = procview::view(home.pid)?;
    if view.netns != Some(inode) || !procview::names_container(&view.cgroup, &home.id) {
        return None;
    }
    Some(Netns {
        inode,
        name: netns::names().remove(&inode),
        pid: Some(home.pid),
        processes: 0,
        container_id: Some(home.id),
        runtime: netns::container_of(&view.cgroup).map(|(_, rt)| rt),
        // run_in opens this and checks it is still `inode`.
        path: PathBuf::from(format!("/proc/{}/ns/net", home.pid)),
    })
}

impl Containers {
    /// The containers the runtimes' files describe that `name` could
    /// mean (by name, id, or an id prefix of 12 or more), each claimed
    /// init pid believed only if that process's cgroup names the
    /// container (then `pid`, `netns` and `cgroup` are set), without
    /// walking /proc and without looking at any other container's
    /// process or state file: enough to find a running container by name.
    /// A container known only from a cgroup path is not here:
    /// [`read`](Self::read) finds those.
    pub fn read_named(roots: &super::Roots, name: &str) -> Containers {
        let names = super::runtimes(roots, super::Want { ids: None, state: false });
        let maybe: std::collections::HashSet<String> = names
            .into_iter()
            .filter(|c| c.name.as_deref() == Some(name) || c.id == name || (name.len() >= 12 && c.id.starts_with(name)))
            .map(|c| c.id)
            .collect();
        let mut out = Containers::default();
        if maybe.is_empty() {
            return out;
        }
        for c in super::runtimes(roots, super::Want { ids: Some(&maybe), state: true }) {
            let claimed = c.pid;
            let i = out.entry(&c.id, || Container { id: c.id.clone(), ..Default::default() });
            let Some(slot) = out.list.get_mut(i) else { continue };
            *slot = Container { pid: None, netns: None, cgroup: None, ..c };
            let Some(pid) = claimed else { continue };
            let Some(view) = procview::view(pid).filter(|v| procview::names_container(&v.cgroup, &slot.id)) else {
                slot.state = Some(super::stopped_word(slot.runtime).into());
                continue;
            };
            slot.pid = Some(pid);
            slot.netns = view.netns;
            slot.cgroup = Some(view.cgroup);
            out.by_pid.insert(pid, i);
            if let Some(ns) = view.netns {
                out.by_netns.entry(ns).or_insert(i);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_home_whose_process_is_not_in_the_container_is_not_entered() {
        let me = std::process::id() as i32;
        let ns = netns::of_pid(me).unwrap();
        // Our own process is in no container `0123...`: never entered.
        remember(Home { id: "0".repeat(64), pid: me, netns: ns });
        assert_eq!(netns(ns), None);
        // Nor an inode never remembered.
        assert_eq!(netns(1), None);
    }
}
