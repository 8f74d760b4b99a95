-- name: metric_tcp_retransmit_events
-- description: TCP retransmissions as the kernel makes them (tcp_retransmits), by the socket's state and kind (data, synack), as counters for sockql serve: each retransmission counted once as it happens, where metric_retransmits is a gauge of what open connections' tcp_info says at a scrape (connections that closed between scrapes leave it)
-- metric: sockql_tcp_retransmit_events counter TCP retransmissions the kernel made (tcp:tcp_retransmit_skb and tcp:tcp_retransmit_synack events), by socket state and kind
SELECT coalesce(state, '') AS state, kind, count(*) AS value
FROM tcp_retransmits
GROUP BY state, kind
ORDER BY state, kind;
