-- name: metric_syn_recv
-- description: Half-open connections (SYN-RECV) per listening address and port, as sockql serve exports them (sockql_syn_recv_sockets): a rising count is a SYN flood or clients that never finish the handshake
-- metric: sockql_syn_recv_sockets gauge TCP connections in SYN-RECV per network namespace, local address and port (ss -tn state syn-recv)
SELECT CAST(netns AS VARCHAR) AS netns, coalesce(netns_name, '') AS netns_name, local_addr, CAST(local_port AS VARCHAR) AS local_port,
       count(*) AS sockets
FROM sockets
WHERE protocol = 'tcp' AND state = 'SYN-RECV'
GROUP BY netns, netns_name, local_addr, local_port
ORDER BY netns, local_port, local_addr;
