-- name: conntrack_growth
-- description: Connection-tracking entries over the recorded window (needs --history DIR): count per sample (0 for an empty table) and change since the previous one, per host and network namespace
-- param: minutes 60
WITH recent AS (
    SELECT host, ts, netns, netns_name FROM history.conntrack
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
-- The namespaces of the recording: those with entries, and, for a
-- recording whose table was empty throughout, the sampled namespace
-- itself is unknown (netns null).
namespaces AS (
    SELECT DISTINCT host, netns, netns_name FROM recent
    UNION
    SELECT DISTINCT host, CAST(NULL AS BIGINT UNSIGNED) AS netns, CAST(NULL AS VARCHAR) AS netns_name FROM ticks t
    WHERE NOT EXISTS (SELECT 1 FROM recent r WHERE r.host = t.host)
),
counts AS (SELECT host, ts, netns, count(*) AS n FROM recent GROUP BY 1, 2, 3),
grid AS (
    SELECT t.host, n.netns, n.netns_name, t.ts, coalesce(c.n, 0) AS entries
    FROM ticks t
    JOIN namespaces n ON n.host = t.host
    LEFT JOIN counts c ON c.host = t.host AND c.ts = t.ts AND c.netns = n.netns
)
SELECT host, netns, netns_name, ts, entries,
       entries - lag(entries) OVER (PARTITION BY host, netns ORDER BY ts) AS change
FROM grid
ORDER BY host, netns, ts;
