-- name: metric_netlink_drops
-- description: Events lost by netlink listeners, per socket, as sockql serve exports them (sockql_netlink_lost_events_total): conntrackd, ss -E, conntrack -E or sockql's own event streams falling behind the kernel (ENOBUFS)
-- metric: sockql_netlink_lost_events counter Messages the kernel dropped for a netlink socket whose receive buffer was full (/proc/net/netlink Drops), per network namespace, protocol, socket inode and holding process (the lowest pid holding it); sockets that lost none are left out
-- A socket inode is unique on the host, so each series is one socket's
-- own count, which only grows while the socket lives.
WITH holder AS (SELECT inode, min(pid) AS pid FROM socket_owners GROUP BY inode)
SELECT CAST(n.netns AS VARCHAR) AS netns, coalesce(n.netns_name, '') AS netns_name, n.protocol, CAST(n.inode AS VARCHAR) AS inode,
       coalesce(CAST(h.pid AS VARCHAR), '') AS pid, coalesce(p.name, '') AS process, n.drops AS lost
FROM netlink_sockets n
LEFT JOIN holder h ON h.inode = n.inode
LEFT JOIN processes p ON p.pid = h.pid
WHERE n.drops > 0
ORDER BY 1, 3, 4;
