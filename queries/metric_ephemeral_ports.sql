-- name: metric_ephemeral_ports
-- description: Ephemeral ports in use per remote address and port, as sockql serve exports them (sockql_ephemeral_ports_used, _time_wait, _range_size): used close to range_size means connect() to that remote will fail (EADDRNOTAVAIL)
-- metric: sockql_ephemeral_ports gauge TCP sockets on local ports of net.ipv4.ip_local_port_range per network namespace and remote address and port: used (every state but LISTEN), time_wait (of them in TIME-WAIT), range_size (ports in the range)
-- The same rule as health's port exhaustion: a local port inside the
-- range is one connect() took from it.
WITH port_range AS (
    SELECT netns, CAST(split_part(value, ' ', 1) AS BIGINT) AS lo, CAST(split_part(value, ' ', 2) AS BIGINT) AS hi
    FROM sysctls WHERE name = 'net.ipv4.ip_local_port_range'
)
SELECT CAST(s.netns AS VARCHAR) AS netns, coalesce(s.netns_name, '') AS netns_name,
       s.remote_addr, CAST(s.remote_port AS VARCHAR) AS remote_port,
       count(*) AS used, sum(CASE WHEN s.state = 'TIME-WAIT' THEN 1 ELSE 0 END) AS time_wait,
       max(r.hi - r.lo + 1) AS range_size
FROM sockets s JOIN port_range r ON r.netns = s.netns
WHERE s.protocol = 'tcp' AND s.state <> 'LISTEN' AND s.local_port BETWEEN r.lo AND r.hi
GROUP BY s.netns, s.netns_name, s.remote_addr, s.remote_port
ORDER BY 1, 3, 4;
