-- name: state_trend
-- description: Socket states over the recorded window (needs --history DIR): count per sample and change since the previous sample, per host
-- param: minutes 60
SELECT host, ts, state, count(*) AS sockets,
       count(*) - lag(count(*)) OVER (PARTITION BY host, state ORDER BY ts) AS change
FROM history.sockets
WHERE to_unixtime(ts) >= to_unixtime(now()) - $minutes * 60
GROUP BY host, ts, state
ORDER BY host, ts, state;
