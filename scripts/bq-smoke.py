"""Check the BigQuery emulator (bq-up.sh) + fake-gcs-server (gcs-up.sh) for what pg2bq relies on.

Usage: eval "$(scripts/gcs-up.sh)"; eval "$(scripts/bq-up.sh)"; .venv-bq/bin/python scripts/bq-smoke.py
Exits non-zero on an unexpected result. Uses only REST (urllib) plus one call through the
official google-cloud-bigquery client. Each run works in its own dataset and deletes it.

Expected values are what the emulator (local-bigquery 0.4.0 + scripts/bq_emulator.py) returns;
lines marked QUIRK are where it differs, or may differ, from real BigQuery.
"""

import base64
import datetime as dt
import io
import json
import math
import os
import sys
import time
import urllib.error
import urllib.request
from decimal import Decimal as D

import farmhash
import pyarrow as pa
import pyarrow.parquet as pq

BQ = os.environ["BIGQUERY_EMULATOR_HOST"].rstrip("/")
GCS = os.environ["STORAGE_EMULATOR_HOST"].rstrip("/")
P = os.environ.get("PG2BQ_TEST_BQ_PROJECT", "pg2bq-test")
BUCKET = os.environ.get("PG2BQ_TEST_GCS_BUCKET", "pg2bq-test")
RUN = f"smoke_{time.time_ns()}"
FAILS: list[str] = []


def check(name, want, got):
    ok = want == got
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {got!r}" + ("" if ok else f" (want {want!r})"))
    if not ok:
        FAILS.append(name)


def http(method, url, body=None, raw=None, ctype="application/json"):
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": ctype} if data is not None else {}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            return error.code, json.loads(text)
        except ValueError:
            return error.code, text.decode()


def bq(method, path, body=None):
    return http(method, f"{BQ}/bigquery/v2/projects/{P}{path}", body)


def upload(name, table):
    buf = io.BytesIO()
    pq.write_table(table, buf)
    url = f"{GCS}/upload/storage/v1/b/{BUCKET}/o?uploadType=media&name={RUN}/{name}"
    status, _ = http("POST", url, raw=buf.getvalue(), ctype="application/octet-stream")
    assert status == 200, f"GCS upload {name}: HTTP {status}"
    return f"gs://{BUCKET}/{RUN}/{name}"


def field(name, kind, mode="NULLABLE"):
    return {"name": name, "type": kind, "mode": mode}


def load_job(job_id, table, uri, schema, disposition="WRITE_TRUNCATE"):
    return {
        "jobReference": {"projectId": P, "jobId": job_id},
        "configuration": {
            "load": {
                "sourceUris": [uri],
                "sourceFormat": "PARQUET",
                "destinationTable": {"projectId": P, "datasetId": RUN, "tableId": table},
                "writeDisposition": disposition,
                "schema": {"fields": schema},
                "parquetOptions": {"enableListInference": True},
                "decimalTargetTypes": ["NUMERIC", "BIGNUMERIC"],
            }
        },
    }


def load(table, uri, schema, disposition="WRITE_TRUNCATE"):
    """Submit a load job, poll until DONE; return (job resource, seconds)."""
    job_id = f"{RUN}_{table}_{time.time_ns()}"
    start = time.monotonic()
    status, job = bq("POST", "/jobs", load_job(job_id, table, uri, schema, disposition))
    assert status == 200, f"jobs.insert: HTTP {status} {job}"
    while job["status"]["state"] != "DONE":
        time.sleep(0.02)
        status, job = bq("GET", f"/jobs/{job_id}?location=US")
        assert status == 200, f"jobs.get: HTTP {status} {job}"
    return job, time.monotonic() - start


def cell(value):
    return [cell(v["v"]) for v in value] if isinstance(value, list) else value


def query(sql):
    body = {"query": sql, "useLegacySql": False, "formatOptions": {"useInt64Timestamp": True}}
    status, resp = bq("POST", "/queries", body)
    assert status == 200 and resp.get("jobComplete"), f"query {sql!r}: HTTP {status} {resp}"
    return [[cell(c["v"]) for c in row["f"]] for row in resp.get("rows", [])]


