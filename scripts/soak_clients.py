"""Soak clients for scripts/soak-test.sh: misbehaving connections beside good ones.

While good clients send chat requests on kept-alive connections, four kinds of bad client run in
loops, each on fresh connections: heads sent a byte at a time, /v1 bodies that stall, bodies of
the largest size sent with no credential or a wrong one, and pipelined bursts of 1 MiB bodies
sent without reading the answers. The server's RSS is sampled throughout.

Prints one JSON summary line and exits 1 when a bound is broken: a good client saw an error, a
slow client was not closed by its deadline (plus slack), an unauthenticated body was not
refused, or the RSS grew past --rss-bound-mib over its value before the soak.
"""

import argparse
import http.client
import json
import socket
import sys
import threading
import time

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--key", required=True)
parser.add_argument("--pid", type=int, required=True)
parser.add_argument("--seconds", type=float, default=20)
parser.add_argument("--head-timeout", type=float, required=True)
parser.add_argument("--body-timeout", type=float, required=True)
parser.add_argument("--max-request-bytes", type=int, required=True)
parser.add_argument("--rss-bound-mib", type=float, required=True)
parser.add_argument("--per-kind", type=int, default=25, help="concurrent connections per bad kind")
parser.add_argument("--good", type=int, default=4, help="good clients, each on one kept-alive connection")
parser.add_argument("--kinds", default="slow_head,slow_body,unauthenticated,pipelined", help="the bad kinds to run")
args = parser.parse_args()

