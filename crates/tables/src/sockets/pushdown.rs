//! What a `sockets` scan asks of the kernel, decided from its filters and
//! projection: the state mask, which dumps run, the bytecode program, the
//! extensions, and whether owners are looked up. Filters the reader applies
//! exactly (state, protocol, family, netns) are answered Exact, so
//! DataFusion does not re-check them; port and address conditions are
//! Inexact (the /proc fallback cannot apply them).

use std::fmt;
use std::net::IpAddr;

use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};

use super::{Col, SocketsTable, BBR_COLS, MEM_COLS, TCP_INFO_COLS};
use crate::filters::{as_str, column_in_literals, is_int_range_filter, port_range};
use crate::scope;
use sockql_collect::netns::Netns;
use sockql_collect::sock_diag::inet::{self, Cond, Extensions};
use sockql_collect::sock_diag::{family_name, protocol_name, ALL_DUMPS};
use sockql_collect::tcp_state;

/// What a scan will do, decided from its projection and filters.
#[derive(Debug, Clone)]
pub(super) struct ScanPlan {
    pub(super) dumps: Vec<(u8, u8)>,
    pub(super) conds: Vec<Cond>,
    pub(super) states: u32,
    pub(super) extensions: Extensions,
    pub(super) owners: bool,
    /// Walk the cgroup2 tree to name cgroup ids.
    pub(super) cgroup_paths: bool,
    pub(super) projection: Option<Vec<usize>>,
    pub(super) limit: Option<usize>,
    pub(super) no_netlink: bool,
    pub(super) targets: Vec<Netns>,
}

impl fmt::Display for ScanPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dumps: Vec<String> =
            self.dumps.iter().map(|&(p, fam)| format!("{}/{}", protocol_name(p), family_name(fam))).collect();
        write!(
            f,
            "sockets: {} {} dumps=[{}] states={:#x} bytecode=[{}] tcp_info={} congestion={} meminfo={} owners={}",
            if self.no_netlink { "/proc/net" } else { "sock_diag" },
            scope::describe(&self.targets),
            dumps.join(","),
            self.states,
            self.conds.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>().join(" AND "),
            self.extensions.tcp_info,
            self.extensions.congestion,
            self.extensions.meminfo,
            self.owners
        )
    }
}

/// Fold the two per-family TCP dumps into one (TCP, AF_UNSPEC) dump: the
/// kernel walks its TCP hash tables once per request, whatever the family,
/// so this halves the kernel's work for a TCP scan (BENCHMARKS.md). UDP has
/// no such request.
fn merge_tcp_families(dumps: &mut Vec<(u8, u8)>) {
    let tcp = |f: u8| (inet::IPPROTO_TCP, f);
    if let (Some(v4), true) =
        (dumps.iter().position(|&d| d == tcp(inet::AF_INET)), dumps.contains(&tcp(inet::AF_INET6)))
    {
        dumps[v4] = tcp(inet::AF_UNSPEC);
        dumps.retain(|&d| d != tcp(inet::AF_INET6));
    }
}

/// The states a protocol's sockets can be in: UDP and raw sockets are
/// only ever unconnected (CLOSE, shown UNCONN) or connected (ESTAB), so a
/// scan for LISTEN or TIME-WAIT need not dump them at all.
fn possible_states(protocol: u8) -> u32 {
    if protocol == inet::IPPROTO_TCP {
        tcp_state::ALL_BITS
    } else {
        1 << tcp_state::ESTABLISHED | 1 << tcp_state::CLOSE
    }
}

/// What the filters allow, as far as the kernel can be told.
#[derive(Debug)]
pub(super) struct Pushed {
    states: u32,
    protocols: Option<Vec<String>>,
    families: Option<Vec<String>>,
    /// Conditions for the kernel's filter program.
    conds: Vec<Cond>,
    /// A filter no socket can pass (an empty port range, two different
    /// addresses): no dump needs to run.
    impossible: bool,
}

/// Every filter must hold, so a second filter on the same column leaves
/// only the values both allow.
fn narrow(set: &mut Option<Vec<String>>, wanted: &[&str]) {
    *set = Some(match set.take() {
        Some(prev) => prev.into_iter().filter(|v| wanted.contains(&v.as_str())).collect(),
        None => wanted.iter().map(|v| v.to_string()).collect(),
    });
}

/// The address a filter set pins `column` to, if any.
fn pinned_addr(filters: &[&Expr], column: &str) -> Option<Result<IpAddr, ()>> {
    let mut found: Option<Result<IpAddr, ()>> = None;
    for f in filters {
        if let Some((c, values)) = column_in_literals(f) {
            if c != column || values.len() != 1 {
                continue;
            }
            // A string that is no address matches no row.
            let a = as_str(values[0]).map(|s| s.parse::<IpAddr>().map_err(|_| ()));
            if let Some(a) = a {
                found = Some(match found {
                    Some(prev) if prev != a => Err(()),
                    _ => a,
                });
            }
        }
    }
    found
}

