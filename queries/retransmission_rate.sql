-- name: retransmission_rate
-- description: TCP retransmissions seen on the wire during a live capture (--capture-for), per sending flow and per process (scope = 'process' rows sum the process's flows, clean ones included): retransmissions as tshark's tcp.analysis.retransmission (fast and spurious included) over the data, SYN and FIN segments sent; loss, congestion or a peer that stopped answering
-- empty: no retransmissions during the capture
WITH flows AS (
    -- Segments a local socket sent: out of this host, or over loopback.
    SELECT netns, netns_name, src_addr, src_port, dst_addr, dst_port,
           sum(CASE WHEN payload_length > 0 OR syn OR fin THEN 1 ELSE 0 END) AS segments,
           sum(CASE WHEN retransmission THEN 1 ELSE 0 END) AS retransmissions,
           sum(CASE WHEN fast_retransmission THEN 1 ELSE 0 END) AS fast,
           sum(CASE WHEN spurious_retransmission THEN 1 ELSE 0 END) AS spurious
    FROM packets
    WHERE protocol = 'tcp' AND (direction = 'out' OR interface = 'lo')
    GROUP BY netns, netns_name, src_addr, src_port, dst_addr, dst_port
),
owner AS (
    SELECT s.netns, s.state, s.local_addr, s.local_port, s.remote_addr, s.remote_port, min(o.pid) AS pid
    FROM sockets s JOIN socket_owners o ON o.inode = s.inode
    WHERE s.protocol = 'tcp' AND s.inode <> 0
    GROUP BY s.netns, s.state, s.local_addr, s.local_port, s.remote_addr, s.remote_port
),
listener AS (
    SELECT netns, local_port, min(pid) AS pid FROM owner WHERE state = 'LISTEN' GROUP BY netns, local_port
),
owned AS (
    SELECT f.*, coalesce(c.pid, l.pid) AS pid
    FROM flows f
    LEFT JOIN owner c ON c.netns = f.netns AND c.state <> 'LISTEN' AND c.local_addr = f.src_addr AND c.local_port = f.src_port
                     AND c.remote_addr = f.dst_addr AND c.remote_port = f.dst_port
    LEFT JOIN listener l ON l.netns = f.netns AND l.local_port = f.src_port
)
SELECT o.netns, o.netns_name,
       CASE WHEN grouping(o.src_port) = 1 THEN 'process' ELSE 'flow' END AS scope,
       o.pid, p.name AS process, o.src_addr, o.src_port, o.dst_addr, o.dst_port,
       sum(o.segments) AS segments, sum(o.retransmissions) AS retransmissions,
       round(100.0 * sum(o.retransmissions) / greatest(sum(o.segments), 1), 2) AS retrans_pct,
       sum(o.fast) AS fast, sum(o.spurious) AS spurious
FROM owned o
LEFT JOIN processes p ON p.pid = o.pid
GROUP BY GROUPING SETS (
    (o.netns, o.netns_name, o.pid, p.name, o.src_addr, o.src_port, o.dst_addr, o.dst_port),
    (o.netns, o.netns_name, o.pid, p.name)
)
HAVING sum(o.retransmissions) > 0
ORDER BY o.netns, o.pid, scope DESC, retransmissions DESC, o.src_port, o.dst_port;