CHAT = json.dumps({"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8})
SLACK = 1.5  # seconds past a deadline a close may take (the sweep runs every 250 ms; a loaded machine)
stop_at = time.monotonic() + args.seconds
lock = threading.Lock()
results = {
    "good_ok": 0, "good_errors": [], "slow_head": [], "slow_body": [], "unauthenticated": [],
    "pipelined": [], "problems": [],
}


def rss_kib():
    with open(f"/proc/{args.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def note(kind, value):
    with lock:
        results[kind].append(value)


def problem(text):
    with lock:
        if len(results["problems"]) < 20:
            results["problems"].append(text)


def connect(source="127.0.0.1"):
    """Bad clients come from other loopback addresses than the good ones: failed credentials slow
    their address down, as they should, and that must not be the good clients' address."""
    sock = socket.create_connection(("127.0.0.1", args.port), timeout=30, source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_status_and_close(sock):
    """The status of the first answer (or None) and the time until the server closed."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        data += chunk
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else None
    if status == 400:
        problem(f"answer: {data[:300]!r}")
    return status


def complete_answers(data):
    """The statuses of the whole answers at the start of `data` (Content-Length or chunked)."""
    statuses = []
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return statuses
        head = data[:end].decode("latin-1").split("\r\n")
        fields = {line.split(":", 1)[0].strip().lower(): line.split(":", 1)[1].strip() for line in head[1:] if ":" in line}
        rest = data[end + 4 :]
        if "content-length" in fields:
            length = int(fields["content-length"])
            if len(rest) < length:
                return statuses
            data = rest[length:]
        elif fields.get("transfer-encoding", "").lower() == "chunked":
            last = rest.find(b"\r\n0\r\n\r\n")
            if last < 0:
                return statuses
            data = rest[last + 7 :]
        else:
            data = rest
        statuses.append(int(head[0].split(" ")[1]))


def good_client():
    connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
    headers = {"Authorization": f"Bearer {args.key}", "Content-Type": "application/json"}
    while time.monotonic() < stop_at:
        try:
            connection.request("POST", "/v1/chat/completions", CHAT, headers)
            response = connection.getresponse()
            body = response.read()
            if response.status == 200:
                with lock:
                    results["good_ok"] += 1
            else:
                note("good_errors", f"{response.status} {body[:200]!r}")
        except Exception as error:  # a good client must never see one
            note("good_errors", repr(error))
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)


def slow(kind, first, more, deadline):
    """Sends `first`, then `more` every 0.3 s until the server closes; the close must come with
    408 by `deadline` (plus slack)."""
    while time.monotonic() < stop_at:
        sock = connect()
        started = time.monotonic()
        closed = threading.Event()

        # Bound as arguments: a closure would see the next loop's socket and event.
        def trickle(sock, closed):
            try:
                sock.sendall(first)
                while not closed.is_set():
                    time.sleep(0.3)
                    sock.sendall(more)
            except OSError:
                pass

        sender = threading.Thread(target=trickle, args=(sock, closed), daemon=True)
        sender.start()
        status = read_status_and_close(sock)
        closed.set()
        took = time.monotonic() - started
        note(kind, took)
        if status != 408 or took > deadline + SLACK:
            problem(f"{kind}: status {status} after {took:.2f} s")
        sock.close()


def slow_head():
    slow("slow_head", b"POST /v1/chat/completions HTTP/1.1\r\nHost: soak\r\nX-Slow: ", b"a", args.head_timeout)


def slow_body():
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: soak\r\nAuthorization: Bearer {args.key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    slow("slow_body", head + b'{"model":"fake",', b" " * 100, args.body_timeout)


def unauthenticated(index):
    credential = "" if index % 2 == 0 else "Authorization: Bearer gk_nobody_00000000000000000000000000\r\n"
    size = args.max_request_bytes
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: soak\r\n{credential}"
        f"Content-Type: application/json\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    ).encode()
    piece = b" " * 65536
    while time.monotonic() < stop_at:
        sock = connect(f"127.0.0.{2 + index % 50}")
        status_box = []
        reader = threading.Thread(target=lambda sock=sock: status_box.append(read_status_and_close(sock)), daemon=True)
        reader.start()
        try:
            sock.sendall(head)
            sent = 0
            while sent < size and reader.is_alive():
                sock.sendall(piece[: min(len(piece), size - sent)])
                sent += len(piece)
        except OSError:
            pass  # the server answered and closed: it need not read a body it refused
        reader.join(30)
        status = status_box[0] if status_box else None
        note("unauthenticated", status)
        # 429 once the address has failed too often (auth.maxFailedAttemptsPerMinute).
        if status not in (401, 429):
            problem(f"unauthenticated body: status {status}")
        sock.close()


def pipelined():
    body = CHAT[:-1] + " " * (1 << 20) + "}"
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: soak\r\nAuthorization: Bearer {args.key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    ).encode()
    burst = 6
    while time.monotonic() < stop_at:
        sock = connect()
        answers = []

        def read_all():
            data = b""
            while len(complete_answers(data)) < burst:
                try:
                    chunk = sock.recv(65536)
                except (OSError, socket.timeout):
                    break
                if not chunk:
                    break
                data += chunk
            answers.extend(complete_answers(data))

        reader = threading.Thread(target=read_all, daemon=True)
        try:
            sock.sendall(request * burst)
        except OSError as error:
            problem(f"pipelined burst not accepted: {error!r}")
        reader.start()
        reader.join(60)
        note("pipelined", answers.count(200))
        if answers.count(200) != burst:
            problem(f"pipelined burst: answers {answers}")
        sock.close()


baseline = rss_kib()
kinds = set(args.kinds.split(","))
threads = [threading.Thread(target=good_client) for _ in range(args.good)]
for _ in range(args.per_kind):
    if "slow_head" in kinds:
        threads.append(threading.Thread(target=slow_head))
    if "slow_body" in kinds:
        threads.append(threading.Thread(target=slow_body))
if "unauthenticated" in kinds:
    threads += [threading.Thread(target=unauthenticated, args=(index,)) for index in range(args.per_kind)]
if "pipelined" in kinds:
    threads += [threading.Thread(target=pipelined) for _ in range(max(1, args.per_kind // 5))]
for thread in threads:
    thread.daemon = True
    thread.start()
peak = baseline
while any(thread.is_alive() for thread in threads):
    peak = max(peak, rss_kib())
    time.sleep(0.1)
after = rss_kib()

growth_mib = (peak - baseline) / 1024
summary = {
    "seconds": args.seconds,
    "rss_baseline_mib": round(baseline / 1024, 1),
    "rss_peak_mib": round(peak / 1024, 1),
    "rss_after_mib": round(after / 1024, 1),
    "rss_growth_mib": round(growth_mib, 1),
    "rss_bound_mib": args.rss_bound_mib,
    "good_requests": results["good_ok"],
    "good_errors": len(results["good_errors"]),
    "slow_heads_closed": len(results["slow_head"]),
    "slow_head_max_s": round(max(results["slow_head"], default=0), 2),
    "slow_bodies_closed": len(results["slow_body"]),
    "slow_body_max_s": round(max(results["slow_body"], default=0), 2),
    "unauthenticated_refused": sum(status in (401, 429) for status in results["unauthenticated"]),
    "pipelined_answers": sum(results["pipelined"]),
    "problems": results["problems"],
}
print(json.dumps(summary))
if results["good_errors"]:
    print("good client errors:", results["good_errors"][:5], file=sys.stderr)
failed = results["good_errors"] or results["problems"] or growth_mib > args.rss_bound_mib or results["good_ok"] == 0
sys.exit(1 if failed else 0)
