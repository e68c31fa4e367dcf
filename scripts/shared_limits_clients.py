"""Demand far above a limit, for scripts/scale-out-test.sh: CLIENTS threads, spread over the
gateways, call /v1/chat/completions with one key for SECONDS, each starting its next request as
soon as the last is answered (50 ms after a 429). With --engine, the FAKE engine's /stats is
sampled every 20 ms: the held streams it runs at once, which is what a concurrency limit admits.
Prints one JSON object: answers per status, tokens of the answered requests (the engine's usage),
and the engine's peak and mean of streams running.
Usage: shared_limits_clients.py --gateways URL,URL,... --key KEY --model NAME --clients N
       --seconds S [--stream] [--engine URL]"""

import argparse
import collections
import http.client
import json
import threading
import time
import urllib.parse

parser = argparse.ArgumentParser()
parser.add_argument("--gateways", required=True)
parser.add_argument("--key", required=True)
parser.add_argument("--model", required=True)
parser.add_argument("--clients", type=int, default=200)
parser.add_argument("--seconds", type=float, default=8)
parser.add_argument("--max-tokens", type=int, default=16)
parser.add_argument("--stream", action="store_true")
parser.add_argument("--engine")
args = parser.parse_args()
gateways = [urllib.parse.urlsplit(url) for url in args.gateways.split(",")]
request = {"model": args.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": args.max_tokens}
if args.stream:
    request.update(stream=True, stream_options={"include_usage": True})
body = json.dumps(request)
headers = {"Authorization": "Bearer " + args.key, "Content-Type": "application/json"}
lock = threading.Lock()
statuses = collections.Counter()
per_gateway = collections.Counter()
tokens = [0]
unexpected = []
deadline = time.monotonic() + args.seconds


def usage_tokens(payload):
    if not args.stream:
        return json.loads(payload)["usage"]["total_tokens"]
    total = 0
    for line in payload.decode().splitlines():
        if line.startswith("data: {") and '"usage"' in line:
            usage = json.loads(line[6:]).get("usage")
            if usage:
                total = usage["total_tokens"]
    return total


def client(index):
    url = gateways[index % len(gateways)]
    connection = None
    while time.monotonic() < deadline:
        try:
            if connection is None:
                connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
            connection.request("POST", "/v1/chat/completions", body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            status = response.status
            used = usage_tokens(payload) if status == 200 else 0
            with lock:
                statuses[str(status)] += 1
                if status == 200:
                    per_gateway[index % len(gateways)] += 1
                    tokens[0] += used
                elif status != 429 and len(unexpected) < 10:
                    unexpected.append("%d %s" % (status, payload[:300].decode(errors="replace")))
            if status == 429:
                time.sleep(0.05)
        except Exception as error:
            with lock:
                statuses["error:" + type(error).__name__] += 1
            if connection is not None:
                connection.close()
            connection = None
            time.sleep(0.05)


samples = []


def sampler():
    url = urllib.parse.urlsplit(args.engine)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    while time.monotonic() < deadline:
        connection.request("GET", "/stats")
        samples.append(json.loads(connection.getresponse().read())["running"])
        time.sleep(0.02)


peak = None
if args.engine:
    url = urllib.parse.urlsplit(args.engine)
    reset = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    reset.request("POST", "/stats/reset")
    reset.getresponse().read()
threads = [threading.Thread(target=client, args=(index,)) for index in range(args.clients)]
if args.engine:
    threads.append(threading.Thread(target=sampler))
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
if args.engine:
    stats = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    stats.request("GET", "/stats")
    peak = json.loads(stats.getresponse().read())["peak"]
# The first second is the ramp (a first sync per gateway, slots growing): the mean is of the rest.
steady = samples[len(samples) // max(1, int(args.seconds)):]
print(json.dumps({
    "answered": statuses["200"],
    "statuses": dict(statuses),
    "per_gateway": [per_gateway[index] for index in range(len(gateways))],
    "tokens": tokens[0],
    "peak_running": peak,
    "mean_running": round(sum(steady) / len(steady), 2) if steady else None,
    "unexpected": unexpected,
}))
