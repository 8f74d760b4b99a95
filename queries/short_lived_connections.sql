-- name: short_lived_connections
-- description: TCP connections that closed during a recording of events (sockql record --events; needs --history DIR), per host, namespace, remote and process: how many ends closed, how many a second over the recording, lifetime where known (opened after recording began) and bytes each way as the median (exact) and 90th percentile (approx_percentile_cont, a t-digest estimate) — who opens connections by the thousand (tcplife's question). Over loopback both ends count.
-- empty: no TCP connection closed while the recording listened
-- param: limit 20
WITH span AS (
    -- The recording's length per host, at least a second.
    SELECT host, greatest(to_unixtime(max(ts)) - to_unixtime(min(ts)), 1) AS seconds
    FROM history.socket_events GROUP BY host
)
SELECT e.host, e.netns, e.netns_name, e.remote_addr, e.process,
       count(*) AS connections,
       round(CAST(count(*) AS DOUBLE) / max(s.seconds), 2) AS per_sec,
       median(e.duration_ms) AS median_duration_ms,
       approx_percentile_cont(0.9) WITHIN GROUP (ORDER BY e.duration_ms) AS p90_duration_ms,
       count(e.duration_ms) AS with_duration,
       median(e.bytes_received) AS median_bytes_received,
       approx_percentile_cont(0.9) WITHIN GROUP (ORDER BY e.bytes_received) AS p90_bytes_received,
       median(e.bytes_acked) AS median_bytes_acked,
       approx_percentile_cont(0.9) WITHIN GROUP (ORDER BY e.bytes_acked) AS p90_bytes_acked
FROM history.socket_events e JOIN span s ON s.host = e.host
-- A listener's end has no remote port.
WHERE e.protocol = 'tcp' AND e.remote_port <> 0
GROUP BY e.host, e.netns, e.netns_name, e.remote_addr, e.process
ORDER BY connections DESC, e.remote_addr
LIMIT $limit;