def one(sql):
    return query(sql)[0][0]


UTC = dt.timezone.utc
BIG76 = "12345678901234567890123456789012345678.12345678901234567890123456789012345678"
BIG = "12345678901234567890.123456789012345678"  # fits the emulator's BIGNUMERIC (38,18)
COLUMNS = {  # name: (BigQuery type, Arrow array, expected REST values by id 1..4)
    "i64": ("INT64", pa.array([2**63 - 1, -(2**63), 0, None], pa.int64()),
            ["9223372036854775807", "-9223372036854775808", "0", None]),
    "f64": ("FLOAT64", pa.array([0.1, -0.0, math.nan, 1e300], pa.float64()),
            ["0.1", "-0.0", "NaN", "1e+300"]),
    "num": ("NUMERIC", pa.array([D("1.50"), D("99999999999999999999999999999.999999999"),
                                 D("-0.000000001"), D(0)], pa.decimal128(38, 9)),
            ["1.5", "99999999999999999999999999999.999999999", "-0.000000001", "0"]),
    "bnum": ("BIGNUMERIC", pa.array([D(BIG), D("-" + BIG), D("1e-18"), D(0)], pa.decimal128(38, 18)),
             [BIG, "-" + BIG, "0.000000000000000001", "0"]),
    "s": ("STRING", pa.array(["héllo wörld ✓ 😀", "", None, "a'b\"c\\n"]),
          ["héllo wörld ✓ 😀", "", None, "a'b\"c\\n"]),
    "b": ("BYTES", pa.array([b"\x00\x01\xff", b"", None, b"abc"], pa.binary()),
          ["AAH/", "", None, "YWJj"]),
    "flag": ("BOOL", pa.array([True, False, None, True]), ["true", "false", None, "true"]),
    "d": ("DATE", pa.array([dt.date(1, 1, 1), dt.date(9999, 12, 31), None, dt.date(1970, 1, 1)]),
          ["0001-01-01", "9999-12-31", None, "1970-01-01"]),
    "t": ("TIME", pa.array([dt.time(0, 0, 0, 1), dt.time(23, 59, 59, 999999), None, dt.time(12)],
                           pa.time64("us")),
          ["00:00:00.000001", "23:59:59.999999", None, "12:00:00"]),
    "dt": ("DATETIME", pa.array([dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
                                 None, dt.datetime(1969, 12, 31, 23, 59, 59, 999999)], pa.timestamp("us")),
           ["0001-01-01T00:00:00", "9999-12-31T23:59:59.999999", None, "1969-12-31T23:59:59.999999"]),
    "ts": ("TIMESTAMP", pa.array([dt.datetime(1969, 12, 31, 23, 59, 59, 999999, UTC), dt.datetime(1, 1, 1, tzinfo=UTC),
                                  None, dt.datetime(9999, 12, 31, 23, 59, 59, 999999, UTC)],
                                 pa.timestamp("us", tz="+00:00")),
           ["-1", "-62135596800000000", None, "253402300799999999"]),  # useInt64Timestamp
    "j": ("JSON", pa.array(['{"a":1,"b":[true,null],"c":"x"}', '[1,"ü",{"x":null}]', None, '"s"']),
          ['{"a":1,"b":[true,null],"c":"x"}', '[1,"ü",{"x":null}]', None, '"s"']),
    "li": ("INT64", pa.array([[1, -2, 2**63 - 1], [], None, [0]], pa.list_(pa.int64())),
           [["1", "-2", "9223372036854775807"], [], [], ["0"]]),  # NULL list -> []
    "ls": ("STRING", pa.array([["a", "ü", ""], [], None, ["x"]], pa.list_(pa.string())),
           [["a", "ü", ""], [], [], ["x"]]),
}
SCHEMA = [field("id", "INT64", "REQUIRED")] + [
    field(name, kind, "REPEATED" if name in ("li", "ls") else "NULLABLE")
    for name, (kind, _, _) in COLUMNS.items()
]
ARROW = pa.table({"id": pa.array([1, 2, 3, 4], pa.int64())} | {n: c[1] for n, c in COLUMNS.items()})


