-- name: health
-- description: The rules of thumb applied to this host, one row per finding with its evidence: SYN flood or slow accept loop, applications not closing sockets (CLOSE-WAIT), ephemeral port exhaustion (TIME-WAIT), idle connections. With --all-netns, every namespace and container
-- empty: no findings: no rule of thumb is broken (sockql run health --param NAME=VALUE moves the thresholds)
-- param: syn_recv_min 100
-- param: close_wait_min 10
-- param: ports_pct_min 50
-- param: idle_seconds 300
WITH tcpext AS (
    SELECT netns,
           sum(CASE WHEN name = 'ListenOverflows' THEN value ELSE 0 END) AS overflows,
           sum(CASE WHEN name = 'ListenDrops' THEN value ELSE 0 END) AS listen_drops,
           sum(CASE WHEN name = 'SyncookiesSent' THEN value ELSE 0 END) AS syncookies,
           sum(CASE WHEN name = 'TCPTimeWaitOverflow' THEN value ELSE 0 END) AS tw_overflow
    FROM net_counters WHERE mib = 'TcpExt' GROUP BY netns
),
syn AS (
    SELECT netns, netns_name, local_port, count(*) AS n, count(DISTINCT remote_addr) AS sources
    FROM sockets WHERE protocol = 'tcp' AND state = 'SYN-RECV' GROUP BY 1, 2, 3
),
full_queue AS (
    SELECT netns, netns_name, local_port, recv_q, send_q, process
    FROM sockets WHERE protocol = 'tcp' AND state = 'LISTEN' AND send_q > 0 AND recv_q >= send_q
),
close_wait AS (
    SELECT netns, netns_name, pid, process, count(*) AS n
    FROM sockets WHERE protocol = 'tcp' AND state = 'CLOSE-WAIT' GROUP BY 1, 2, 3, 4
),
port_range AS (
    SELECT netns, CAST(split_part(value, ' ', 1) AS BIGINT) AS lo, CAST(split_part(value, ' ', 2) AS BIGINT) AS hi
    FROM sysctls WHERE name = 'net.ipv4.ip_local_port_range'
),
ports AS (
    SELECT s.netns, s.netns_name, s.remote_addr, s.remote_port, count(*) AS used,
           sum(CASE WHEN s.state = 'TIME-WAIT' THEN 1 ELSE 0 END) AS time_wait, max(r.hi - r.lo + 1) AS range_size
    FROM sockets s JOIN port_range r ON r.netns = s.netns
    WHERE s.protocol = 'tcp' AND s.state <> 'LISTEN' AND s.local_port BETWEEN r.lo AND r.hi
    GROUP BY 1, 2, 3, 4
),
-- Idle without keepalive, or with keepalive probes going unanswered: an
-- idle connection whose keepalive timer runs with no failed probe is
-- healthy (the kernel checks the peer for it).
idle AS (
    SELECT netns, netns_name, pid, process, count(*) AS n, max(least(last_recv_ms, last_send_ms)) / 1000 AS max_idle_s,
           sum(CASE WHEN timer = 'keepalive' THEN 1 ELSE 0 END) AS probing
    FROM sockets
    WHERE protocol = 'tcp' AND state = 'ESTAB' AND least(last_recv_ms, last_send_ms) > $idle_seconds * 1000
      AND (coalesce(timer, '') <> 'keepalive' OR retransmits > 0)
    GROUP BY 1, 2, 3, 4
)
SELECT s.netns, s.netns_name, 'syn-flood-or-slow-accept' AS rule, 'port ' || s.local_port AS subject, s.n AS value,
       s.n || ' SYN-RECV from ' || s.sources || ' sources; ListenOverflows=' || coalesce(t.overflows, 0)
         || ' ListenDrops=' || coalesce(t.listen_drops, 0) || ' SyncookiesSent=' || coalesce(t.syncookies, 0)
         || ' (namespace totals since boot)' AS evidence
FROM syn s LEFT JOIN tcpext t ON t.netns = s.netns WHERE s.n >= $syn_recv_min
UNION ALL
SELECT q.netns, q.netns_name, 'accept-queue-full', 'port ' || q.local_port, q.recv_q,
       'accept queue ' || q.recv_q || '/' || q.send_q || ' (' || coalesce(q.process, '?') || ' is not accepting fast enough); ListenOverflows='
         || coalesce(t.overflows, 0) || ' (namespace total since boot)'
FROM full_queue q LEFT JOIN tcpext t ON t.netns = q.netns
UNION ALL
SELECT netns, netns_name, 'close-wait-leak', 'pid ' || coalesce(CAST(pid AS VARCHAR), '?') || ' (' || coalesce(process, '?') || ')', n,
       n || ' sockets in CLOSE-WAIT: the peer closed, the application never closed its end'
FROM close_wait WHERE n >= $close_wait_min
UNION ALL
SELECT p.netns, p.netns_name, 'ephemeral-port-exhaustion', p.remote_addr || ':' || p.remote_port, p.used,
       p.used || ' of ' || p.range_size || ' local ports in use towards it (' || p.time_wait || ' in TIME-WAIT); TCPTimeWaitOverflow='
         || coalesce(t.tw_overflow, 0) || ' (namespace total since boot)'
FROM ports p LEFT JOIN tcpext t ON t.netns = p.netns WHERE 100.0 * p.used / p.range_size >= $ports_pct_min
UNION ALL
SELECT netns, netns_name, 'idle-established', 'pid ' || coalesce(CAST(pid AS VARCHAR), '?') || ' (' || coalesce(process, '?') || ')', n,
       n || ' ESTAB connections idle up to ' || max_idle_s || ' s, '
         || CASE WHEN probing > 0 THEN probing || ' of them with unanswered keepalive probes' ELSE 'none with keepalive' END
         || ': dead peers or missing keepalives'
FROM idle
ORDER BY 2, 3, 5 DESC;
