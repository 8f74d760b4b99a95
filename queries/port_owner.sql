-- name: port_owner
-- description: Every socket on a port, local or remote, with each process holding it (lsof -i :PORT)
-- param: port 80
SELECT s.netns, s.netns_name, s.protocol, s.state, s.local_addr, s.local_port, s.remote_addr, s.remote_port,
       o.pid, p.name AS process, p.user, o.fd
FROM sockets s
LEFT JOIN socket_owners o ON o.inode = s.inode AND s.inode <> 0
LEFT JOIN processes p ON p.pid = o.pid
-- A raw socket's "port" is its IP protocol number: lsof -i :PORT does not
-- match it, and neither does this.
WHERE (s.local_port = $port OR s.remote_port = $port) AND s.protocol IN ('tcp', 'udp')
ORDER BY s.netns, s.protocol, s.state, s.local_port, s.remote_port, o.pid;
