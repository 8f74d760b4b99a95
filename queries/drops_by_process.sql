-- name: drops_by_process
-- description: Packets the kernel dropped while the report listened (--capture-for, default 10 s), by the process that was on the CPU when it dropped them and the reason, most first. That process is the sender for packets sent locally and dropped on loopback or a veth (a UDP datagram to a closed port: its sender); for packets from the wire or dropped by a timer it is whoever ran (pid 0: an idle CPU), not the socket's owner
-- empty: the kernel dropped no packet while the report listened
SELECT current_pid, current_process, reason, function, count(*) AS drops, max(overruns) AS overruns
FROM packet_drops
GROUP BY current_pid, current_process, reason, function
ORDER BY drops DESC, current_pid, reason;
