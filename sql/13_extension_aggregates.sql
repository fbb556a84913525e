-- Aggregates of other extensions fold incrementally too: hll for distinct
-- counts, tdigest for percentiles.  Their serialized states grow past the
-- size TOAST compresses, and tdigest's deserialization reads a state without
-- detoasting it: the stored states must reach it detoasted.
SET timezone = 'UTC';
CREATE EXTENSION hll;
CREATE EXTENSION tdigest;
CREATE TABLE ext_hits (user_id bigint, latency double precision, seen_at timestamptz);
SELECT pipeline.create_aggregate('audience', $$
    SELECT date_trunc('hour', seen_at) AS hour, count(*) AS hits,
           hll_add_agg(hll_hash_bigint(user_id)) AS users, tdigest(latency, 100) AS latency_digest
      FROM ext_hits GROUP BY hour$$);
-- three statements into the same hours: each folds into states stored by the one before
INSERT INTO ext_hits SELECT i % 700, (i * 7919) % 1000 / 3.0, '2026-11-30 10:00'::timestamptz + (i % 7200) * interval '1 second'
  FROM generate_series(1, 6000) i;
INSERT INTO ext_hits SELECT i % 900, (i * 104729) % 1000 / 2.0, '2026-11-30 10:00'::timestamptz + (i % 7200) * interval '1 second'
  FROM generate_series(1, 6000) i;
INSERT INTO ext_hits SELECT i % 1300, (i * 31) % 997, '2026-11-30 10:30'::timestamptz + (i % 3600) * interval '1 second'
  FROM generate_series(1, 6000) i;
-- the stored states are large enough for TOAST to compress them
SELECT bool_and(pg_column_size(latency_digest) < octet_length(latency_digest)) AS compressed FROM audience_state;
-- incremental versus computed from all rows at once
SELECT a.hour, a.hits = f.hits AS hits_equal,
       round(hll_cardinality(a.users)) = round(hll_cardinality(f.users)) AS users_equal,
       abs((SELECT tdigest_percentile(d, 0.5) FROM (SELECT a.latency_digest) x(d))
           - f.median) < 10 AS median_close,
       abs((SELECT tdigest_percentile(d, 0.99) FROM (SELECT a.latency_digest) x(d))
           - f.p99) < 10 AS p99_close
  FROM audience a
  JOIN (SELECT date_trunc('hour', seen_at) AS hour, count(*) AS hits, hll_add_agg(hll_hash_bigint(user_id)) AS users,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY latency) AS median,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY latency) AS p99
          FROM ext_hits GROUP BY 1) f USING (hour)
 ORDER BY hour;
SELECT pipeline.drop_aggregate('audience');
DROP TABLE ext_hits;
DROP EXTENSION tdigest;
DROP EXTENSION hll;
