-- name: metric_packet_drops
-- description: Packets the kernel dropped, by the kernel's reason and the function that dropped them (skb:kfree_skb), as sockql serve exports them (sockql_packet_drops): the counts of one listening window; drops of the namespaces serve covers (the current one, every one with --all-netns; host-wide under the perf fallback)
-- metric: sockql_packet_drops counter Packets the kernel dropped (skb:kfree_skb), by the kernel's drop reason and the kernel function that dropped them
SELECT reason, coalesce(function, '') AS function, count(*) AS value
FROM packet_drops
GROUP BY reason, function
ORDER BY reason, function;
