-- name: retransmits
-- description: TCP connections that retransmitted, worst first: packet loss, congestion, or a peer that stopped answering (timeouts > 0 now)
SELECT netns, netns_name, state, local_addr, local_port, remote_addr, remote_port,
       total_retrans, retransmits AS timeouts, lost, unacked, bytes_retrans,
       rto_ms, rtt_ms, pid, process
FROM sockets
WHERE protocol = 'tcp' AND total_retrans > 0
ORDER BY netns, total_retrans DESC, bytes_retrans DESC;
