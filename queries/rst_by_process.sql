-- name: rst_by_process
-- description: TCP resets during a live capture (--capture-for), per process and remote: role sent (the process's socket, or the kernel for a port nothing holds, reset the peer) or received (the peer reset the process's connection). owner says how pid is known: 'capture' (seen holding the connection while it was open), 'socket' (found after the capture), 'listener (guess)' (the connection was gone: the process holding its port's listener, e.g. a pre-forking server's master), the least certain of the row's connections; pid is null where no process holds the port (refused connections, clients already gone)
-- empty: no TCP resets during the capture
WITH rst AS (
    SELECT netns, netns_name, interface, direction, src_addr, src_port, dst_addr, dst_port, count(*) AS n,
           -- The holders the capture learned while the connection was open.
           max(src_pid) AS src_pid, max(src_process) AS src_process, max(dst_pid) AS dst_pid, max(dst_process) AS dst_process
    FROM packets
    WHERE protocol = 'tcp' AND rst
    GROUP BY netns, netns_name, interface, direction, src_addr, src_port, dst_addr, dst_port
),
-- Each reset once per local end: the sender where the packet left this
-- host (or went over loopback, where both ends are local), the target
-- where it arrived.
ends AS (
    SELECT r.netns, r.netns_name, roles.role, r.n,
           CASE WHEN roles.role = 'sent' THEN r.src_pid ELSE r.dst_pid END AS held_pid,
           CASE WHEN roles.role = 'sent' THEN r.src_process ELSE r.dst_process END AS held_process,
           CASE WHEN roles.role = 'sent' THEN r.src_addr ELSE r.dst_addr END AS local_addr,
           CASE WHEN roles.role = 'sent' THEN r.src_port ELSE r.dst_port END AS local_port,
           CASE WHEN roles.role = 'sent' THEN r.dst_addr ELSE r.src_addr END AS remote_addr,
           CASE WHEN roles.role = 'sent' THEN r.dst_port ELSE r.src_port END AS remote_port
    FROM rst r CROSS JOIN (VALUES ('sent'), ('received')) AS roles(role)
    WHERE (roles.role = 'sent' AND (r.direction = 'out' OR r.interface = 'lo'))
       OR (roles.role = 'received' AND r.direction = 'in')
),
-- The process of a local end: the one the capture saw holding it, else
-- its connection's after the capture (sockets.pid, the lowest holder),
-- else, a guess, its port's listener's.
conn AS (
    SELECT netns, local_addr, local_port, remote_addr, remote_port, pid, process
    FROM sockets WHERE protocol = 'tcp' AND state <> 'LISTEN' AND pid IS NOT NULL
),
listener AS (
    SELECT netns, local_port, min(pid) AS pid, min(process) AS process
    FROM sockets WHERE protocol = 'tcp' AND state = 'LISTEN' AND pid IS NOT NULL
    GROUP BY netns, local_port
),
owned AS (
    SELECT e.*,
           coalesce(e.held_pid, c.pid, l.pid) AS pid,
           CASE WHEN e.held_pid IS NOT NULL THEN e.held_process WHEN c.pid IS NOT NULL THEN c.process ELSE l.process END AS process,
           CASE WHEN e.held_pid IS NOT NULL THEN 1 WHEN c.pid IS NOT NULL THEN 2 WHEN l.pid IS NOT NULL THEN 3 END AS owner_rank
    FROM ends e
    LEFT JOIN conn c ON c.netns = e.netns AND c.local_addr = e.local_addr AND c.local_port = e.local_port
                    AND c.remote_addr = e.remote_addr AND c.remote_port = e.remote_port
    LEFT JOIN listener l ON l.netns = e.netns AND l.local_port = e.local_port
)
SELECT e.netns, e.netns_name, e.role, e.pid, e.process, CASE max(e.owner_rank) WHEN 1 THEN 'capture' WHEN 2 THEN 'socket' WHEN 3 THEN 'listener (guess)' END AS owner,
       e.local_port, e.remote_addr, sum(e.n) AS resets, count(DISTINCT e.remote_port) AS remote_ports
FROM owned e
GROUP BY e.netns, e.netns_name, e.role, e.pid, e.process, e.local_port, e.remote_addr
ORDER BY e.netns, resets DESC, e.role, e.local_port, e.remote_addr;
