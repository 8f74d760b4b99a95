-- name: conntrack_full
-- description: Connection-tracking table fill against nf_conntrack_max, with drops: near 100%, or any drop/early_drop, means new connections are being dropped (dmesg "nf_conntrack: table full, dropping packet")
WITH used AS (SELECT netns, netns_name, CAST(value AS BIGINT) AS entries FROM sysctls WHERE name = 'net.netfilter.nf_conntrack_count'),
     lim AS (SELECT netns, CAST(value AS BIGINT) AS max_entries FROM sysctls WHERE name = 'net.netfilter.nf_conntrack_max'),
     stats AS (SELECT netns, sum("drop") AS drops, sum(early_drop) AS early_drops, sum(insert_failed) AS insert_failed FROM conntrack_stats GROUP BY netns)
SELECT used.netns, used.netns_name, used.entries, lim.max_entries,
       round(100.0 * used.entries / lim.max_entries, 2) AS pct_full,
       stats.drops, stats.early_drops, stats.insert_failed
FROM used
JOIN lim ON lim.netns = used.netns
LEFT JOIN stats ON stats.netns = used.netns
ORDER BY used.netns;
