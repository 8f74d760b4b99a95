-- name: resets_by_remote
-- description: TCP connections a reset ended during a recording of events (sockql record --events; needs --history DIR), per host, namespace, client and server port: conntrack moves an entry to CLOSE when it sees a RST (a FIN close goes through TIME_WAIT instead), and announces the change, so each tracked connection a RST ended counts once. Needs a ruleset that tracks connections
-- empty: no reset heard: conntrack announced no tracked TCP connection ending in a RST while the recording listened
-- param: limit 20
SELECT host, netns, netns_name, orig_src AS client, orig_dst AS server, orig_dport AS server_port,
       count(DISTINCT id) AS resets, min(ts) AS first, max(ts) AS last
FROM history.conntrack_events
WHERE protocol = 'tcp' AND state = 'CLOSE' AND event IN ('UPDATE', 'DESTROY')
GROUP BY host, netns, netns_name, orig_src, orig_dst, orig_dport
ORDER BY resets DESC, client, server_port
LIMIT $limit;
