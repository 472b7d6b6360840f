"""A stand-in OTLP/HTTP collector for CI: accepts POSTs, appends each one's path,
content type and raw body to a file, and answers 200. It decodes nothing; the check
looks for span names and attribute keys, which protobuf stores as plain strings."""
import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(sys.argv[2], "ab") as out:
            kind = self.headers.get("Content-Type", "")
            out.write(f"POST {self.path} {kind}\n".encode() + body + b"\n")
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print(f"collector listening on {server.server_address[1]}", flush=True)
server.serve_forever()
