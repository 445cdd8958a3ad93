-- Events-like benchmark table `bench_events` (default 1,000,000 rows; ~60-char title,
-- 720-char content, jsonb, float8, two timestamptz). Deterministic; replaces the table.
-- Usage: psql -v ON_ERROR_STOP=1 [-v rows=100000] -f scripts/bench_events.sql "$PG2BQ_TEST_PG_URL"
\if :{?rows}
\else
  \set rows 1000000
\endif
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

DROP TABLE IF EXISTS bench_events;
CREATE TABLE bench_events (
  id           bigint NOT NULL,
  title        text,
  content      text,
  metadata     jsonb,
  risk_score   float8,
  mentioned_at timestamptz,
  created_at   timestamptz
);

-- Bulk insert first, primary key afterwards (faster than maintaining the index).
INSERT INTO bench_events
SELECT g,
       left('Event ' || g || ' reported near ' || md5(g::text) || ' ' || md5((g + 1)::text), 60),
       left(repeat(md5(g::text) || ' ' || md5((g * 31)::text) || ' ', 11), 720),
       jsonb_build_object('source', 'feed-' || g % 17, 'lang', (ARRAY['en', 'de', 'ja', 'pt'])[1 + g % 4],
                          'geo', jsonb_build_object('lat', (g % 180) - 90, 'lon', (g % 360) - 180),
                          'tags', jsonb_build_array('t' || g % 7, 't' || g % 11)),
       (g % 10000) / 100.0,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' + interval '5 minutes'
FROM generate_series(1::bigint, :rows) AS g;

ALTER TABLE bench_events ADD PRIMARY KEY (id);
VACUUM ANALYZE bench_events;
