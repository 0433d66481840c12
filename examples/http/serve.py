"""Serve index.html, and pass the page's requests under /jobs/ on to the HTTP frontend.

    python examples/http/serve.py                  # http://localhost:8000/ -> frontend at localhost:8080
    python examples/http/serve.py --port 8001 --gearman http://127.0.0.1:8081

The frontend sends no CORS headers, so a page can call it only from its own origin: in production a web
server serves the page and proxies a path to the frontend (nginx: location /jobs/ { proxy_pass
http://127.0.0.1:8080/; }); this script plays that web server. POST /jobs/FUNCTION becomes POST /FUNCTION
on the frontend, with the X-Gearman-* headers both ways.
"""

import argparse
import os
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PAGE = Path(__file__).resolve().parent / "index.html"


def handler(gearman):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.split("?")[0] not in ("/", "/index.html"):
                self.send_error(404)
                return
            self.reply(200, {"Content-Type": "text/html; charset=utf-8"}, PAGE.read_bytes())

        def do_POST(self):
            if not self.path.startswith("/jobs/"):
                self.send_error(404)
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower().startswith("x-gearman-")}
            request = urllib.request.Request(gearman + self.path[len("/jobs") :], body, headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    self.reply(response.status, dict(response.headers), response.read())
            except urllib.error.HTTPError as error:
                self.reply(error.code, dict(error.headers), error.read())
            except OSError as error:
                self.reply(502, {"Content-Type": "text/plain"}, f"job server: {error}".encode())

        def reply(self, status, headers, body):
            self.send_response(status)
            for name, value in headers.items():
                if name.lower().startswith("x-gearman-") or name.lower() == "content-type":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--gearman", default=os.environ.get("GEARMAN_HTTP", "http://localhost:8080"))
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.bind, args.port), handler(args.gearman.rstrip("/")))
    print(f"serving http://{args.bind}:{server.server_address[1]}/ (jobs go to {args.gearman})", flush=True)
    server.serve_forever()
