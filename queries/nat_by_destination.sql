-- name: nat_by_destination
-- description: NAT translations by original destination: where each address:port is forwarded to (DNAT, port forwards) and which address sources are masqueraded behind (SNAT)
SELECT netns, netns_name, protocol, orig_dst, orig_dport,
       CASE WHEN dnat THEN reply_src END AS dnat_to,
       CASE WHEN dnat THEN reply_sport END AS dnat_to_port,
       CASE WHEN snat THEN reply_dst END AS snat_to,
       count(*) AS flows,
       count(DISTINCT orig_src) AS sources
FROM conntrack
WHERE snat OR dnat
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
ORDER BY netns, flows DESC, orig_dst, orig_dport;
