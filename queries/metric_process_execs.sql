-- name: metric_process_execs
-- description: Programs started (exec) per command name, counted by sockql serve from the process_events stream as sockql_process_execs_total: which programs a host keeps starting (a crash loop, a cron storm, a scanner), including those that live for milliseconds
-- metric: sockql_process_execs counter Programs started (exec events from the kernel's proc connector) per command name since sockql serve started; serve listens all the time, so programs that lived between two scrapes count
SELECT coalesce(name, '') AS process, count(*) AS value
FROM process_events
WHERE event = 'exec'
GROUP BY 1;
