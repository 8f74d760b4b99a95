-- name: close_wait
-- description: CLOSE-WAIT sockets per process: the peer closed but the application never closed its end. A growing count is a socket leak in the application
-- In CLOSE-WAIT the kernel counts the peer's FIN in recv_q until the
-- application reads end-of-file, so unread data is recv_q - 1 when
-- recv_q > 0 (unread_bytes > 0: the application did not even read).
SELECT netns, netns_name, pid, process, count(*) AS close_wait, count(DISTINCT remote_addr) AS peers,
       sum(CASE WHEN recv_q > 0 THEN recv_q - 1 ELSE 0 END) AS unread_bytes
FROM sockets
WHERE protocol = 'tcp' AND state = 'CLOSE-WAIT'
GROUP BY netns, netns_name, pid, process
ORDER BY netns, close_wait DESC, pid;