def types_roundtrip():
    table = {"tableReference": {"projectId": P, "datasetId": RUN, "tableId": "types"},
             "schema": {"fields": SCHEMA}, "labels": {"owner": "pg2bq", "run": "smoke"}}
    status, created = bq("POST", f"/datasets/{RUN}/tables", table)
    check("tables.insert with schema + labels", 200, status)
    check("labels read back", {"owner": "pg2bq", "run": "smoke"},
          bq("GET", f"/datasets/{RUN}/tables/types")[1].get("labels"))
    status, patched = bq("PATCH", f"/datasets/{RUN}/tables/types", {"labels": {"run": "patched"}})
    check("tables.patch labels (merge)", {"owner": "pg2bq", "run": "patched"}, patched.get("labels"))

    uri = upload("types.parquet", ARROW)
    job, seconds = load("types", uri, SCHEMA)
    print(f"     load-job latency (4 rows, submit->DONE): {seconds * 1000:.0f} ms")
    check("load DONE without errorResult", None, job["status"].get("errorResult"))
    check("statistics.load.outputRows", "4", job["statistics"]["load"].get("outputRows"))
    rows = query(f"SELECT * FROM `{RUN}.types` ORDER BY id")
    for i, name in enumerate(COLUMNS, start=1):
        check(f"exact {COLUMNS[name][0]:>10} {name}", COLUMNS[name][2], [r[i] for r in rows])


def bignumeric():
    # QUIRK: the emulator stores BIGNUMERIC as DuckDB DECIMAL(38,18), and DuckDB reads Parquet
    # decimals with precision > 38 (decimal256) as DOUBLE.
    schema = [field("id", "INT64"), field("bnum", "BIGNUMERIC")]
    arrow = pa.table({"id": [1], "bnum": pa.array([D(BIG76)], pa.decimal256(76, 38))})
    job, _ = load("big76", upload("big76.parquet", arrow), schema)
    error = (job["status"].get("errorResult") or {}).get("message", "")
    check("QUIRK 76-digit decimal256(76,38) -> BIGNUMERIC fails (real BQ: loads)",
          True, "DECIMAL(38,18)" in error)
    arrow = pa.table({"id": [1], "bnum": pa.array([D(BIG)], pa.decimal256(76, 38))})
    load("big256", upload("big256.parquet", arrow), schema)
    check("QUIRK decimal256(76,38) small value -> BIGNUMERIC read via DOUBLE (inexact)",
          "12345678901234567525.491324606797053952", one(f"SELECT bnum FROM `{RUN}.big256`"))


def json_strategies():
    uri = upload("types.parquet", ARROW)  # same object again (overwrite)
    staged = [f if f["name"] != "j" else field("j", "STRING") for f in SCHEMA]
    job, _ = load("json_staged", uri, staged)
    check("JSON text -> STRING column", None, job["status"].get("errorResult"))
    query(f"CREATE OR REPLACE TABLE `{RUN}.json_ctas` AS "
          f"SELECT * REPLACE (PARSE_JSON(j) AS j) FROM `{RUN}.json_staged`")
    check("CTAS SELECT * REPLACE (PARSE_JSON(j) AS j) -> JSON column", "JSON",
          next(f["type"] for f in bq("GET", f"/datasets/{RUN}/tables/json_ctas")[1]["schema"]["fields"]
               if f["name"] == "j"))
    expected = COLUMNS["j"][2]
    check("CTAS values", expected, [r[0] for r in query(f"SELECT j FROM `{RUN}.json_ctas` ORDER BY id")])
    bq("POST", f"/datasets/{RUN}/tables", {"tableReference": {"projectId": P, "datasetId": RUN, "tableId": "json_ins"},
                                          "schema": {"fields": SCHEMA}})
    query(f"INSERT INTO `{RUN}.json_ins` SELECT * REPLACE (PARSE_JSON(j) AS j) FROM `{RUN}.json_staged`")
    check("INSERT ... SELECT PARSE_JSON values", expected,
          [r[0] for r in query(f"SELECT j FROM `{RUN}.json_ins` ORDER BY id")])
    # Parquet JSON logical type (pyarrow json_ extension) straight into a JSON column.
    arrow = pa.table({"id": [1, 2], "j": pa.array(['{"k":[1,2]}', None], pa.json_())})
    job, _ = load("json_logical", upload("json_logical.parquet", arrow), [field("id", "INT64"), field("j", "JSON")])
    check("Parquet JSON logical type -> JSON column", None, job["status"].get("errorResult"))
    check("  values", ['{"k":[1,2]}', None], [r[0] for r in query(f"SELECT j FROM `{RUN}.json_logical` ORDER BY id")])


