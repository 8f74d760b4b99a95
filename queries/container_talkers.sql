-- name: container_talkers
-- description: Top talkers per container (run with --all-netns): bytes each container's open TCP connections sent (retransmissions included) and received over their lives (tcp_info, as ss -i shows bytes_sent and bytes_received), the busiest first, with the remote it talks to most. The host's own connections are the row with a null container
-- empty: no open TCP connection with traffic
WITH conns AS (
    SELECT container_id, coalesce(container, substr(container_id, 1, 12)) AS container, remote_addr,
           coalesce(bytes_sent, 0) AS sent, coalesce(bytes_received, 0) AS received
    FROM sockets
    WHERE protocol = 'tcp' AND state NOT IN ('LISTEN', 'TIME-WAIT', 'SYN-RECV')
),
per_remote AS (
    SELECT container_id, remote_addr, sum(sent + received) AS bytes,
           row_number() OVER (PARTITION BY container_id ORDER BY sum(sent + received) DESC, remote_addr) AS place
    FROM conns GROUP BY container_id, remote_addr
)
SELECT c.container, count(*) AS connections, sum(c.sent) AS bytes_sent, sum(c.received) AS bytes_received,
       max(r.remote_addr) AS top_remote
FROM conns c LEFT JOIN per_remote r ON (r.container_id IS NOT DISTINCT FROM c.container_id) AND r.place = 1
GROUP BY c.container
HAVING sum(c.sent + c.received) > 0
ORDER BY sum(c.sent + c.received) DESC, c.container;
