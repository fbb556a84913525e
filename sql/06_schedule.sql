-- Schedules: parsing and fire times, in time zones and across DST changes.
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';

-- five fields: minute hour day-of-month month day-of-week
SELECT pipeline.next_runs('*/15 * * * *', 5, '2026-11-30 10:07:30+00');
SELECT pipeline.next_runs('0 9 * * mon-fri', 4, '2026-11-27 12:00+00');   -- Friday noon: Monday to Thursday
SELECT pipeline.next_runs('30 2 1,15 * *', 3, '2026-11-30 00:00+00');
SELECT pipeline.next_runs('0 0 29 feb *', 2, '2026-01-01+00');            -- leap days only
SELECT pipeline.next_runs('0 12 13 * fri', 3, '2026-11-30+00');           -- the 13th or a Friday (Vixie)
SELECT pipeline.next_runs('0 0 * * 7', 2, '2026-11-30+00');               -- 7 is Sunday too
SELECT pipeline.next_runs('5-10/2 3 * dec *', 4, '2026-11-30+00');
SELECT pipeline.next_runs('0 0 31 * *', 3, '2026-11-30+00');              -- months with a 31st
SELECT pipeline.next_runs('0 0 30 2 *', 3, '2026-11-30+00');              -- never: no rows

-- six fields: a leading seconds field
SELECT pipeline.next_runs('*/20 * * * * *', 4, '2026-11-30 10:00:05+00');
SELECT pipeline.next_runs('10 0 0 * * *', 2, '2026-11-30 00:00:10+00');   -- strictly after
SELECT pipeline.next_runs('0 0 0 * * *', 1, '2026-11-30 00:00:00.5+00');

-- macros, @every, @once
SELECT pipeline.next_runs('@hourly', 2, '2026-11-30 10:00+00');
SELECT pipeline.next_runs('@daily', 2, '2026-11-30 10:00+00');
SELECT pipeline.next_runs('@weekly', 2, '2026-11-30 10:00+00');
SELECT pipeline.next_runs('@monthly', 2, '2026-11-30 10:00+00');
SELECT pipeline.next_runs('@yearly', 2, '2026-11-30 10:00+00');
SELECT pipeline.next_runs('@every 10 seconds', 3, '2026-11-30 10:00:05+00');
SELECT pipeline.next_runs('@every 1 day 12 hours', 3, '2026-11-30 10:00+00');
SELECT pipeline.next_runs('@once 2026-12-01 03:00+00', 3, '2026-11-30+00');
SELECT pipeline.next_runs('@once 2026-12-01 03:00+00', 3, '2026-12-02+00');

-- time zones: cron fields are local times
SELECT pipeline.next_runs('0 9 * * *', 2, '2026-11-30+00', 'Europe/Paris');
SELECT pipeline.next_runs('0 9 * * *', 2, '2026-11-30+00', 'Asia/Kolkata');
-- spring forward (America/New_York, 2026-03-08 02:00 -> 03:00): 02:30 does not
-- exist that day and fires at 03:30; the job still fires once a day
SELECT r, r AT TIME ZONE 'America/New_York' AS local
  FROM pipeline.next_runs('30 2 * * *', 3, '2026-03-07 00:00+00', 'America/New_York') r;
-- fall back (2026-11-01 02:00 -> 01:00): 01:30 happens twice and fires once
SELECT r, r AT TIME ZONE 'America/New_York' AS local
  FROM pipeline.next_runs('30 1 * * *', 3, '2026-10-31 00:00+00', 'America/New_York') r;
-- an hourly job keeps firing every real hour across both changes
SELECT count(*) AS fires, count(DISTINCT r) AS distinct_fires
  FROM pipeline.next_runs('0 * * * *', 48, '2026-03-07 12:00+00', 'America/New_York') r;
SELECT count(*) AS fires, count(DISTINCT r) AS distinct_fires, max(r) - min(r) AS span
  FROM pipeline.next_runs('0 * * * *', 48, '2026-10-31 12:00+00', 'America/New_York') r;

-- errors
SELECT pipeline.next_runs('* * * *');
SELECT pipeline.next_runs('* * * * * * *');
SELECT pipeline.next_runs('61 * * * *');
SELECT pipeline.next_runs('* 24 * * *');
SELECT pipeline.next_runs('* * 0 * *');
SELECT pipeline.next_runs('* * * 13 *');
SELECT pipeline.next_runs('* * * foo *');
SELECT pipeline.next_runs('* * * * 8');
SELECT pipeline.next_runs('5-1 * * * *');
SELECT pipeline.next_runs('*/0 * * * *');
SELECT pipeline.next_runs('1,,2 * * * *');
SELECT pipeline.next_runs('@fortnightly');
SELECT pipeline.next_runs('@every 1 month');
SELECT pipeline.next_runs('@every 100 milliseconds');
SELECT pipeline.next_runs('@every often');
SELECT pipeline.next_runs('@once soon');
SELECT pipeline.next_runs('* * * * *', 5, now(), 'Mars/Olympus');
SELECT pipeline.next_runs('* * * * *', -1);
