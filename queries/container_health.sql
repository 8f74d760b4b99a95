-- name: container_health
-- description: The health report's socket rules of thumb per container (run with --all-netns): CLOSE-WAIT leaks, SYN floods or slow accept loops, full accept queues, retransmitting connections; one row per finding with its evidence. Host sockets are left out (the health report covers them)
-- empty: no container breaks a rule of thumb (sockql run container_health --param NAME=VALUE moves the thresholds)
-- param: syn_recv_min 100
-- param: close_wait_min 10
-- param: retransmitting_min 10
WITH s AS (
    SELECT coalesce(container, substr(container_id, 1, 12)) AS container, netns, state, local_port, recv_q, send_q,
           pid, process, remote_addr, total_retrans, retransmits
    FROM sockets
    WHERE protocol = 'tcp' AND container_id IS NOT NULL
)
SELECT container, netns, 'close-wait-leak' AS rule,
       'pid ' || coalesce(CAST(pid AS VARCHAR), '?') || ' (' || coalesce(process, '?') || ')' AS subject, count(*) AS value,
       count(*) || ' sockets in CLOSE-WAIT from ' || count(DISTINCT remote_addr)
         || ' peers: the peer closed, the application never closed its end' AS evidence
FROM s WHERE state = 'CLOSE-WAIT' GROUP BY container, netns, pid, process HAVING count(*) >= $close_wait_min
UNION ALL
SELECT container, netns, 'syn-flood-or-slow-accept', 'port ' || local_port, count(*),
       count(*) || ' SYN-RECV from ' || count(DISTINCT remote_addr) || ' sources'
FROM s WHERE state = 'SYN-RECV' GROUP BY container, netns, local_port HAVING count(*) >= $syn_recv_min
UNION ALL
SELECT container, netns, 'accept-queue-full', 'port ' || local_port, max(recv_q),
       'accept queue ' || max(recv_q) || '/' || max(send_q) || ' (' || coalesce(max(process), '?') || ' is not accepting fast enough)'
FROM s WHERE state = 'LISTEN' AND send_q > 0 AND recv_q >= send_q GROUP BY container, netns, local_port
UNION ALL
SELECT container, netns, 'retransmitting', 'tcp connections', count(*),
       count(*) || ' open connections have retransmitted (' || sum(total_retrans) || ' segments), '
         || sum(CASE WHEN retransmits > 0 THEN 1 ELSE 0 END) || ' wait on a retransmission timeout now'
FROM s WHERE total_retrans > 0 GROUP BY container, netns HAVING count(*) >= $retransmitting_min
ORDER BY 1, 3, 5 DESC;
