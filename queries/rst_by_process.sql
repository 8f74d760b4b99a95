-- name: rst_by_process
-- description: TCP resets during a live capture (--capture-for), per process and remote: role sent (the process's socket, or the kernel for a port nothing holds, reset the peer) or received (the peer reset the process's connection). A connection gone by the time of the join counts for its listener's process; pid is null where no process holds the port (refused connections, clients already gone)
-- empty: no TCP resets during the capture
WITH rst AS (
    SELECT netns, netns_name, interface, direction, src_addr, src_port, dst_addr, dst_port, count(*) AS n
    FROM packets
    WHERE protocol = 'tcp' AND rst
    GROUP BY netns, netns_name, interface, direction, src_addr, src_port, dst_addr, dst_port
),
-- Each reset once per local end: the sender where the packet left this
-- host (or went over loopback, where both ends are local), the target
-- where it arrived.
ends AS (
    SELECT r.netns, r.netns_name, roles.role, r.n,
           CASE WHEN roles.role = 'sent' THEN r.src_addr ELSE r.dst_addr END AS local_addr,
           CASE WHEN roles.role = 'sent' THEN r.src_port ELSE r.dst_port END AS local_port,
           CASE WHEN roles.role = 'sent' THEN r.dst_addr ELSE r.src_addr END AS remote_addr,
           CASE WHEN roles.role = 'sent' THEN r.dst_port ELSE r.src_port END AS remote_port
    FROM rst r CROSS JOIN (VALUES ('sent'), ('received')) AS roles(role)
    WHERE (roles.role = 'sent' AND (r.direction = 'out' OR r.interface = 'lo'))
       OR (roles.role = 'received' AND r.direction = 'in')
),
-- The process of a local end: its connection's (sockets.pid, the lowest
-- holder), else its port's listener's.
conn AS (
    SELECT netns, local_addr, local_port, remote_addr, remote_port, pid, process
    FROM sockets WHERE protocol = 'tcp' AND state <> 'LISTEN' AND pid IS NOT NULL
),
listener AS (
    SELECT netns, local_port, min(pid) AS pid, min(process) AS process
    FROM sockets WHERE protocol = 'tcp' AND state = 'LISTEN' AND pid IS NOT NULL
    GROUP BY netns, local_port
)
SELECT e.netns, e.netns_name, e.role, coalesce(c.pid, l.pid) AS pid, coalesce(c.process, l.process) AS process,
       e.local_port, e.remote_addr, sum(e.n) AS resets, count(DISTINCT e.remote_port) AS remote_ports
FROM ends e
LEFT JOIN conn c ON c.netns = e.netns AND c.local_addr = e.local_addr AND c.local_port = e.local_port
                AND c.remote_addr = e.remote_addr AND c.remote_port = e.remote_port
LEFT JOIN listener l ON l.netns = e.netns AND l.local_port = e.local_port
GROUP BY e.netns, e.netns_name, e.role, coalesce(c.pid, l.pid), coalesce(c.process, l.process), e.local_port, e.remote_addr
ORDER BY e.netns, resets DESC, e.role, e.local_port, e.remote_addr;
