-- name: drops_by_reason
-- description: Packets the kernel dropped while the report listened (--capture-for, default 10 s), by the kernel's reason and the function that dropped them (skb:kfree_skb: dropwatch, perf trace -e skb:kfree_skb), most first. In the current network namespace, or every one with --all-netns (the namespace is compared in the kernel by the eBPF reader; under the perf fallback, host-wide)
-- empty: the kernel dropped no packet while the report listened
SELECT reason, function, l3, count(*) AS drops, max(overruns) AS overruns
FROM packet_drops
GROUP BY reason, function, l3
ORDER BY drops DESC, reason, function;
