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
-- The process of a local end: its connection's (sockets.pid, the lowest
-- holder), else its port's listener's.
conn AS (
    SELECT netns, local_addr, local_port, remote_addr, remote_port, pid, process
    FROM sockets WHERE protocol = 'tcp' AND state <> 'LISTEN' AND pid IS NOT NULL
),
listener AS (
    SELECT netns, local_port, min(pid) AS pid, min(process) AS process
    FROM sockets WHERE protocol = 'tcp' AND state = 'LISTEN' AND pid IS NOT NULL
    GROUP BY netns, local_port
)
SELECT a.netns, a.netns_name, coalesce(c.pid, l.pid) AS pid, coalesce(c.process, l.process) AS process,
       a.src_port AS local_port, a.dst_addr AS remote_addr, sum(a.zero_windows) AS zero_windows, count(*) AS connections
FROM adverts a
LEFT JOIN conn c ON c.netns = a.netns AND c.local_addr = a.src_addr AND c.local_port = a.src_port
                AND c.remote_addr = a.dst_addr AND c.remote_port = a.dst_port
LEFT JOIN listener l ON l.netns = a.netns AND l.local_port = a.src_port
GROUP BY a.netns, a.netns_name, coalesce(c.pid, l.pid), coalesce(c.process, l.process), a.src_port, a.dst_addr
ORDER BY a.netns, zero_windows DESC, local_port, remote_addr;
