-- name: container_retransmits
-- description: Retransmissions per container (run with --all-netns): its open TCP connections that have retransmitted, those waiting on a retransmission timeout now, and their retransmitted segments and bytes. Loss, congestion or a peer that stopped answering, by the container that suffers it
-- empty: no container's open TCP connection has retransmitted (without --all-netns only sockql's own namespace is read)
SELECT coalesce(container, substr(container_id, 1, 12)) AS container, netns,
       count(*) AS connections, sum(CASE WHEN retransmits > 0 THEN 1 ELSE 0 END) AS timing_out,
       sum(total_retrans) AS segments, sum(bytes_retrans) AS bytes
FROM sockets
WHERE protocol = 'tcp' AND total_retrans > 0 AND container_id IS NOT NULL
GROUP BY 1, 2
ORDER BY segments DESC, container;
