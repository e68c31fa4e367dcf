"""Load for scripts/scale-out-test.sh: threads calling /v1/chat/completions through each gateway
with that gateway's own key, until a stop file appears. Every answer is written as one line,
`<unix time> <gateway index> <status or error>`, so the test can say what failed, where and when.
Usage: scale_out_clients.py --gateways URL,URL,... --keys KEY,KEY,... --threads-per-gateway N
       --stop-file PATH --out PATH"""

import argparse
import http.client
import json
import os
import threading
import time
import urllib.parse

parser = argparse.ArgumentParser()
parser.add_argument("--gateways", required=True)
parser.add_argument("--keys", required=True)
parser.add_argument("--threads-per-gateway", type=int, default=2)
parser.add_argument("--stop-file", required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()
gateways = args.gateways.split(",")
keys = args.keys.split(",")
body = json.dumps({"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8})
lines = []
lock = threading.Lock()


def client(index):
    url = urllib.parse.urlsplit(gateways[index])
    connection = None
    while not os.path.exists(args.stop_file):
        outcome = None
        try:
            if connection is None:
                # A long timeout: an answer the gateway sent (and metered) must be seen here.
                connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
            connection.request(
                "POST", "/v1/chat/completions", body=body,
                headers={"Authorization": "Bearer " + keys[index], "Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            outcome = str(response.status)
            if response.getheader("connection", "").lower() == "close":
                connection.close()
                connection = None
        except Exception as error:  # refused, reset: the gateway died
            outcome = "error:" + type(error).__name__
            if connection is not None:
                connection.close()
            connection = None
            time.sleep(0.05)
        with lock:
            lines.append("%.3f %d %s" % (time.time(), index, outcome))


threads = [threading.Thread(target=client, args=(index,)) for index in range(len(gateways))
           for _ in range(args.threads_per_gateway)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
with open(args.out, "w") as out:
    out.write("\n".join(lines) + "\n")
