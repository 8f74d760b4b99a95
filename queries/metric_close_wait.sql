-- name: metric_close_wait
-- description: CLOSE-WAIT sockets per process, as sockql serve exports them (the sockql_close_wait_sockets metric): a count that keeps growing is an application that never closes what its peers closed
-- metric: sockql_close_wait_sockets gauge TCP sockets in CLOSE-WAIT per network namespace and process (the peer closed, the application has not)
SELECT CAST(netns AS VARCHAR) AS netns, coalesce(netns_name, '') AS netns_name,
       coalesce(CAST(pid AS VARCHAR), '') AS pid, coalesce(process, '') AS process, count(*) AS sockets
FROM sockets
WHERE protocol = 'tcp' AND state = 'CLOSE-WAIT'
GROUP BY netns, netns_name, pid, process
ORDER BY netns, pid;
