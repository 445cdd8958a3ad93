"""Answers GET with 503 `fail` times (optionally after delay_ms), then 200. POST /__reset?fail=N&delay_ms=M."""
import http.server, sys, time, urllib.parse
state = {"fail": 0, "delay": 0}
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        state["fail"] = int(q.get("fail", ["0"])[0]); state["delay"] = int(q.get("delay_ms", ["0"])[0])
        self.send_response(204); self.end_headers()
    def do_GET(self):
        time.sleep(state["delay"] / 1000)
        code = 503 if state["fail"] > 0 else 200
        state["fail"] -= 1
        body = b'{"error":{"code":503}}' if code == 503 else b'{"name":"o"}'
        self.send_response(code); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
