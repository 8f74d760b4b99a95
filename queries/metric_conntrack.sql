-- name: metric_conntrack
-- description: Connection-tracking table fill per namespace, as sockql serve exports it (sockql_conntrack_entries and sockql_conntrack_max; conntrack -C against nf_conntrack_max): entries reaching max means new connections are dropped
-- metric: sockql_conntrack gauge Connection-tracking entries (nf_conntrack_count, conntrack -C) and the table's limit (nf_conntrack_max), per network namespace
WITH used AS (SELECT netns, netns_name, CAST(value AS BIGINT) AS entries FROM sysctls WHERE name = 'net.netfilter.nf_conntrack_count'),
     lim AS (SELECT netns, CAST(value AS BIGINT) AS max_entries FROM sysctls WHERE name = 'net.netfilter.nf_conntrack_max')
SELECT CAST(used.netns AS VARCHAR) AS netns, coalesce(used.netns_name, '') AS netns_name, used.entries, lim.max_entries AS max
FROM used JOIN lim ON lim.netns = used.netns
ORDER BY netns;
