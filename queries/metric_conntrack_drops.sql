-- name: metric_conntrack_drops
-- description: Packets connection tracking dropped, per namespace, as sockql serve exports them (sockql_conntrack_drops_total, _early_drops_total, _insert_failed_total; conntrack -S summed over CPUs): any increase is connections lost
-- metric: sockql_conntrack counter Since boot, per network namespace (conntrack -S summed over CPUs): packets dropped because the table was full or an insert failed (drops), unassured entries evicted to make room (early_drops), inserts that failed on a clash (insert_failed)
SELECT CAST(netns AS VARCHAR) AS netns, coalesce(netns_name, '') AS netns_name,
       sum("drop") AS drops, sum(early_drop) AS early_drops, sum(insert_failed) AS insert_failed
FROM conntrack_stats
GROUP BY netns, netns_name
ORDER BY netns;
