-- name: fastest_growing_remotes
-- description: Remote IPs whose established connections grew most over the recorded window, per host and network namespace (needs --history DIR): first and last count, delta, rate per minute, largest single step
-- param: minutes 60
-- param: limit 20
WITH recent AS (
    SELECT host, ts, netns, netns_name, state, remote_addr FROM history.sockets
    WHERE to_unixtime(ts) >= to_unixtime(now()) - $minutes * 60
),
-- Every sample, empty ones included (a remote that dropped to 0 shows 0).
ticks AS (
    SELECT DISTINCT host, ts FROM (
        SELECT host, ts FROM history.samples WHERE source = 'sockets'
        UNION ALL
        SELECT host, ts FROM recent
    ) t
    WHERE to_unixtime(ts) >= to_unixtime(now()) - $minutes * 60
),
remotes AS (SELECT DISTINCT host, netns, netns_name, remote_addr FROM recent WHERE state = 'ESTAB'),
counts AS (
    SELECT host, ts, netns, remote_addr, count(*) AS n FROM recent WHERE state = 'ESTAB' GROUP BY 1, 2, 3, 4
),
grid AS (
    SELECT t.host, t.ts, r.netns, r.netns_name, r.remote_addr, coalesce(c.n, 0) AS n
    FROM ticks t
    JOIN remotes r ON r.host = t.host
    LEFT JOIN counts c ON c.host = t.host AND c.ts = t.ts AND c.netns = r.netns AND c.remote_addr = r.remote_addr
),
growth AS (
    SELECT host, netns, netns_name, remote_addr, ts, n,
           n - lag(n) OVER (PARTITION BY host, netns, remote_addr ORDER BY ts) AS step,
           first_value(n) OVER (PARTITION BY host, netns, remote_addr ORDER BY ts ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS first_n,
           last_value(n) OVER (PARTITION BY host, netns, remote_addr ORDER BY ts ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS last_n,
           min(ts) OVER (PARTITION BY host) AS t0,
           max(ts) OVER (PARTITION BY host) AS t1
    FROM grid
)
SELECT host, netns, netns_name, remote_addr,
       max(first_n) AS first, max(last_n) AS last, max(last_n) - max(first_n) AS delta,
       round((max(last_n) - max(first_n)) * 60.0 / greatest(date_part('epoch', max(t1)) - date_part('epoch', max(t0)), 1.0), 2) AS per_minute,
       coalesce(max(step), 0) AS largest_step
FROM growth
GROUP BY host, netns, netns_name, remote_addr
ORDER BY delta DESC, remote_addr
LIMIT $limit;
