-- name: top_conntrack_sources
-- description: Source addresses with the most connection-tracking entries: who fills the table (unreplied entries suggest scans or floods)
-- param: limit 20
SELECT netns, netns_name, orig_src, count(*) AS entries,
       sum(CASE WHEN assured THEN 1 ELSE 0 END) AS assured,
       sum(CASE WHEN seen_reply THEN 0 ELSE 1 END) AS unreplied,
       count(DISTINCT orig_dst) AS destinations,
       count(DISTINCT protocol) AS protocols
FROM conntrack
GROUP BY netns, netns_name, orig_src
ORDER BY netns, entries DESC, orig_src
LIMIT $limit;
