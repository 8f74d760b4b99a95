-- name: top_talkers
-- description: Who moved the most traffic during a live capture (--capture-for), per process and remote address: TCP and UDP packets and bytes each way (the length of each IP packet, headers included) and bytes per second of capture. owner says how pid is known: 'capture' (the capture saw the process holding the connection while it was open), 'socket' (its socket, found after the capture), 'listener (guess)' (the connection was gone: the process is only the one holding its local port, a TCP listener or unconnected UDP socket, e.g. a pre-forking server's master), the least certain of the row's connections; pid is null for traffic no local socket holds
-- empty: no TCP or UDP traffic during the capture
WITH traffic AS (
    SELECT netns, netns_name, protocol, interface, direction, src_addr, src_port, dst_addr, dst_port,
           count(*) AS packets, sum(length) AS bytes,
           -- The holders the capture learned while the connection was open.
           max(src_pid) AS src_pid, max(src_process) AS src_process, max(dst_pid) AS dst_pid, max(dst_process) AS dst_process
    FROM packets
    WHERE protocol IN ('tcp', 'udp')
    GROUP BY netns, netns_name, protocol, interface, direction, src_addr, src_port, dst_addr, dst_port
),
-- Each packet once per local end: its sender where it left this host (or
-- went over loopback, where both ends are local), its receiver where it
-- arrived.
ends AS (
    SELECT t.netns, t.netns_name, t.protocol, roles.role, t.packets, t.bytes,
           CASE WHEN roles.role = 'sent' THEN t.src_pid ELSE t.dst_pid END AS held_pid,
           CASE WHEN roles.role = 'sent' THEN t.src_process ELSE t.dst_process END AS held_process,
           CASE WHEN roles.role = 'sent' THEN t.src_addr ELSE t.dst_addr END AS local_addr,
           CASE WHEN roles.role = 'sent' THEN t.src_port ELSE t.dst_port END AS local_port,
           CASE WHEN roles.role = 'sent' THEN t.dst_addr ELSE t.src_addr END AS remote_addr,
           CASE WHEN roles.role = 'sent' THEN t.dst_port ELSE t.src_port END AS remote_port
    FROM traffic t CROSS JOIN (VALUES ('sent'), ('received')) AS roles(role)
    WHERE (roles.role = 'sent' AND (t.direction = 'out' OR t.interface = 'lo'))
       OR (roles.role = 'received' AND t.direction = 'in')
),
-- The process of a local end: the one the capture saw holding it, else
-- its connection's after the capture (sockets.pid, the lowest holder),
-- else, a guess, that of the socket bound to its port (a TCP listener, an
-- unconnected UDP socket).
conn AS (
    SELECT netns, protocol, local_addr, local_port, remote_addr, remote_port, pid, process
    FROM sockets WHERE protocol IN ('tcp', 'udp') AND state NOT IN ('LISTEN', 'UNCONN') AND pid IS NOT NULL
),
bound AS (
    SELECT netns, protocol, local_port, min(pid) AS pid, min(process) AS process
    FROM sockets WHERE protocol IN ('tcp', 'udp') AND state IN ('LISTEN', 'UNCONN') AND pid IS NOT NULL
    GROUP BY netns, protocol, local_port
),
owned AS (
    SELECT e.*,
           coalesce(e.held_pid, c.pid, b.pid) AS pid,
           CASE WHEN e.held_pid IS NOT NULL THEN e.held_process WHEN c.pid IS NOT NULL THEN c.process ELSE b.process END AS process,
           CASE WHEN e.held_pid IS NOT NULL THEN 1 WHEN c.pid IS NOT NULL THEN 2 WHEN b.pid IS NOT NULL THEN 3 END AS owner_rank
    FROM ends e
    LEFT JOIN conn c ON c.netns = e.netns AND c.protocol = e.protocol AND c.local_addr = e.local_addr AND c.local_port = e.local_port
                    AND c.remote_addr = e.remote_addr AND c.remote_port = e.remote_port
    LEFT JOIN bound b ON b.netns = e.netns AND b.protocol = e.protocol AND b.local_port = e.local_port
)
SELECT e.netns, e.netns_name, e.pid, e.process,
       -- The least certain of the row's connections.
       CASE max(e.owner_rank) WHEN 1 THEN 'capture' WHEN 2 THEN 'socket' WHEN 3 THEN 'listener (guess)' END AS owner, e.remote_addr,
       sum(CASE WHEN e.role = 'sent' THEN e.packets ELSE 0 END) AS packets_out,
       sum(CASE WHEN e.role = 'sent' THEN e.bytes ELSE 0 END) AS bytes_out,
       sum(CASE WHEN e.role = 'received' THEN e.packets ELSE 0 END) AS packets_in,
       sum(CASE WHEN e.role = 'received' THEN e.bytes ELSE 0 END) AS bytes_in,
       round(sum(e.bytes) / capture_seconds(), 1) AS bytes_per_sec
FROM owned e
GROUP BY e.netns, e.netns_name, e.pid, e.process, e.remote_addr
ORDER BY e.netns, sum(e.bytes) DESC, e.pid, e.remote_addr;
