#!/usr/bin/env python3
"""A tiny stand-in engine for the Kubernetes tests: serves GET /health and an OpenAI-style
GET /v1/models on --host/--port. --model names a file (in a pod: a path under a mounted volume);
/v1/models reports it and whether it exists. Python standard library only."""

import argparse
import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--model", default="test-model")
    args = parser.parse_args()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/health":
                return self.answer(200, {"status": "ok"})
            if self.path == "/v1/models":
                exists = os.path.isfile(args.model)
                return self.answer(200, {"object": "list", "data": [{
                    "id": os.path.basename(args.model), "object": "model", "owned_by": "test-engine",
                    "root": args.model, "file_exists": exists,
                    "file_content": open(args.model).read() if exists else None}]})
            return self.answer(404, {"error": {"message": f"no route {self.path}"}})

        def answer(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt, *a):
            print(f"test-engine: {self.address_string()} {fmt % a}", flush=True)

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: (print("test-engine: SIGTERM, exiting", flush=True), sys.exit(0)))
    print(f"test-engine: serving {args.model} on http://{args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
