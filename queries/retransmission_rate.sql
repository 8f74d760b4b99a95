-- name: retransmission_rate
-- description: TCP retransmissions seen on the wire during a live capture (--capture-for), per sending flow and per process (scope = 'process' rows sum the process's flows, clean ones included): retransmissions as tshark's tcp.analysis.retransmission (fast and spurious included) over the data, SYN and FIN segments sent; loss, congestion or a peer that stopped answering. owner says how pid is known: 'capture' (seen holding the connection while it was open), 'socket' (found after the capture), 'listener (guess)' (the connection was gone: the process holding its port's listener, e.g. a pre-forking server's master), the least certain of the row's connections
-- empty: no retransmissions during the capture
WITH flows AS (
    -- Segments a local socket sent: out of this host, or over loopback.
    SELECT netns, netns_name, src_addr, src_port, dst_addr, dst_port,
           sum(CASE WHEN payload_length > 0 OR syn OR fin THEN 1 ELSE 0 END) AS segments,
           sum(CASE WHEN retransmission THEN 1 ELSE 0 END) AS retransmissions,
           sum(CASE WHEN fast_retransmission THEN 1 ELSE 0 END) AS fast,
           sum(CASE WHEN spurious_retransmission THEN 1 ELSE 0 END) AS spurious,
           -- The holder the capture learned while the connection was open.
           max(src_pid) AS held_pid, max(src_process) AS held_process
    FROM packets
    WHERE protocol = 'tcp' AND (direction = 'out' OR interface = 'lo')
    GROUP BY netns, netns_name, src_addr, src_port, dst_addr, dst_port
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
    SELECT f.*,
           coalesce(f.held_pid, c.pid, l.pid) AS pid,
           CASE WHEN f.held_pid IS NOT NULL THEN f.held_process WHEN c.pid IS NOT NULL THEN c.process ELSE l.process END AS process,
           CASE WHEN f.held_pid IS NOT NULL THEN 1 WHEN c.pid IS NOT NULL THEN 2 WHEN l.pid IS NOT NULL THEN 3 END AS owner_rank
    FROM flows f
    LEFT JOIN conn c ON c.netns = f.netns AND c.local_addr = f.src_addr AND c.local_port = f.src_port
                    AND c.remote_addr = f.dst_addr AND c.remote_port = f.dst_port
    LEFT JOIN listener l ON l.netns = f.netns AND l.local_port = f.src_port
)
SELECT o.netns, o.netns_name,
       CASE WHEN grouping(o.src_port) = 1 THEN 'process' ELSE 'flow' END AS scope,
       o.pid, o.process, CASE max(o.owner_rank) WHEN 1 THEN 'capture' WHEN 2 THEN 'socket' WHEN 3 THEN 'listener (guess)' END AS owner, o.src_addr, o.src_port, o.dst_addr, o.dst_port,
       sum(o.segments) AS segments, sum(o.retransmissions) AS retransmissions,
       round(100.0 * sum(o.retransmissions) / greatest(sum(o.segments), 1), 2) AS retrans_pct,
       sum(o.fast) AS fast, sum(o.spurious) AS spurious
FROM owned o
GROUP BY GROUPING SETS (
    (o.netns, o.netns_name, o.pid, o.process, o.src_addr, o.src_port, o.dst_addr, o.dst_port),
    (o.netns, o.netns_name, o.pid, o.process)
)
HAVING sum(o.retransmissions) > 0
ORDER BY o.netns, o.pid, scope DESC, retransmissions DESC, o.src_port, o.dst_port;