/// Port conditions for a column's range within 0..=65535.
fn port_conds(
    range: Option<Option<(u16, u16)>>,
    ge: fn(u16) -> Cond,
    le: fn(u16) -> Cond,
    out: &mut Vec<Cond>,
) -> bool {
    let Some(range) = range else { return true };
    let Some((lo, hi)) = range else { return false };
    if lo > 0 {
        out.push(ge(lo));
    }
    if hi < 65535 {
        out.push(le(hi));
    }
    true
}

/// Filters the kernel can apply (DataFusion still re-checks them).
pub(super) fn is_pushable(f: &Expr) -> bool {
    scope::is_netns_filter(f)
        || matches!(column_in_literals(f), Some(("state" | "protocol" | "family", _)))
        || matches!(column_in_literals(f), Some(("local_addr" | "remote_addr", v)) if v.len() == 1)
        || is_int_range_filter(f, "local_port")
        || is_int_range_filter(f, "remote_port")
}

impl SocketsTable {
    /// Fold every filter the kernel can apply into one description.
    pub(super) fn pushed(&self, filters: &[&Expr]) -> Pushed {
        let mut p = Pushed {
            states: tcp_state::ALL_BITS,
            protocols: None,
            families: None,
            conds: Vec::new(),
            impossible: false,
        };
        let ok_local =
            port_conds(port_range(filters, "local_port"), Cond::LocalPortGe, Cond::LocalPortLe, &mut p.conds);
        let ok_remote =
            port_conds(port_range(filters, "remote_port"), Cond::RemotePortGe, Cond::RemotePortLe, &mut p.conds);
        p.impossible = !ok_local || !ok_remote;
        for (column, cond) in [("local_addr", Cond::LocalAddr as fn(IpAddr) -> Cond), ("remote_addr", Cond::RemoteAddr)]
        {
            match pinned_addr(filters, column) {
                None => {}
                Some(Err(())) => p.impossible = true,
                Some(Ok(a)) => {
                    // The column prints IPv4-mapped IPv6 addresses as
                    // ::ffff:a.b.c.d, so an IPv4 literal only matches inet
                    // sockets and an IPv6 literal only inet6 ones.
                    narrow(&mut p.families, &[if a.is_ipv4() { "inet" } else { "inet6" }]);
                    p.conds.push(cond(a));
                }
            }
        }
        for f in filters {
            let Some((column, values)) = column_in_literals(f) else { continue };
            let strings: Option<Vec<&str>> = values.iter().map(|v| as_str(v)).collect();
            let Some(strings) = strings else { continue };
            match column {
                "state" => {
                    self.check_state_names(&strings);
                    p.states &= strings.iter().filter_map(|s| tcp_state::bits(s)).fold(0, |a, b| a | b);
                }
                "protocol" => narrow(&mut p.protocols, &strings),
                "local_addr" | "remote_addr" => self.check_addresses(column, &strings),
                "family" => narrow(&mut p.families, &strings),
                _ => {}
            }
        }
        p
    }

    pub(super) fn plan(&self, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> ScanPlan {
        let pushed = self.pushed(&filters.iter().collect::<Vec<_>>());
        let allows = |set: &Option<Vec<String>>, v: &str| set.as_ref().is_none_or(|s| s.iter().any(|x| x == v));
        let mut dumps = ALL_DUMPS
            .into_iter()
            .filter(|&(p, f)| allows(&pushed.protocols, protocol_name(p)) && allows(&pushed.families, family_name(f)))
            .filter(|&(p, _)| pushed.states & possible_states(p) != 0)
            .filter(|_| pushed.states != 0 && !pushed.impossible)
            .collect();
        merge_tcp_families(&mut dumps);
        let uses = |cols: &[Col]| match projection {
            None => true,
            Some(p) => cols.iter().any(|c| p.contains(&(*c as usize))),
        };
        ScanPlan {
            dumps,
            conds: pushed.conds,
            states: pushed.states,
            extensions: Extensions {
                tcp_info: uses(TCP_INFO_COLS),
                congestion: uses(&[Col::Congestion]),
                meminfo: uses(MEM_COLS),
                tos: uses(&[Col::Tos, Col::Tclass, Col::ClassId]),
                ca_info: uses(BBR_COLS),
            },
            owners: uses(&[Col::Pid, Col::Process]),
            cgroup_paths: uses(&[Col::CgroupPath]),
            projection: projection.cloned(),
            limit,
            no_netlink: self.options.no_netlink,
            targets: scope::targets(filters, self.options.all_netns()),
        }
    }
}

/// How a filter is pushed: Exact where the reader applies it to every row
/// it produces (the kernel's state mask and the /proc fallback's state
/// check, the choice of dumps by protocol and family, the choice of
/// namespaces), Inexact where the kernel may be told but the fallback
/// cannot (ports and addresses), Unsupported otherwise.
pub(super) fn pushdown_of(f: &Expr) -> TableProviderFilterPushDown {
    let all_strings = |v: &[&datafusion::scalar::ScalarValue]| v.iter().all(|v| as_str(v).is_some());
    match column_in_literals(f) {
        Some(("state" | "protocol" | "family", v)) if all_strings(&v) => TableProviderFilterPushDown::Exact,
        _ if scope::is_netns_filter(f) => TableProviderFilterPushDown::Exact,
        _ if is_pushable(f) => TableProviderFilterPushDown::Inexact,
        _ => TableProviderFilterPushDown::Unsupported,
    }
}
