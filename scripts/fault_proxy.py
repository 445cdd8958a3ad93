#!/usr/bin/env python3
"""A fault-injecting HTTP proxy for the test suite (Python stdlib only).

It listens on one port per upstream (fake-gcs-server, the BigQuery emulator) and passes every
request through unchanged (bodies byte for byte; a resumable upload's `Location` is rewritten to
point back at the proxy), except where the rules set per test say otherwise:

  POST /__faults   {"seed": 7, "rules": [...], "bq_async_polls": 3, "bq_page_rows": 2}
                   replaces the whole configuration and clears the counters
  GET  /__faults   {"requests": {"gcs": n, "bq": n}, "injected": [per rule], "faults": {kind: n}}

A rule: {"upstream": "gcs"|"bq", "method": "PUT", "path": "<regex on path?query>",
         "body": "<regex on the request body>", "fraction": 0.2, "limit": 5,
         "faults": [{"status": 503}, {"status": 502, "html": true}, {"delay_ms": 300},
                    {"reset": "before"|"after"|"mid_body"},
                    {"job_error": {"reason": "invalidQuery", "message": "..."}}]}
A matching request fires the rule with probability `fraction` (seeded), at most `limit` times;
then one of `faults` is picked (seeded): answer that status without forwarding (with a JSON
error body like BigQuery's, or with `html` an HTML page like Google's front ends), wait and
forward, or close the connection (RST) before forwarding, after the upstream acted on the
request (the answer is lost), or halfway through the answer's body. A `job_error` answers a
BigQuery jobs.insert without forwarding it, with the job DONE and failed for that reason (as
BigQuery refuses DML over rows in a table's streaming buffer), and answers that job's
jobs.get the same way.

BigQuery answers like the real service when asked: with `bq_async_polls` N, a query's first N
answers (jobs.query or getQueryResults) say `jobComplete: false`; with `bq_page_rows` K, the
result (fetched whole from the emulator) is served K rows a page with the proxy's own page
tokens and the true `totalRows`.

GCS resumable-upload status queries (`Content-Range: bytes */*`, empty body) are answered by
the proxy from the ranges the upstream acknowledged: fake-gcs-server would instead finalize
the object with the bytes it has (real GCS answers 308 with the persisted `Range`).

Start by hand (scripts/faults-up.sh does this):
  python3 scripts/fault_proxy.py --gcs-upstream http://127.0.0.1:4443 --gcs-port 4500 \
      --bq-upstream http://127.0.0.1:9050 --bq-port 4501
"""

import argparse
import http.client
import http.server
import json
import random
import re
import socket
import struct
import sys
import threading
import time
import urllib.parse

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "te", "upgrade", "trailer"}


