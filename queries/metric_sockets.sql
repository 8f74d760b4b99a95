-- name: metric_sockets
-- description: Sockets per network namespace, protocol and state, as sockql serve exports them (the sockql_sockets metric; node_exporter's tcpstat, per namespace and protocol)
-- metric: sockql_sockets gauge Sockets per network namespace, protocol and state (ss -tuan counted by state)
-- Text columns become labels, the count the value; netns is text here so
-- that it is a label (its inode, as lsns prints it).
SELECT CAST(netns AS VARCHAR) AS netns, coalesce(netns_name, '') AS netns_name, protocol, state, count(*) AS sockets
FROM sockets
GROUP BY netns, netns_name, protocol, state
ORDER BY netns, protocol, state;
