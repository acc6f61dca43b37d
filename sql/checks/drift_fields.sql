-- Undocumented fields seen in job records (paths collected by flatten in jobs.extra_fields), by jobs.
-- Song fields the reference lists from other endpoints (§6) are known: the songs table has columns for them.
SELECT field, count(*) AS jobs
FROM (SELECT unnest(extra_fields) AS field FROM jobs)
WHERE field NOT IN (
    'response.songs[].machine_audit_state',
    'response.songs[].credit_type',
    'response.songs[].recall',
    'response.songs[].is_regenerate',
    'response.songs[].regenerate_from'
)
GROUP BY field
ORDER BY jobs DESC, field