def load_semantics():
    small = pa.table({"id": pa.array([1, 2], pa.int64())})
    uri = upload("small.parquet", small)
    schema = [field("id", "INT64")]
    job_id = f"{RUN}_dup"
    check("jobs.insert new id", 200, bq("POST", "/jobs", load_job(job_id, "disp", uri, schema))[0])
    status, body = bq("POST", "/jobs", load_job(job_id, "disp", uri, schema))
    check("jobs.insert same jobId -> 409", 409, status)
    print(f"     409 body: {json.dumps(body)[:200]}")
    time.sleep(0.5)
    count = lambda: one(f"SELECT COUNT(*) FROM `{RUN}.disp`")  # noqa: E731
    check("after TRUNCATE", "2", count())
    job, _ = load("disp", uri, schema, "WRITE_APPEND")
    check("WRITE_APPEND outputRows", "2", job["statistics"]["load"].get("outputRows"))
    check("after APPEND", "4", count())
    job, _ = load("disp", uri, schema, "WRITE_EMPTY")
    print(f"     WRITE_EMPTY on non-empty: {job['status'].get('errorResult')}")
    check("WRITE_EMPTY on non-empty table -> errorResult", True, job["status"].get("errorResult") is not None)
    check("after failed EMPTY", "4", count())
    job, _ = load("disp_new", uri, schema, "WRITE_EMPTY")
    check("WRITE_EMPTY on new table", None, job["status"].get("errorResult"))
    job, _ = load("disp", uri, schema, "WRITE_TRUNCATE")
    check("after TRUNCATE again", "2", count())
    upload("part-000.parquet", small)
    upload("part-001.parquet", small)
    job, _ = load("wild", f"gs://{BUCKET}/{RUN}/part-*.parquet", schema)
    check("wildcard URI load outputRows", ("4", None),
          (job["statistics"]["load"].get("outputRows"), job["status"].get("errorResult")))
    bad = [field("id", "DATE")]
    job, _ = load("disp", uri, bad, "WRITE_APPEND")
    print(f"     wrong schema: state={job['status']['state']} errorResult={job['status'].get('errorResult')}")
    check("wrong schema -> DONE with errorResult", ("DONE", True),
          (job["status"]["state"], job["status"].get("errorResult") is not None))
    check("after failed load", "2", count())


# CAST(numeric AS STRING) without trailing zeros, the same text on the emulator and BigQuery.
TRIMMED = "IF(STRPOS(CAST({0} AS STRING), '.') > 0, RTRIM(RTRIM(CAST({0} AS STRING), '0'), '.'), CAST({0} AS STRING))"


