-- name: zero_window
-- description: Zero-window advertisements during a live capture (--capture-for), per process and remote: the process's socket told its peer to stop sending because the process is not reading (a slow reader, stuck or overloaded)
-- empty: no zero windows: every local reader kept up during the capture
WITH adverts AS (
    -- A local socket's advertisements: out of this host, or over loopback.
    SELECT netns, netns_name, src_addr, src_port, dst_addr, dst_port,
           sum(CASE WHEN zero_window THEN 1 ELSE 0 END) AS zero_windows
    FROM packets
    WHERE protocol = 'tcp' AND (direction = 'out' OR interface = 'lo')
    GROUP BY netns, netns_name, src_addr, src_port, dst_addr, dst_port
    HAVING sum(CASE WHEN zero_window THEN 1 ELSE 0 END) > 0
),
owner AS (
    SELECT s.netns, s.state, s.local_addr, s.local_port, s.remote_addr, s.remote_port, min(o.pid) AS pid
    FROM sockets s JOIN socket_owners o ON o.inode = s.inode
    WHERE s.protocol = 'tcp' AND s.inode <> 0
    GROUP BY s.netns, s.state, s.local_addr, s.local_port, s.remote_addr, s.remote_port
),
listener AS (
    SELECT netns, local_port, min(pid) AS pid FROM owner WHERE state = 'LISTEN' GROUP BY netns, local_port
)
SELECT a.netns, a.netns_name, coalesce(c.pid, l.pid) AS pid, p.name AS process, a.src_port AS local_port, a.dst_addr AS remote_addr,
       sum(a.zero_windows) AS zero_windows, count(*) AS connections
FROM adverts a
LEFT JOIN owner c ON c.netns = a.netns AND c.state <> 'LISTEN' AND c.local_addr = a.src_addr AND c.local_port = a.src_port
                 AND c.remote_addr = a.dst_addr AND c.remote_port = a.dst_port
LEFT JOIN listener l ON l.netns = a.netns AND l.local_port = a.src_port
LEFT JOIN processes p ON p.pid = coalesce(c.pid, l.pid)
GROUP BY a.netns, a.netns_name, coalesce(c.pid, l.pid), p.name, a.src_port, a.dst_addr
ORDER BY a.netns, zero_windows DESC, local_port, remote_addr;
