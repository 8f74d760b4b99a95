-- name: states
-- description: Socket states with counts and percentages (ss -tan | awk '{print $1}' | sort | uniq -c)
SELECT protocol, state, count(*) AS sockets,
       round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS pct
FROM sockets
GROUP BY protocol, state
ORDER BY sockets DESC, protocol, state;
