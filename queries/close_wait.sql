-- name: close_wait
-- description: CLOSE-WAIT sockets per process: the peer closed but the application never closed its end. A growing count is a socket leak in the application
SELECT pid, process, count(*) AS close_wait, count(DISTINCT remote_addr) AS peers,
       sum(recv_q) AS unread_bytes
FROM sockets
WHERE protocol = 'tcp' AND state = 'CLOSE-WAIT'
GROUP BY pid, process
ORDER BY close_wait DESC, pid;
