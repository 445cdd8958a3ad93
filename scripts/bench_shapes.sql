-- The export benchmark's table shapes besides `events` (scripts/bench_events.sql), each
-- `bench_<shape>` with :rows rows (default 1,000,000), deterministic, replacing the table:
--   narrow     integers, floats, timestamps, a date and a boolean (10 columns)
--   long_text  12 columns with ~700 characters of unique text per row and jsonb
--   jsonb      nested jsonb documents (~1 KB per row) and a jsonb array
--   wide       121 columns: 40 int4, 40 float8, 40 short text
--   arrays     numerics (scaled and unconstrained) and int4[], float8[], text[] arrays
-- Usage: psql -v ON_ERROR_STOP=1 -v shape=narrow [-v rows=100000] -f scripts/bench_shapes.sql URL
\if :{?rows}
\else
  \set rows 1000000
\endif
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT :'shape' = 'narrow' AS narrow, :'shape' = 'long_text' AS long_text, :'shape' = 'jsonb' AS jsonb,
       :'shape' = 'wide' AS wide, :'shape' = 'arrays' AS arrays \gset

\if :narrow
DROP TABLE IF EXISTS bench_narrow;
CREATE TABLE bench_narrow AS
SELECT g AS id, (g % 1000)::int AS a, (g * 7 % 100003)::int AS b, g * 31 AS c,
       g / 7.0::float8 AS x, sin(g)::float8 AS y,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' AS created_at,
       timestamp '2024-01-01 00:00:00' + g * interval '3 seconds' AS seen_at,
       date '2000-01-01' + (g % 9000)::int AS day, g % 3 = 0 AS flag
FROM generate_series(1::bigint, :rows) AS g;
\elif :long_text
DROP TABLE IF EXISTS bench_long_text;
CREATE TABLE bench_long_text AS
SELECT g AS id,
       left('Report ' || g || ' ' || md5(g::text), 60) AS title,
       (SELECT string_agg(md5((g * 131 + i)::text), ' ') FROM generate_series(1, 21) AS i) AS body,
       left(md5((g * 7)::text) || md5((g * 11)::text) || md5((g * 13)::text), 90) AS summary,
       'https://example.org/r/' || g || '/' || md5((g * 3)::text) AS url,
       jsonb_build_object('source', 'feed-' || g % 17, 'author', md5((g * 5)::text), 'n', g) AS metadata,
       (g % 10000) / 100.0::float8 AS score,
       (g % 5)::int AS status,
       md5((g * 17)::text)::uuid AS ref,
       'tag-' || g % 97 AS tag,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' AS created_at,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' + interval '5 minutes' AS updated_at
FROM generate_series(1::bigint, :rows) AS g;
\elif :jsonb
DROP TABLE IF EXISTS bench_jsonb;
CREATE TABLE bench_jsonb AS
SELECT g AS id,
       jsonb_build_object(
         'id', g, 'kind', (ARRAY['click', 'view', 'buy', 'share'])[1 + g % 4],
         'user', jsonb_build_object('id', g % 50000, 'name', md5((g % 50000)::text), 'tier', g % 3),
         'geo', jsonb_build_object('lat', (g % 180) - 90.5, 'lon', (g % 360) - 180.25, 'city', 'c' || g % 1000),
         'items', (SELECT jsonb_agg(jsonb_build_object('sku', md5((g + i)::text), 'qty', i, 'price', i * 1.25))
                   FROM generate_series(1, 6) AS i),
         'note', md5((g * 3)::text) || md5((g * 5)::text)) AS doc,
       jsonb_build_array(g % 7, g % 11, 'x' || g % 13) AS tags,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' AS created_at
FROM generate_series(1::bigint, :rows) AS g;
\elif :wide
DROP TABLE IF EXISTS bench_wide;
SELECT 'CREATE TABLE bench_wide AS SELECT g AS id, '
       || string_agg(format('(g * %s %% 100000)::int AS i%s, (g * %s / 97.0)::float8 AS f%s, ''v'' || (g * %s %% 1009) AS t%s',
                            n, n, n, n, n, n), ', ')
       || ' FROM generate_series(1::bigint, ' || :rows || ') AS g' AS create_wide
FROM generate_series(1, 40) AS n \gset
:create_wide;
\elif :arrays
DROP TABLE IF EXISTS bench_arrays;
CREATE TABLE bench_arrays AS
SELECT g AS id,
       (g * 1.0001)::numeric(18, 4) AS amount,
       (g::numeric / 7)::numeric(38, 10) AS ratio,
       (g::numeric * 1000003 / 13) AS exact,
       ARRAY[g % 10, g % 100, g % 1000]::int4[] AS small_ints,
       ARRAY[g / 3.0, g / 7.0]::float8[] AS weights,
       ARRAY['a' || g % 5, 'b' || g % 7, md5(g::text)] AS labels
FROM generate_series(1::bigint, :rows) AS g;
\else
\warn unknown shape :shape (narrow, long_text, jsonb, wide, arrays)
SELECT unknown_shape;
\endif

SELECT format('ALTER TABLE bench_%s ADD PRIMARY KEY (id)', :'shape') AS add_key \gset
:add_key;
SELECT format('VACUUM ANALYZE bench_%s', :'shape') AS analyze_it \gset
:analyze_it;
