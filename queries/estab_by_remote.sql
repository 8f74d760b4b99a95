-- name: estab_by_remote
-- description: Established TCP connections per remote IP, busiest first (ss -tna | grep ESTAB | awk '{print $5}' | cut -d: -f1 | sort | uniq -c | sort -nr)
SELECT netns, netns_name, remote_addr, count(*) AS connections
FROM sockets
WHERE protocol = 'tcp' AND state = 'ESTAB'
GROUP BY netns, netns_name, remote_addr
ORDER BY netns, connections DESC, remote_addr;