class Faults:
    """The configuration and counters shared by every listener (tests run one at a time)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.configure({})

    def configure(self, config):
        with self.lock:
            self.rng = random.Random(config.get("seed", 0))
            self.rules = config.get("rules", [])
            for rule in self.rules:
                rule["_path"] = re.compile(rule.get("path", ""))
            self.async_polls = int(config.get("bq_async_polls", 0))
            self.page_rows = int(config.get("bq_page_rows", 0))
            self.injected = [0] * len(self.rules)
            self.requests = {"gcs": 0, "bq": 0}
            self.kinds = {}
            self.queries = {}  # BigQuery job id -> {"base", "rows", "polls_left"}
            self.failed_jobs = {}  # BigQuery job id -> the failed job resource served for it
            self.sessions = {}  # resumable upload id -> {"persisted", "final": (status, headers, body) | None}

    def stats(self):
        with self.lock:
            return {"requests": dict(self.requests), "injected": list(self.injected), "faults": dict(self.kinds)}

    def pick(self, upstream, method, target, body):
        """The fault to inject into this request, or None."""
        with self.lock:
            self.requests[upstream] += 1
            for index, rule in enumerate(self.rules):
                if rule.get("upstream", upstream) != upstream or rule.get("method", method) != method:
                    continue
                if not rule["_path"].search(target):
                    continue
                if "body" in rule and not re.search(rule["body"], (body or b"").decode("utf-8", "replace")):
                    continue
                if "limit" in rule and self.injected[index] >= rule["limit"]:
                    continue
                if self.rng.random() >= rule.get("fraction", 1.0):
                    continue
                self.injected[index] += 1
                fault = self.rng.choice(rule["faults"])
                kind = (
                    "status %s" % fault["status"] if "status" in fault
                    else "reset %s" % fault["reset"] if "reset" in fault
                    else "job_error" if "job_error" in fault
                    else "delay"
                )
                self.kinds[kind] = self.kinds.get(kind, 0) + 1
                return fault
            return None


FAULTS = Faults()


def as_json(value):
    return 200, [("Content-Type", "application/json")], json.dumps(value).encode()


def make_handler(upstream_name, upstream_url, public_url):
    upstream = urllib.parse.urlsplit(upstream_url)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 - the base class's name
            pass

        def finish(self):
            try:
                super().finish()
            except OSError:
                pass

        # -- plumbing ------------------------------------------------------------------
        def read_body(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                body = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return body
                    body += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))

        def forward(self, method, target, body, headers=None):
            """(status, [(name, value)], body) from the upstream."""
            connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=300)
            try:
                send = {k: v for k, v in (headers if headers is not None else self.headers.items()) if k.lower() not in HOP_BY_HOP and k.lower() != "host"}
                send["Host"] = upstream.netloc
                send["Content-Length"] = str(len(body))
                connection.request(method, target, body=body, headers=send)
                response = connection.getresponse()
                data = response.read()
                return response.status, [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP], data
            finally:
                connection.close()

        def reset(self):
            """Close the connection with a TCP RST, answering nothing more."""
            self.close_connection = True
            try:
                self.wfile.flush()
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            except OSError:
                pass

        def respond(self, status, headers, body, fault=None):
            if fault and fault.get("reset") == "after":
                return self.reset()
            self.send_response_only(status)
            for name, value in headers:
                if name.lower() == "location" and value.startswith(upstream_url):
                    value = public_url + value[len(upstream_url):]
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if fault and fault.get("reset") == "mid_body":
                self.wfile.write(body[: len(body) // 2])
                return self.reset()
            self.wfile.write(body)

        def respond_json(self, status, value):
            self.respond(status, [("Content-Type", "application/json")], json.dumps(value).encode())

        # -- one request -----------------------------------------------------------------
        def handle_any(self):
            body = self.read_body()
            if self.path.startswith("/__faults"):
                if self.command == "POST":
                    FAULTS.configure(json.loads(body or b"{}"))
                return self.respond_json(200, FAULTS.stats())
            failed = upstream_name == "bq" and self.command == "GET" and self.failed_job()
            if failed:
                return self.respond_json(200, failed)
            fault = FAULTS.pick(upstream_name, self.command, self.path, body)
            if fault and "job_error" in fault:
                return self.respond_json(200, self.fail_job(body, fault["job_error"]))
            if fault and "delay_ms" in fault:
                time.sleep(fault["delay_ms"] / 1000)
            elif fault and fault.get("html"):
                page = b"<html><body><h1>Error %d (Server Error)</h1></body></html>" % fault["status"]
                return self.respond(fault["status"], [("Content-Type", "text/html; charset=UTF-8")], page)
            elif fault and "status" in fault:
                error = {"code": fault["status"], "message": "injected by fault_proxy", "errors": [{"reason": "backendError"}]}
                return self.respond_json(fault["status"], {"error": error})
            elif fault and fault.get("reset") == "before":
                return self.reset()
            if upstream_name == "bq" and (FAULTS.async_polls or FAULTS.page_rows):
                answer = self.bigquery_query(body)
                if answer is not None:
                    return self.respond(*answer, fault)
            if upstream_name == "gcs" and self.command == "PUT" and "upload_id=" in self.path:
                return self.gcs_chunk(body, fault)
            self.respond(*self.forward(self.command, self.path, body), fault)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

        # -- BigQuery: jobs that fail on the proxy's word ------------------------------------
        def fail_job(self, body, error):
            """A jobs.insert answered as a DONE job with `error`, remembered for its jobs.get."""
            request = json.loads(body or b"{}")
            reference = request.get("jobReference", {})
            job = {
                "kind": "bigquery#job",
                "jobReference": reference,
                "configuration": request.get("configuration", {}),
                "status": {"state": "DONE", "errorResult": error, "errors": [error]},
                "statistics": {},
            }
            with FAULTS.lock:
                FAULTS.failed_jobs[reference.get("jobId")] = job
            return job

        def failed_job(self):
            """The failed job a jobs.get asks for, if the proxy failed it."""
            match = re.search(r"/jobs/([^/?]+)", self.path)
            with FAULTS.lock:
                return FAULTS.failed_jobs.get(urllib.parse.unquote(match.group(1))) if match else None

        # -- BigQuery: unfinished and paged query answers ------------------------------------
        def bigquery_query(self, body):
            """(status, headers, body) answering jobs.query / getQueryResults, or None to forward."""
            path, _, query = self.path.partition("?")
            params = urllib.parse.parse_qs(query)
            if self.command == "POST" and path.endswith("/queries"):
                request = json.loads(body or b"{}")
                if request.get("dryRun"):
                    return None
                upstream_answer = self.forward("POST", self.path, body)
                reference = json.loads(upstream_answer[2]).get("jobReference") if upstream_answer[0] == 200 else None
                page = reference and self.serve_query(reference, None)
                return as_json(dict(page, kind="bigquery#queryResponse")) if page else upstream_answer
            match = re.fullmatch(r"(.*/projects/[^/]+)/queries/([^/]+)", path)
            if self.command == "GET" and match:
                token = params.get("pageToken", [None])[0]
                reference = {"jobId": urllib.parse.unquote(match.group(2)), "location": params.get("location", [None])[0]}
                page = self.serve_query(reference, token, prefix=match.group(1))
                return as_json(page) if page else None
            return None

        def serve_query(self, reference, token, prefix=None):
            job_id = reference["jobId"]
            with FAULTS.lock:
                known = FAULTS.queries.get(job_id)
            if known is None:
                prefix = prefix or self.path.partition("?")[0].rsplit("/queries", 1)[0]
                result = self.fetch_result(prefix, job_id, reference.get("location"))
                if result is None:
                    return None
                result["polls_left"] = FAULTS.async_polls
                with FAULTS.lock:
                    known = FAULTS.queries.setdefault(job_id, result)
            with FAULTS.lock:
                if known["polls_left"] > 0:
                    known["polls_left"] -= 1
                    return {"kind": "bigquery#getQueryResultsResponse", "jobReference": known["base"].get("jobReference"), "jobComplete": False}
            rows = known["rows"]
            offset = int(token.removeprefix("proxy-")) if token else 0
            size = FAULTS.page_rows or max(len(rows), 1)
            page = dict(known["base"], rows=rows[offset : offset + size], totalRows=str(len(rows)), jobComplete=True)
            if offset + size < len(rows):
                page["pageToken"] = "proxy-%d" % (offset + size)
            return page

        def fetch_result(self, prefix, job_id, location):
            """The whole result of a finished query job from the emulator, or None (pass through)."""
            rows, token, base = [], None, None
            while True:
                query = {"timeoutMs": "10000"}
                if location:
                    query["location"] = location
                if token:
                    query["pageToken"] = token
                status, _, data = self.forward("GET", "%s/queries/%s?%s" % (prefix, urllib.parse.quote(job_id), urllib.parse.urlencode(query)), b"", headers=[])
                if status != 200:
                    return None
                page = json.loads(data)
                if not page.get("jobComplete"):
                    time.sleep(0.05)
                    continue
                rows.extend(page.get("rows", []))
                base = base or {k: v for k, v in page.items() if k not in ("rows", "pageToken", "totalRows")}
                token = page.get("pageToken")
                if not token:
                    return {"base": base, "rows": rows}

        # -- GCS: resumable upload chunks and status queries ---------------------------------
        def gcs_chunk(self, body, fault):
            upload_id = urllib.parse.parse_qs(self.path.partition("?")[2]).get("upload_id", [""])[0]
            content_range = self.headers.get("Content-Range", "")
            with FAULTS.lock:
                session = FAULTS.sessions.setdefault(upload_id, {"persisted": 0, "final": None})
            if not body and content_range.startswith("bytes */"):
                if session["final"] is not None:
                    return self.respond(*session["final"], fault)
                total = content_range[len("bytes */") :]
                if total == "*" or int(total) != session["persisted"]:
                    headers = [("Range", "bytes=0-%d" % (session["persisted"] - 1))] if session["persisted"] else []
                    return self.respond(308, headers, b"", fault)
            status, headers, data = self.forward("PUT", self.path, body)
            with FAULTS.lock:
                if status == 308:
                    ranges = [v for k, v in headers if k.lower() == "range"]
                    session["persisted"] = int(ranges[0].rsplit("-", 1)[1]) + 1 if ranges else 0
                elif status in (200, 201):
                    session["final"] = (status, headers, data)
            self.respond(status, headers, data, fault)

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--gcs-upstream")
    parser.add_argument("--gcs-port", type=int)
    parser.add_argument("--bq-upstream")
    parser.add_argument("--bq-port", type=int)
    args = parser.parse_args()
    servers = []
    for name, upstream, port in (("gcs", args.gcs_upstream, args.gcs_port), ("bq", args.bq_upstream, args.bq_port)):
        if upstream and port:
            public = "http://%s:%d" % (args.host, port)
            server = http.server.ThreadingHTTPServer((args.host, port), make_handler(name, upstream.rstrip("/"), public))
            server.daemon_threads = True
            servers.append(server)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            print("fault_proxy: %s %s -> %s" % (name, public, upstream), file=sys.stderr, flush=True)
    if not servers:
        parser.error("give at least one --X-upstream with its --X-port")
    threading.Event().wait()


if __name__ == "__main__":
    main()
