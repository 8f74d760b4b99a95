-- name: retransmitting_flows
-- description: TCP flows the kernel retransmitted on while the query listened (--capture-for), most first, from its own retransmit events (tcp_retransmits, as bcc tcpretrans): where retransmits reads tcp_info's total_retrans of the connections still open when it looks (a count since each connection began), this counts each retransmission as the kernel makes it, in the capture's window only, including connections that closed since and SYN-ACKs resent to clients that never completed their handshake; with the state the socket was in at the last one, the attempts that failed (err <> 0) and the socket's process
-- empty: the kernel retransmitted nothing while the query listened
-- param: limit 20
SELECT netns, netns_name, family, local_addr, local_port, remote_addr, remote_port,
       count(*) AS retransmits,
       sum(CASE WHEN kind = 'synack' THEN 1 ELSE 0 END) AS synacks,
       sum(CASE WHEN err <> 0 THEN 1 ELSE 0 END) AS failed,
       last_value(state ORDER BY ts) AS state,
       max(pid) AS pid, max(process) AS process,
       min(ts) AS first, max(ts) AS last, max(overruns) AS overruns
FROM tcp_retransmits
GROUP BY netns, netns_name, family, local_addr, local_port, remote_addr, remote_port
ORDER BY retransmits DESC, netns, local_port, remote_addr, remote_port
LIMIT $limit;
