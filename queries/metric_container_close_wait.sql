-- name: metric_container_close_wait
-- description: CLOSE-WAIT sockets per container, as sockql serve exports them (sockql_container_close_wait_sockets{container="..."}; serve --all-netns to see every container): one series per container, bounded by --max-series like every metric
-- metric: sockql_container_close_wait_sockets gauge TCP sockets in CLOSE-WAIT per container (its name, else the first 12 digits of its id): the peer closed, the application in the container has not
SELECT coalesce(container, substr(container_id, 1, 12)) AS container, count(*) AS sockets
FROM sockets
WHERE protocol = 'tcp' AND state = 'CLOSE-WAIT' AND container_id IS NOT NULL
GROUP BY 1
ORDER BY 1;
