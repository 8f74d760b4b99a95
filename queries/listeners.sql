-- name: listeners
-- description: Listening TCP and bound UDP sockets with their processes (ss -tulnp); owner_processes > 1 means pre-forked workers share it
SELECT s.netns, s.netns_name, s.protocol, s.local_addr, s.local_port, s.recv_q AS queued, s.send_q AS backlog,
       s.pid, s.process, count(DISTINCT o.pid) AS owner_processes
FROM sockets s
LEFT JOIN socket_owners o ON o.inode = s.inode
WHERE (s.protocol = 'tcp' AND s.state = 'LISTEN') OR (s.protocol = 'udp' AND s.state = 'UNCONN')
GROUP BY s.netns, s.netns_name, s.protocol, s.local_addr, s.local_port, s.recv_q, s.send_q, s.pid, s.process
ORDER BY s.netns, s.protocol, s.local_port, s.local_addr;
