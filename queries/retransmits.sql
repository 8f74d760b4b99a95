-- name: retransmits
-- description: TCP connections that retransmitted, worst first: packet loss, congestion, or a peer that stopped answering (timeouts > 0 now). Half-open connections (SYN-RECV) whose SYN-ACK goes unanswered are included: the kernel keeps them as request sockets without tcp_info, so their total_retrans and timeouts are both the SYN-ACKs sent again (sock_diag's idiag_retrans, the N of ss -o timer:(on,...,N)), their other tcp_info columns are null, and no process holds them yet (pid null; the syn_recv report names their listener)
-- empty: no TCP connection has retransmitted
WITH tcp AS (
    SELECT netns, netns_name, state, local_addr, local_port, remote_addr, remote_port,
           -- A request socket has no tcp_info: its SYN-ACKs resent are
           -- its whole life's retransmissions.
           CASE WHEN state = 'SYN-RECV' AND total_retrans IS NULL THEN retransmits ELSE total_retrans END AS total_retrans,
           retransmits, lost, unacked, bytes_retrans, rto_ms, rtt_ms, pid, process
    FROM sockets
    WHERE protocol = 'tcp'
)
SELECT netns, netns_name, state, local_addr, local_port, remote_addr, remote_port,
       total_retrans, retransmits AS timeouts, lost, unacked, bytes_retrans,
       rto_ms, rtt_ms, pid, process
FROM tcp
WHERE total_retrans > 0
ORDER BY netns, total_retrans DESC, bytes_retrans DESC;
