-- name: states
-- description: Socket states with counts and percentages (ss -tan | awk '{print $1}' | sort | uniq -c)
SELECT netns, netns_name, protocol, state, count(*) AS sockets,
       round(100.0 * count(*) / sum(count(*)) OVER (PARTITION BY netns), 1) AS pct
FROM sockets
GROUP BY netns, netns_name, protocol, state
ORDER BY netns, sockets DESC, protocol, state;
