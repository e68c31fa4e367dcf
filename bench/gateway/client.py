#!/usr/bin/env python3
"""Clients for bench/gateway.sh, standard library only.

  ttft     URL KEY BODY N          N sequential streamed requests on one connection; prints the
                                   p50 and p99 time to the first `data:` line, in ms (JSON).
  events   URL KEY BODY            one streamed request; prints its `data: {` events (JSON).
  streams  URL KEY BODY N PID      N concurrent streams (raw asyncio connections); samples PID's
                                   RSS while they are open; prints a JSON summary.
  tokens   URL KEY BODY C          C concurrent streams; sums usage.completion_tokens of the final
                                   usage chunks; prints tokens/s over the wall time (JSON).

URL is the full endpoint (http://127.0.0.1:PORT/v1/chat/completions); KEY may be "-" (none).
"""
import asyncio
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse


def headers(key):
    h = {"Content-Type": "application/json"}
    if key != "-":
        h["Authorization"] = "Bearer " + key
    return h


def split(url):
    u = urllib.parse.urlsplit(url)
    return u.hostname, u.port or 80, u.path


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def read_stream(response):
    """Reads an SSE answer line by line; returns (events, usage, done)."""
    events, usage, done = 0, None, False
    while True:
        line = response.readline()
        if not line:
            break
        if line.startswith(b"data: [DONE]"):
            done = True
        elif line.startswith(b"data: {"):
            events += 1
            if b'"usage"' in line:
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    usage = chunk["usage"]
    return events, usage, done


def ttft(url, key, body, n):
    host, port, path = split(url)
    conn = http.client.HTTPConnection(host, port, timeout=60)
    times = []
    for _ in range(n):
        started = time.perf_counter()
        conn.request("POST", path, body=body, headers=headers(key))
        response = conn.getresponse()
        if response.status != 200:
            raise SystemExit(f"status {response.status}: {response.read()[:300]!r}")
        first = None
        while True:
            line = response.readline()
            if not line:
                break
            if first is None and line.startswith(b"data:"):
                first = time.perf_counter() - started
        if first is None:
            raise SystemExit("a stream had no data line")
        times.append(first * 1000)
    print(json.dumps({"p50_ms": statistics.median(times), "p99_ms": percentile(times, 99), "n": n}))


def events(url, key, body):
    host, port, path = split(url)
    conn = http.client.HTTPConnection(host, port, timeout=60)
    conn.request("POST", path, body=body, headers=headers(key))
    response = conn.getresponse()
    if response.status != 200:
        raise SystemExit(f"status {response.status}: {response.read()[:300]!r}")
    count, usage, done = read_stream(response)
    print(json.dumps({"events": count, "usage": usage, "done": done}))


def tokens(url, key, body, concurrency):
    host, port, path = split(url)
    results, errors = [], []

    def one():
        try:
            conn = http.client.HTTPConnection(host, port, timeout=600)
            conn.request("POST", path, body=body, headers=headers(key))
            response = conn.getresponse()
            if response.status != 200:
                errors.append(f"status {response.status}: {response.read()[:300]!r}")
                return
            _, usage, done = read_stream(response)
            if not usage or not done:
                errors.append(f"no usage or no [DONE] (usage={usage}, done={done})")
                return
            results.append(usage["completion_tokens"])
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(repr(error))

    threads = [threading.Thread(target=one) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if errors:
        raise SystemExit("; ".join(errors))
    print(json.dumps({"tokens": sum(results), "seconds": wall, "tokens_per_s": sum(results) / wall}))


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


async def streams(url, key, body, n, pid):
    host, port, path = split(url)
    payload = body.encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        + (f"Authorization: Bearer {key}\r\n" if key != "-" else "")
        + f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    ).encode()
    state = {"connected": 0, "receiving": 0, "done": 0, "failed": 0, "peak_receiving": 0}
    first_event_at, failures = [], {}
    started = time.perf_counter()

    async def one():
        receiving = False
        try:
            reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
            state["connected"] += 1
            writer.write(head + payload)
            await writer.drain()
            status_line = await reader.readline()
            status = status_line.split(b" ")[1] if status_line else b"-"
            chunked = False
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"transfer-encoding:") and b"chunked" in line.lower():
                    chunked = True
            if status != b"200":
                raise RuntimeError(f"status {status.decode()}")
            buffer, count, done = b"", 0, False

            async def data():
                if not chunked:
                    return await reader.read(65536)
                size_line = await reader.readline()
                size = int(size_line.strip().split(b";")[0] or b"0", 16)
                if size == 0:
                    await reader.readline()
                    return b""
                chunk = await reader.readexactly(size + 2)
                return chunk[:-2]

            while not done:
                piece = await data()
                if not piece:
                    break
                buffer += piece
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    if event.startswith(b"data: [DONE]"):
                        done = True
                    elif event.startswith(b"data: {"):
                        count += 1
                        if not receiving:
                            receiving = True
                            first_event_at.append(time.perf_counter() - started)
                            state["receiving"] += 1
                            state["peak_receiving"] = max(state["peak_receiving"], state["receiving"])
            writer.close()
            if not done:
                raise RuntimeError("stream ended without [DONE]")
            state["done"] += 1
        except Exception as error:  # noqa: BLE001 - counted and summarised
            state["failed"] += 1
            reason = str(error) or type(error).__name__
            failures[reason] = failures.get(reason, 0) + 1
        finally:
            if receiving:
                state["receiving"] -= 1

    rss_before = rss_kib(pid)
    samples = []

    async def sampler():
        while True:
            samples.append((state["receiving"], rss_kib(pid)))
            await asyncio.sleep(0.25)

    sampling = asyncio.create_task(sampler())
    tasks = [asyncio.create_task(one()) for _ in range(n)]
    await asyncio.gather(*tasks)
    sampling.cancel()
    wall = time.perf_counter() - started
    # RSS while (nearly) all streams were receiving at once.
    peak = max((s[0] for s in samples), default=0)
    held = [r for c, r in samples if r is not None and c >= peak * 0.95 and c > 0]
    print(json.dumps({
        "streams": n, "completed": state["done"], "failed": state["failed"], "failures": failures,
        "peak_receiving_at_once": state["peak_receiving"],
        "all_first_events_within_s": max(first_event_at) if len(first_event_at) == n else None,
        "rss_before_kib": rss_before, "rss_held_max_kib": max(held) if held else None,
        "wall_s": wall,
    }))


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "ttft":
        ttft(args[0], args[1], args[2], int(args[3]))
    elif command == "events":
        events(args[0], args[1], args[2])
    elif command == "tokens":
        tokens(args[0], args[1], args[2], int(args[3]))
    elif command == "streams":
        asyncio.run(streams(args[0], args[1], args[2], int(args[3]), int(args[4])))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
