-- name: metric_retransmits
-- description: Retransmitting TCP connections per process, as sockql serve exports them (sockql_retransmitting_connections, _timing_out, _segments): loss, congestion or a peer that stopped answering, by who suffers it
-- metric: sockql_retransmitting gauge Open TCP connections per network namespace and process that have retransmitted (connections), that wait on a retransmission timeout now (timing_out: ss -i retrans:N/...), and their retransmitted segments (segments: sum of total_retrans)
SELECT CAST(netns AS VARCHAR) AS netns, coalesce(netns_name, '') AS netns_name,
       coalesce(CAST(pid AS VARCHAR), '') AS pid, coalesce(process, '') AS process,
       count(*) AS connections, sum(CASE WHEN retransmits > 0 THEN 1 ELSE 0 END) AS timing_out,
       sum(total_retrans) AS segments
FROM sockets
WHERE protocol = 'tcp' AND total_retrans > 0
GROUP BY netns, netns_name, pid, process
ORDER BY netns, pid;
