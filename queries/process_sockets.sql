-- name: process_sockets
-- description: Every TCP, UDP and raw socket one process holds, by file descriptor (lsof -i -a -p PID)
-- param: pid 1
SELECT s.netns, s.netns_name, o.fd, s.protocol, s.family, s.state, s.local_addr, s.local_port, s.remote_addr, s.remote_port,
       s.recv_q, s.send_q
FROM socket_owners o
JOIN sockets s ON s.inode = o.inode
WHERE o.pid = $pid
ORDER BY s.netns, o.fd;
