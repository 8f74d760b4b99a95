-- name: tcp_lifetimes
-- description: TCP connections that closed while the report listened (--capture-for, default 10 s), one row per connection end (bcc tcplife): its holder, when it opened and closed, how long it lived, and the bytes each way. From tcp_state_changes: opened_at is its first transition seen, closed_at its transition to CLOSE (a client's TIME-WAIT beginning); from_start says that first transition was the connection's own start (out of CLOSE: connect(), or a listener's new connection), else it opened before the report began and duration_ms is how long it lived at least. bytes_sent and bytes_received are tcp_info's bytes_acked and bytes_received, final, as tcplife and ss -i show them (the kernel counts the SYN and FIN it sent in bytes_acked, and a FIN received before this end closed in bytes_received: a client that sent 5 bytes and closed first reads 7 sent), from the socket_events destroy event of the same socket (same cookie): the state-change tracepoint carries no byte counts. They are null when no destroy event came while the report listened (the holder still had it open, or the kernel freed it later) or when no dump found the socket to give its cookie (a connection that lived and died between two of the lookup's dumps); pid and process are null likewise. Over loopback both ends are rows.
-- empty: no TCP connection closed while the report listened
WITH events AS (
    -- One scan of each stream, side by side, so both listen at once.
    SELECT sock_id, netns, netns_name, family, local_addr, local_port, remote_addr, remote_port,
           ts, old_state, new_state, pid, process, cookie,
           CAST(NULL AS BIGINT UNSIGNED) AS bytes_acked, CAST(NULL AS BIGINT UNSIGNED) AS bytes_received
    -- A listener's transitions are not a connection's (no remote port).
    FROM tcp_state_changes WHERE remote_port <> 0
    UNION ALL
    SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, 'destroyed', NULL, NULL, cookie, bytes_acked, bytes_received
    FROM socket_events WHERE protocol = 'tcp'
),
counted AS (
    -- Each transition with the final bytes of its socket's destroy event.
    SELECT *, max(bytes_acked) OVER (PARTITION BY cookie) AS sent,
           max(bytes_received) OVER (PARTITION BY cookie) AS received
    FROM events
),
lives AS (
    SELECT sock_id, netns, netns_name, family, local_addr, local_port, remote_addr, remote_port,
           min(ts) AS opened_at,
           max(CASE WHEN new_state = 'CLOSE' THEN ts END) AS closed_at,
           bool_or(old_state = 'CLOSE' OR (old_state = 'LISTEN' AND new_state = 'SYN-RECV')) AS from_start,
           max(CASE WHEN old_state = 'CLOSE' THEN 'connect' WHEN old_state = 'LISTEN' THEN 'accept' END) AS side,
           max(pid) AS pid, max(process) AS process, max(cookie) AS cookie,
           max(sent) AS bytes_sent, max(received) AS bytes_received
    FROM counted
    WHERE new_state <> 'destroyed'
    GROUP BY sock_id, netns, netns_name, family, local_addr, local_port, remote_addr, remote_port
)
SELECT netns, netns_name, pid, process, side, family,
       local_addr, local_port, remote_addr, remote_port,
       opened_at, closed_at,
       CAST(CAST(closed_at AS BIGINT) - CAST(opened_at AS BIGINT) AS DOUBLE) / 1e6 AS duration_ms,
       from_start, bytes_sent, bytes_received, cookie, sock_id
FROM lives
WHERE closed_at IS NOT NULL
ORDER BY closed_at, local_port;
