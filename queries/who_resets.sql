-- name: who_resets
-- description: TCP resets the kernel sent or received while the query listened (--capture-for), by direction, the kernel's reason for sending (NO_SOCKET: nothing listens on the port; TCP_ABORT_ON_CLOSE: closed with unread data; TCP_STATE: aborted in a state that needs a reset, as a close with SO_LINGER 0 does; TCP_ABORT_ON_DATA: data after the close; ...), the process of the socket and the remote, from the kernel's own events (tcp_resets): where rst_by_process reads reset packets in a capture and guesses their holder, this is the kernel saying it sent or took one and why. A reset sent for a port nothing holds has no socket, so no namespace or process (null)
-- empty: the kernel sent and received no TCP reset while the query listened
-- param: limit 20
SELECT netns, netns_name, direction, reason, pid, process, remote_addr,
       count(*) AS resets,
       count(DISTINCT local_port) AS local_ports, count(DISTINCT remote_port) AS remote_ports,
       min(ts) AS first, max(ts) AS last, max(overruns) AS overruns
FROM tcp_resets
GROUP BY netns, netns_name, direction, reason, pid, process, remote_addr
ORDER BY resets DESC, direction, reason, remote_addr
LIMIT $limit;
