-- name: metric_ephemeral_ports
-- description: Ephemeral ports in use per remote address and port, as sockql serve exports them (sockql_ephemeral_ports_used, _time_wait, _range_size): used close to range_size means connect() to that remote will fail (EADDRNOTAVAIL)
-- metric: sockql_ephemeral_ports gauge TCP connections this host opened from a local port of net.ipv4.ip_local_port_range, per network namespace and remote address and port: used (every state), time_wait (of them in TIME-WAIT), range_size (ports in the range)
-- A connection accepted on a listening port is not a port connect() took,
-- even when the listening port lies inside the range: sockets on a port
-- that has a listener are left out (else every client of such a server
-- would be a series of its own).
WITH port_range AS (
    SELECT netns, CAST(split_part(value, ' ', 1) AS BIGINT) AS lo, CAST(split_part(value, ' ', 2) AS BIGINT) AS hi
    FROM sysctls WHERE name = 'net.ipv4.ip_local_port_range'
),
listening AS (
    SELECT DISTINCT netns, local_port FROM sockets WHERE protocol = 'tcp' AND state = 'LISTEN'
)
SELECT CAST(s.netns AS VARCHAR) AS netns, coalesce(s.netns_name, '') AS netns_name,
       s.remote_addr, CAST(s.remote_port AS VARCHAR) AS remote_port,
       count(*) AS used, sum(CASE WHEN s.state = 'TIME-WAIT' THEN 1 ELSE 0 END) AS time_wait,
       max(r.hi - r.lo + 1) AS range_size
FROM sockets s
JOIN port_range r ON r.netns = s.netns
LEFT JOIN listening l ON l.netns = s.netns AND l.local_port = s.local_port
WHERE s.protocol = 'tcp' AND s.state <> 'LISTEN' AND s.local_port BETWEEN r.lo AND r.hi AND l.local_port IS NULL
GROUP BY s.netns, s.netns_name, s.remote_addr, s.remote_port
ORDER BY 1, 3, 4;
