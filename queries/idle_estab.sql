-- name: idle_estab
-- description: Established TCP connections with no data sent or received for more than $seconds: dead peers, or missing keepalives (timer shows keepalive when they are on)
-- param: seconds 300
SELECT netns, netns_name, local_addr, local_port, remote_addr, remote_port,
       round(least(last_recv_ms, last_send_ms) / 1000.0, 1) AS idle_s,
       timer, pid, process
FROM sockets
WHERE protocol = 'tcp' AND state = 'ESTAB'
  AND least(last_recv_ms, last_send_ms) > $seconds * 1000
ORDER BY netns, idle_s DESC, local_port;