def functions():
    for text, lit in (("abc", "'abc'"), ("", "''"), (b"\x00\x01", "b'\\x00\\x01'")):
        want = farmhash.fingerprint64(text)
        want = want - 2**64 if want >= 2**63 else want
        check(f"FARM_FINGERPRINT({lit}) == farmhash.fingerprint64", str(want), one(f"SELECT FARM_FINGERPRINT({lit})"))
    values = ["a", "b", "c"]
    fps = [farmhash.fingerprint64(v) for v in values]
    fps = [f - 2**64 if f >= 2**63 else f for f in fps]
    xor = fps[0] ^ fps[1] ^ fps[2]
    src = "UNNEST(['a','b','c']) AS x"
    check("BIT_XOR(FARM_FINGERPRINT(x))", str(xor), one(f"SELECT BIT_XOR(FARM_FINGERPRINT(x)) FROM {src}"))
    check("SUM(CAST(FARM_FINGERPRINT(x) AS BIGNUMERIC))", str(sum(fps)),
          one(f"SELECT SUM(CAST(FARM_FINGERPRINT(x) AS BIGNUMERIC)) FROM {src}"))
    t = f"`{RUN}.types`"
    rows = query(f"SELECT UNIX_MICROS(ts), UNIX_DATE(d), TIME_DIFF(t, TIME '00:00:00', MICROSECOND), "
                 f"UNIX_MICROS(TIMESTAMP(dt)), FORMAT('%.17g', f64), CAST(num AS STRING), "
                 f"CAST(bnum AS STRING), TO_HEX(b), BYTE_LENGTH(b), BYTE_LENGTH(s), {TRIMMED.format('num')}, "
                 f"{TRIMMED.format('bnum')} FROM {t} ORDER BY id")
    got = list(map(list, zip(*rows)))
    check("UNIX_MICROS(ts)", ["-1", "-62135596800000000", None, "253402300799999999"], got[0])
    check("UNIX_DATE(d)", ["-719162", "2932896", None, "0"], got[1])
    check("TIME_DIFF(t, TIME '00:00:00', MICROSECOND)", ["1", "86399999999", None, "43200000000"], got[2])
    check("UNIX_MICROS(TIMESTAMP(dt))", ["-62135596800000000", "253402300799999999", None, "-1"], got[3])
    # C printf %.17g (what ZetaSQL's FORMAT follows) gives 0.10000000000000001, -0, nan, 1.0000000000000001e+300.
    check("FORMAT('%.17g', f64)", ["0.10000000000000001", "-0", "nan", "1.0000000000000001e+300"], got[4])
    # QUIRK: the emulator keeps the full scale (real BigQuery: "1.5", "0"); TRIMMED agrees on both.
    check("QUIRK CAST(num AS STRING)", ["1.500000000", "99999999999999999999999999999.999999999",
                                        "-0.000000001", "0.000000000"], got[5])
    check("QUIRK CAST(bnum AS STRING)", [BIG, "-" + BIG, "0.000000000000000001", "0.000000000000000000"], got[6])
    check("TRIMMED num", ["1.5", "99999999999999999999999999999.999999999", "-0.000000001", "0"], got[10])
    check("TRIMMED bnum", [BIG, "-" + BIG, "0.000000000000000001", "0"], got[11])
    check("TO_HEX(b)", ["0001ff", "", None, "616263"], got[7])
    check("BYTE_LENGTH(b)", ["3", "0", None, "3"], got[8])
    check("BYTE_LENGTH(s)", ["22", "0", None, "7"], got[9])


def official_client():
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    client = bigquery.Client(project=P, credentials=AnonymousCredentials(),
                             client_options=ClientOptions(api_endpoint=BQ))
    rows = list(client.query(f"SELECT id, num, ts FROM `{RUN}.types` WHERE id = 1").result())
    check("google-cloud-bigquery query", (1, D("1.5"), dt.datetime(1969, 12, 31, 23, 59, 59, 999999, UTC)),
          tuple(rows[0].values()))


def main():
    status, body = bq("POST", "/datasets", {"datasetReference": {"projectId": P, "datasetId": RUN}})
    check("datasets.insert", 200, status)
    try:
        for step in (types_roundtrip, bignumeric, json_strategies, load_semantics, functions, official_client):
            print(f"--- {step.__name__}")
            try:
                step()
            except Exception as error:  # report and go on with the next step
                print(f"FAIL {step.__name__}: {type(error).__name__}: {error}")
                FAILS.append(step.__name__)
    finally:
        bq("DELETE", f"/datasets/{RUN}?deleteContents=true")
    print(f"{len(FAILS)} failed: {FAILS}" if FAILS else "all checks passed")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
