-- name: syn_recv
-- description: Listeners under connection pressure, per namespace: half-open (SYN-RECV) connections and accept-queue fill. Many SYN-RECV means a SYN flood or lost handshakes; a full accept queue means the application accepts too slowly
WITH listeners AS (
    SELECT * FROM sockets WHERE protocol = 'tcp' AND state = 'LISTEN'
),
half_open AS (
    SELECT netns, family, local_addr, local_port, remote_addr, remote_port
    FROM sockets
    WHERE protocol = 'tcp' AND state = 'SYN-RECV'
),
-- Each half-open connection belongs to one listener of its namespace and
-- port, as the kernel chose it: one bound to its exact address first, then
-- the wildcard of its family, then a dual-stack '::' for IPv4.
candidates AS (
    SELECT h.netns, h.local_port, h.local_addr AS h_addr, h.remote_addr, h.remote_port,
           l.family AS l_family, l.local_addr AS l_addr,
           CASE WHEN l.local_addr = h.local_addr THEN 1 WHEN l.family = h.family THEN 2 ELSE 3 END AS preference
    FROM half_open h
    JOIN listeners l ON l.netns = h.netns AND l.local_port = h.local_port
     AND (l.local_addr = h.local_addr
          OR (l.family = h.family AND l.local_addr IN ('0.0.0.0', '::'))
          OR (h.family = 'inet' AND l.local_addr = '::'))
),
chosen AS (
    SELECT *, row_number() OVER (PARTITION BY netns, h_addr, local_port, remote_addr, remote_port ORDER BY preference) AS pick
    FROM candidates
),
per_listener AS (
    SELECT netns, l_family, l_addr, local_port, count(*) AS syn_recv, count(DISTINCT remote_addr) AS sources
    FROM chosen WHERE pick = 1
    GROUP BY 1, 2, 3, 4
)
SELECT l.netns, l.netns_name, l.local_addr, l.local_port,
       coalesce(p.syn_recv, 0) AS syn_recv,
       coalesce(p.sources, 0) AS sources,
       l.recv_q AS accept_queue,
       l.send_q AS backlog,
       round(100.0 * l.recv_q / nullif(l.send_q, 0), 1) AS accept_queue_pct,
       l.pid, l.process
FROM listeners l
LEFT JOIN per_listener p
  ON p.netns = l.netns AND p.l_family = l.family AND p.l_addr = l.local_addr AND p.local_port = l.local_port
WHERE p.syn_recv > 0 OR l.recv_q > 0
ORDER BY l.netns, syn_recv DESC, accept_queue_pct DESC;
