-- name: container_close_wait
-- description: CLOSE-WAIT sockets per container and process (run with --all-netns to see every container): the peer closed, the application in that container never closed its end. Host sockets are left out
-- empty: no container holds a socket in CLOSE-WAIT (without --all-netns only sockql's own namespace is read)
SELECT coalesce(container, substr(container_id, 1, 12)) AS container, netns, pid, process,
       count(*) AS close_wait, count(DISTINCT remote_addr) AS peers
FROM sockets
WHERE protocol = 'tcp' AND state = 'CLOSE-WAIT' AND container_id IS NOT NULL
GROUP BY 1, 2, 3, 4
ORDER BY close_wait DESC, container, pid;
