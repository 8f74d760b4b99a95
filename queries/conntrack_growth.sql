-- name: conntrack_growth
-- description: Connection-tracking entries over the recorded window (needs --history DIR): count per sample (0 for an empty table) and change since the previous one, per host
-- param: minutes 60
WITH recent AS (
    SELECT host, ts FROM history.conntrack
    WHERE to_unixtime(ts) >= to_unixtime(now()) - $minutes * 60
),
ticks AS (
    SELECT DISTINCT host, ts FROM (
        SELECT host, ts FROM history.samples WHERE source = 'conntrack'
        UNION ALL
        SELECT host, ts FROM recent
    ) t
    WHERE to_unixtime(ts) >= to_unixtime(now()) - $minutes * 60
),
counts AS (SELECT host, ts, count(*) AS n FROM recent GROUP BY 1, 2),
grid AS (
    SELECT t.host, t.ts, coalesce(c.n, 0) AS entries
    FROM ticks t LEFT JOIN counts c ON c.host = t.host AND c.ts = t.ts
)
SELECT host, ts, entries,
       entries - lag(entries) OVER (PARTITION BY host ORDER BY ts) AS change
FROM grid
ORDER BY host, ts;
