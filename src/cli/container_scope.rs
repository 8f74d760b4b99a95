//! `--container NAME` and the shell's `\container NAME`: the network
//! namespace a container's name (or id) stands for, decided once, so the
//! tables read it as `nsenter -t PID -n ss` would, without nsenter.
//!
//! The runtimes' files are read first (no walk of /proc; only the named
//! container's process is looked at): a running container found there
//! by its name is remembered with its init pid
//! (`containers::home`), whose namespace every scan then enters without
//! listing the host's namespaces. Only a name not found that way (a
//! container known by its cgroup alone, a typo) walks /proc, for the
//! same answer and error as before.

use crate::collect::containers::home::{self, Home};
use crate::collect::containers::{Container, Containers, Roots};

/// The network namespace inode of the running container `name` (its
/// name, full id or an id prefix of 12 or more). An unknown name, one two
/// containers share, or a container without a running process is a
/// one-line error; an unknown one lists the close names.
pub fn netns_of(name: &str) -> anyhow::Result<u64> {
    if let Ok(ns) = pick(name, &Containers::read_named(&Roots::host(), name)) {
        return Ok(ns);
    }
    pick(name, &Containers::read())
}

/// `name`'s namespace among `all` (remembered as the session's home).
fn pick(name: &str, all: &Containers) -> anyhow::Result<u64> {
    let named: Vec<&Container> = all.all().iter().filter(|c| c.name.as_deref() == Some(name) || c.id == name).collect();
    let c = match named.as_slice() {
        [c] => *c,
        [] => match all.find(name) {
            Some(c) => c,
            None => anyhow::bail!("no running container is named {name:?}{}", close_names(name, all.all())),
        },
        many => anyhow::bail!(
            "{} containers are named {name:?} (ids {}): give the id instead",
            many.len(),
            many.iter().map(|c| short(&c.id)).collect::<Vec<_>>().join(", ")
        ),
    };
    let ns =
        c.netns.ok_or_else(|| anyhow::anyhow!("container {name:?} has no running process, so no network namespace"))?;
    if let Some(pid) = c.pid {
        home::remember(Home { id: c.id.clone(), pid, netns: ns });
    }
    Ok(ns)
}

/// `; close: a, b` for the names (or short ids) like `name`, or a hint
/// when there are none.
fn close_names(name: &str, all: &[Container]) -> String {
    let want = name.to_lowercase();
    let mut close: Vec<String> = all
        .iter()
        .map(|c| c.name.clone().unwrap_or_else(|| short(&c.id).to_string()))
        // A hostile runtime name is not compared at length.
        .filter(|n| n.len() <= 256)
        .filter(|n| {
            let n = n.to_lowercase();
            n.contains(&want) || want.contains(&n) || edit_distance(&n, &want) <= 2
        })
        .collect();
    close.sort();
    close.dedup();
    close.truncate(5);
    if close.is_empty() {
        let running = all.iter().filter(|c| c.netns.is_some()).count();
        format!(" ({running} running; SELECT name, id FROM containers lists them)")
    } else {
        format!("; close: {}", close.join(", "))
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Levenshtein distance over chars (names are short; bounded by the
/// caller's inputs: one name typed by the operator, the runtime's names).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str, id: &str) -> Container {
        Container { id: id.into(), name: Some(name.into()), ..Default::default() }
    }

    #[test]
    fn close_names_are_listed_for_a_typo() {
        let mut all = [named("web-1", &"a".repeat(64)), named("db", &"b".repeat(64)), named("cache", &"c".repeat(64))];
        for c in &mut all {
            c.netns = Some(1);
        }
        assert_eq!(close_names("web1", &all), "; close: web-1");
        assert_eq!(close_names("zzzzzz", &all), " (3 running; SELECT name, id FROM containers lists them)");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
