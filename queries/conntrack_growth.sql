-- name: conntrack_growth
-- description: Connection-tracking entries over the recorded window (needs --history DIR): count per sample and change since the previous one, per host
-- param: minutes 60
SELECT host, ts, count(*) AS entries,
       count(*) - lag(count(*)) OVER (PARTITION BY host ORDER BY ts) AS change
FROM history.conntrack
WHERE to_unixtime(ts) >= to_unixtime(now()) - $minutes * 60
GROUP BY host, ts
ORDER BY host, ts;
