-- name: syn_recv
-- description: Listeners under connection pressure: half-open (SYN-RECV) connections and accept-queue fill. Many SYN-RECV means a SYN flood or lost handshakes; a full accept queue means the application accepts too slowly
WITH half_open AS (
    SELECT local_port, count(*) AS syn_recv, count(DISTINCT remote_addr) AS sources
    FROM sockets
    WHERE protocol = 'tcp' AND state = 'SYN-RECV'
    GROUP BY local_port
)
SELECT l.local_addr, l.local_port,
       coalesce(h.syn_recv, 0) AS syn_recv,
       coalesce(h.sources, 0) AS sources,
       l.recv_q AS accept_queue,
       l.send_q AS backlog,
       round(100.0 * l.recv_q / nullif(l.send_q, 0), 1) AS accept_queue_pct,
       l.pid, l.process
FROM sockets l
LEFT JOIN half_open h ON h.local_port = l.local_port
WHERE l.protocol = 'tcp' AND l.state = 'LISTEN' AND (h.syn_recv > 0 OR l.recv_q > 0)
ORDER BY syn_recv DESC, accept_queue_pct DESC;
