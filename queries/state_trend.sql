-- name: state_trend
-- description: Socket states over the recorded window (needs --history DIR): count per sample (0 when a state was absent from a sample) and change since the previous sample, per host and network namespace
-- param: minutes 60
WITH recent AS (
    SELECT host, ts, netns, netns_name, state FROM history.sockets
    WHERE to_unixtime(ts) >= to_unixtime(now()) - $minutes * 60
),
-- Every sample, empty ones included: the recorder's log, and the data
-- itself for recordings made before the log existed.
ticks AS (
    SELECT DISTINCT host, ts FROM (
        SELECT host, ts FROM history.samples WHERE source = 'sockets'
        UNION ALL
        SELECT host, ts FROM recent
    ) t
    WHERE to_unixtime(ts) >= to_unixtime(now()) - $minutes * 60
),
counts AS (SELECT host, ts, netns, netns_name, state, count(*) AS n FROM recent GROUP BY 1, 2, 3, 4, 5),
states AS (SELECT DISTINCT host, netns, netns_name, state FROM counts),
grid AS (
    SELECT t.host, t.ts, s.netns, s.netns_name, s.state, coalesce(c.n, 0) AS sockets
    FROM ticks t
    JOIN states s ON s.host = t.host
    LEFT JOIN counts c ON c.host = t.host AND c.ts = t.ts AND c.netns = s.netns AND c.state = s.state
)
SELECT host, netns, netns_name, ts, state, sockets,
       sockets - lag(sockets) OVER (PARTITION BY host, netns, state ORDER BY ts) AS change
FROM grid
ORDER BY host, netns, ts, state;
