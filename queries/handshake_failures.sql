-- name: handshake_failures
-- description: TCP handshakes that did not complete during a live capture (--capture-for), per listener and remote: no_synack (SYN never answered: dropped, filtered, or a listener that cannot keep up), refused (SYN answered by RST: nothing listens), no_final_ack (SYN/ACK never acknowledged: a client gone, spoofed SYNs, a return path that loses packets); attempts counts every handshake seen starting, syn_retries the SYNs sent again
-- empty: no failed handshakes: every handshake that started during the capture completed
WITH conn AS (
    -- One row per connection, whichever way each of its packets went;
    -- only connections whose SYN the capture saw.
    SELECT netns, netns_name,
           max(CASE WHEN syn AND NOT ack THEN src_addr END) AS remote_addr,
           max(CASE WHEN syn AND NOT ack THEN dst_addr END) AS listener_addr,
           max(CASE WHEN syn AND NOT ack THEN dst_port END) AS listener_port,
           sum(CASE WHEN syn AND NOT ack THEN 1 ELSE 0 END) AS syns,
           sum(CASE WHEN syn AND ack THEN 1 ELSE 0 END) AS synacks,
           sum(CASE WHEN rst THEN 1 ELSE 0 END) AS rsts,
           sum(CASE WHEN ack AND NOT syn AND NOT rst THEN 1 ELSE 0 END) AS acks
    FROM packets
    WHERE protocol = 'tcp'
    GROUP BY netns, netns_name,
             least(src_addr || ' ' || CAST(src_port AS VARCHAR), dst_addr || ' ' || CAST(dst_port AS VARCHAR)),
             greatest(src_addr || ' ' || CAST(src_port AS VARCHAR), dst_addr || ' ' || CAST(dst_port AS VARCHAR))
    HAVING sum(CASE WHEN syn AND NOT ack THEN 1 ELSE 0 END) > 0
),
failures AS (
    SELECT netns, netns_name, listener_addr, listener_port, remote_addr,
           count(*) AS attempts,
           sum(CASE WHEN synacks = 0 AND rsts = 0 THEN 1 ELSE 0 END) AS no_synack,
           sum(CASE WHEN synacks = 0 AND rsts > 0 THEN 1 ELSE 0 END) AS refused,
           sum(CASE WHEN synacks > 0 AND acks = 0 THEN 1 ELSE 0 END) AS no_final_ack,
           sum(syns - 1) AS syn_retries
    FROM conn
    GROUP BY netns, netns_name, listener_addr, listener_port, remote_addr
),
listener AS (
    -- The process holding the listening socket, where one does.
    SELECT netns, local_port, min(pid) AS pid, min(process) AS process
    FROM sockets WHERE protocol = 'tcp' AND state = 'LISTEN' AND pid IS NOT NULL
    GROUP BY netns, local_port
)
SELECT f.netns, f.netns_name, f.listener_addr, f.listener_port, l.pid, l.process, f.remote_addr,
       f.attempts, f.no_synack, f.refused, f.no_final_ack, f.syn_retries
FROM failures f
LEFT JOIN listener l ON l.netns = f.netns AND l.local_port = f.listener_port
WHERE f.no_synack + f.refused + f.no_final_ack > 0
ORDER BY f.netns, f.no_synack + f.refused + f.no_final_ack DESC, f.listener_port, f.remote_addr;
