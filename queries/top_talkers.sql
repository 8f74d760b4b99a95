-- name: top_talkers
-- description: Who moved the most traffic during a live capture (--capture-for), per process and remote address: TCP and UDP packets and bytes each way (the length of each IP packet, headers included) and bytes per second of capture; pid is null for traffic no local socket holds
-- empty: no TCP or UDP traffic during the capture
WITH traffic AS (
    SELECT netns, netns_name, protocol, interface, direction, src_addr, src_port, dst_addr, dst_port,
           count(*) AS packets, sum(length) AS bytes
    FROM packets
    WHERE protocol IN ('tcp', 'udp')
    GROUP BY netns, netns_name, protocol, interface, direction, src_addr, src_port, dst_addr, dst_port
),
-- Each packet once per local end: its sender where it left this host (or
-- went over loopback, where both ends are local), its receiver where it
-- arrived.
ends AS (
    SELECT t.netns, t.netns_name, t.protocol, roles.role, t.packets, t.bytes,
           CASE WHEN roles.role = 'sent' THEN t.src_addr ELSE t.dst_addr END AS local_addr,
           CASE WHEN roles.role = 'sent' THEN t.src_port ELSE t.dst_port END AS local_port,
           CASE WHEN roles.role = 'sent' THEN t.dst_addr ELSE t.src_addr END AS remote_addr,
           CASE WHEN roles.role = 'sent' THEN t.dst_port ELSE t.src_port END AS remote_port
    FROM traffic t CROSS JOIN (VALUES ('sent'), ('received')) AS roles(role)
    WHERE (roles.role = 'sent' AND (t.direction = 'out' OR t.interface = 'lo'))
       OR (roles.role = 'received' AND t.direction = 'in')
),
-- The process of a local end: its connection's (sockets.pid, the lowest
-- holder), else that of the socket bound to its port (a TCP listener, an
-- unconnected UDP socket).
conn AS (
    SELECT netns, protocol, local_addr, local_port, remote_addr, remote_port, pid, process
    FROM sockets WHERE protocol IN ('tcp', 'udp') AND state NOT IN ('LISTEN', 'UNCONN') AND pid IS NOT NULL
),
bound AS (
    SELECT netns, protocol, local_port, min(pid) AS pid, min(process) AS process
    FROM sockets WHERE protocol IN ('tcp', 'udp') AND state IN ('LISTEN', 'UNCONN') AND pid IS NOT NULL
    GROUP BY netns, protocol, local_port
)
SELECT e.netns, e.netns_name, coalesce(c.pid, b.pid) AS pid, coalesce(c.process, b.process) AS process, e.remote_addr,
       sum(CASE WHEN e.role = 'sent' THEN e.packets ELSE 0 END) AS packets_out,
       sum(CASE WHEN e.role = 'sent' THEN e.bytes ELSE 0 END) AS bytes_out,
       sum(CASE WHEN e.role = 'received' THEN e.packets ELSE 0 END) AS packets_in,
       sum(CASE WHEN e.role = 'received' THEN e.bytes ELSE 0 END) AS bytes_in,
       round(sum(e.bytes) / capture_seconds(), 1) AS bytes_per_sec
FROM ends e
LEFT JOIN conn c ON c.netns = e.netns AND c.protocol = e.protocol AND c.local_addr = e.local_addr AND c.local_port = e.local_port
                AND c.remote_addr = e.remote_addr AND c.remote_port = e.remote_port
LEFT JOIN bound b ON b.netns = e.netns AND b.protocol = e.protocol AND b.local_port = e.local_port
GROUP BY e.netns, e.netns_name, coalesce(c.pid, b.pid), coalesce(c.process, b.process), e.remote_addr
ORDER BY e.netns, sum(e.bytes) DESC, pid, e.remote_addr;
