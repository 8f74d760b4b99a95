-- name: metric_accept_queue
-- description: Accept queue of every TCP listener, as sockql serve exports it (sockql_accept_queue_queued and sockql_accept_queue_max; ss -ltn Recv-Q and Send-Q): queued close to max means connections are about to be dropped
-- metric: sockql_accept_queue gauge Connections waiting in a TCP listener's accept queue (queued) and the queue's limit (max), per listener and process (ss -ltn Recv-Q, Send-Q)
-- Listeners sharing an address and port (SO_REUSEPORT) in one process are
-- summed: a scrape must not carry the same series twice.
SELECT CAST(netns AS VARCHAR) AS netns, coalesce(netns_name, '') AS netns_name, local_addr, CAST(local_port AS VARCHAR) AS local_port,
       coalesce(CAST(pid AS VARCHAR), '') AS pid, coalesce(process, '') AS process,
       sum(recv_q) AS queued, sum(send_q) AS max
FROM sockets
WHERE protocol = 'tcp' AND state = 'LISTEN'
GROUP BY netns, netns_name, local_addr, local_port, pid, process
ORDER BY netns, local_port, local_addr, pid;
