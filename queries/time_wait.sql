-- name: time_wait
-- description: Local ephemeral ports in use per remote endpoint and namespace, TIME-WAIT among them, against that namespace's net.ipv4.ip_local_port_range. pct_used near 100 means new connections to that endpoint fail (port exhaustion)
WITH port_range AS (
    SELECT netns,
           CAST(split_part(value, ' ', 1) AS BIGINT) AS lo,
           CAST(split_part(value, ' ', 2) AS BIGINT) AS hi
    FROM sysctls
    WHERE name = 'net.ipv4.ip_local_port_range'
)
SELECT s.netns, s.netns_name, s.remote_addr, s.remote_port,
       sum(CASE WHEN s.state = 'TIME-WAIT' THEN 1 ELSE 0 END) AS time_wait,
       count(*) AS ports_in_use,
       r.hi - r.lo + 1 AS ephemeral_ports,
       round(100.0 * count(*) / (r.hi - r.lo + 1), 2) AS pct_used
FROM sockets s
JOIN port_range r ON r.netns = s.netns
WHERE s.protocol = 'tcp' AND s.state <> 'LISTEN' AND s.local_port BETWEEN r.lo AND r.hi
GROUP BY s.netns, s.netns_name, s.remote_addr, s.remote_port, r.lo, r.hi
HAVING sum(CASE WHEN s.state = 'TIME-WAIT' THEN 1 ELSE 0 END) > 0
ORDER BY s.netns, time_wait DESC, ports_in_use DESC;
