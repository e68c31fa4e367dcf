#!/usr/bin/env python3
"""Turns bench/gateway.sh's results (TSV: target, figure, value) into one markdown table; prints
it, and with a docs path replaces the section between the gateway-bench markers there (or
appends the markers and the section).

  report.py RESULTS.tsv docs/benchmarks.md|-
"""
import json
import sys
import textwrap

START, END = "<!-- gateway-bench:start -->", "<!-- gateway-bench:end -->"
NAMES = {"direct": "fake engine directly", "nginx": "nginx", "gantry": "Gantry", "litellm": "LiteLLM"}


def load(path):
    results = {}
    with open(path) as f:
        for line in f:
            target, figure, value = line.rstrip("\n").split("\t", 2)
            results.setdefault(target, {})[figure] = value
    return results


def wrk_us(text):
    """wrk's latency ("85.12us", "1.20ms", "2.00s") in microseconds."""
    for unit, factor in (("us", 1), ("ms", 1e3), ("s", 1e6)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    raise ValueError(f"unexpected wrk latency {text!r}")


def duration(us):
    if abs(us) >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} µs"


def added(value, base):
    sign = "+" if value >= base else "−"
    return f"{duration(value)} ({sign}{duration(abs(value - base))})"


def mib(kib):
    return f"{int(kib) / 1024:.1f} MiB"


def table(results):
    meta = results["meta"]
    order = [t for t in ("direct", "nginx", "gantry", "litellm") if t in results]
    r = {t: results[t] for t in order}
    for t in order:
        r[t]["p50_us"] = wrk_us(r[t]["p50"])
        r[t]["p99_us"] = wrk_us(r[t]["p99"])
        r[t]["ttft_us"] = json.loads(r[t]["ttft"])["p50_ms"] * 1000
    base = r["direct"]

    def row(label, cell):
        return f"| {label} | " + " | ".join(cell(t, r[t]) for t in order) + " |"

    def versus(key):
        return lambda t, x: duration(x[key]) if t == "direct" else added(x[key], base[key])

    connections = meta["connections"]
    lines = [
        "| figure | " + " | ".join(NAMES[t] for t in order) + " |",
        "|---" * (len(order) + 1) + "|",
        row(f"requests/s, non-streaming, {connections} connections", lambda t, x: f"{float(x['rps']):,.0f}"),
        row("latency p50, 1 connection (added)", versus("p50_us")),
        row("latency p99, 1 connection (added)", versus("p99_us")),
        row(f"streams/s, {connections} connections", lambda t, x: f"{float(x['stream_rps']):,.0f}"),
        row(
            "SSE events/s (events per stream, counted by a client)",
            lambda t, x: f"{float(x['stream_rps']) * int(x['events']):,.0f} ({x['events']})",
        ),
        row(f"time to first token p50, 1 connection, {meta['ttft_requests']} streams (added)", versus("ttft_us")),
        row(
            "peak RSS (VmHWM) over these runs",
            lambda t, x: "–" if t == "direct"
            else mib(x["rss_kib"]) + (f" ({x['processes']} processes)" if "processes" in x else "")
            + (" (master + workers)" if t == "nginx" else ""),
        ),
        row(
            "non-2xx answers: non-streaming / latency / streaming",
            lambda t, x: f"{x['errors_plain']} / {x['errors_latency']} / {x['errors_stream']}",
        ),
    ]
    rounds = int(meta.get("rounds", 0))
    if rounds:
        def per_round(kind, t, x):
            values = [float(x[f"round_{kind}_{i}"]) for i in range(1, rounds + 1)] if f"round_{kind}_1" in x else []
            if not values:
                return "–"
            scale = int(x["events"]) if kind == "stream" else 1
            return f"{scale * sorted(values)[len(values) // 2]:,.0f} (" + ", ".join(f"{scale * v:,.0f}" for v in values) + ")"
        lines.append(row(
            f"requests/s, non-streaming, median of {rounds} interleaved rounds (each round)",
            lambda t, x: per_round("chat", t, x)))
        lines.append(row(
            f"SSE events/s, median of {rounds} interleaved rounds (each round)",
            lambda t, x: per_round("stream", t, x)))
        lines.append(row(
            "non-2xx answers in the rounds",
            lambda t, x: " / ".join(x[f"round_{k}_errors_{i}"] for k in ("chat", "stream") for i in range(1, rounds + 1))
            if "round_chat_errors_1" in x else "–"))
    held_seconds = int(meta["stream_events_held"]) * int(meta["stream_delay_ms"]) / 1000

    def held_text(t, x):
        if "held" not in x:
            return "–"
        held = json.loads(x["held"])
        text = f"{held['completed']} of {held['streams']} completed, at most {held['peak_receiving_at_once']} receiving at once"
        if held["failed"]:
            text += "; failed: " + ", ".join(f"{n} × {reason}" for reason, n in held["failures"].items())
        if held["all_first_events_within_s"] is not None:
            text += f"; every first event within {held['all_first_events_within_s']:.2f} s"
        return text + f"; {held['wall_s']:.1f} s in all"

    def held_rss(t, x):
        if t != "gantry":
            return "–"
        held = json.loads(x["held"])
        text = f"{mib(held['rss_before_kib'])} before"
        if held["rss_held_max_kib"]:
            text += f", {mib(held['rss_held_max_kib'])} while receiving"
        return text + f", peak {mib(x['held_hwm_kib'])}"

    streams = meta["streams"]
    lines.append(row(
        f"{streams} concurrent streams ({meta['stream_events_held']} events {meta['stream_delay_ms']} ms apart, "
        f"~{held_seconds:.0f} s each)", held_text))
    lines.append(row(f"Gantry RSS with the {streams} streams", held_rss))
    if "llama" in results:
        direct = [float(v) for v in results["llama"]["direct"].split()]
        gantry = [float(v) for v in results["llama"]["gantry"].split()]
        md, mg = sum(direct) / len(direct), sum(gantry) / len(gantry)
        cells = {
            "direct": f"{md:.1f} tok/s ({', '.join(f'{v:.1f}' for v in direct)})",
            "gantry": f"{mg:.1f} tok/s ({', '.join(f'{v:.1f}' for v in gantry)}), {100 * mg / md:.1f} % of direct",
        }
        lines.append(row(
            f"llama-server tokens/s, SmolLM2-135M Q4_1, 1 thread, {meta['token_streams']} streams × "
            f"{meta['max_tokens']} max tokens, mean of {meta['token_runs']} runs",
            lambda t, x: cells.get(t, "–")))
    if rounds and "round_chat_1" in r.get("gantry", {}) and "round_chat_1" in r.get("nginx", {}):
        lines.append("")
        for kind, label in (("chat", "requests/s"), ("stream", "SSE events/s")):
            ratios = [
                100 * float(r["gantry"][f"round_{kind}_{i}"]) / float(r["nginx"][f"round_{kind}_{i}"])
                for i in range(1, rounds + 1)
            ]
            lines.append(
                f"Gantry's {label} as a share of nginx's, round by round: "
                + ", ".join(f"{v:.1f} %" for v in ratios) + f" (median {sorted(ratios)[len(ratios) // 2]:.1f} %)."
            )
    lines += relay_modes(results, rounds)
    return "\n".join(lines)


RELAY_TARGETS = (("gantry", "full (default)"), ("gantry_engine", "engine"), ("gantry_off", "off"))


def relay_modes(results, rounds):
    """The gateway.relay modes side by side, from the same interleaved rounds: each one's median
    and its share of nginx's figure round by round."""
    present = [(t, label) for t, label in RELAY_TARGETS if f"round_chat_1" in results.get(t, {})]
    if not rounds or len(present) < 2 or "round_chat_1" not in results.get("nginx", {}):
        return []
    nginx = results["nginx"]
    lines = [
        "",
        f"`gateway.relay`, side by side in the same {rounds} interleaved rounds (median; share of nginx's figure in the same round, median):",
        "",
        "| gateway.relay | requests/s, non-streaming | share of nginx | SSE events/s | share of nginx |",
        "|---|---|---|---|---|",
    ]
    for target, label in present:
        x = results[target]
        cells = []
        for kind in ("chat", "stream"):
            scale = int(x["events"]) if kind == "stream" else 1
            values = [scale * float(x[f"round_{kind}_{i}"]) for i in range(1, rounds + 1)]
            nscale = int(nginx["events"]) if kind == "stream" else 1
            shares = sorted(
                100 * values[i - 1] / (nscale * float(nginx[f"round_{kind}_{i}"])) for i in range(1, rounds + 1))
            cells += [f"{sorted(values)[len(values) // 2]:,.0f}", f"{shares[len(shares) // 2]:.1f} %"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def section(results, body):
    m = results["meta"]
    litellm_run = (
        f" and through LiteLLM {m['litellm_version']}'s proxy (2 workers, master key, {m['litellm_duration']} s runs)"
        if "litellm" in results else "")
    llama = (
        f" Last, llama.cpp's `llama-server` with the demo model (one thread, `--parallel {m['token_streams']}`), "
        f"started by hand and deployed by Gantry: {m['token_streams']} concurrent streams of up to {m['max_tokens']} "
        "tokens with `stream_options.include_usage`, tokens counted from each stream's final `usage`, runs "
        "interleaved." if "llama" in results else "")
    what = (
        "What it does: starts `gantry-fake-engine` (a fake OpenAI engine written on SwiftNIO: canned answers, "
        "16 content chunks per stream, far faster than any proxy in front of it) and sends the same load to it "
        f"directly, through nginx {m['nginx_version']} (reverse proxy, upstream keepalive, `proxy_buffering off`), "
        "through Gantry's gateway (release build, API keys on, a non-admin user's key with its own limits and a "
        "token quota, limits per service and per key on the service, usage records written, the fake engine deployed as "
        f"the `custom` engine){litellm_run}. wrk (one thread, 10 s timeout) posts a small chat body: "
        f"{m['connections']} connections for {m['duration']} s after a {m['warmup']} s warm-up, and one connection "
        "for latency; \"added\" is the proxy's figure minus the direct one. Time to first token is the p50 over "
        f"{m['ttft_requests']} sequential streamed requests on one connection (Python `http.client`). Peak RSS is "
        "`VmHWM`, summed over all processes for nginx and LiteLLM. "
        + (f"Because single runs on this shared machine drift by 10-15 % from one minute to the next, "
           f"{m['rounds']} more rounds then run the engine, nginx and Gantry back to back "
           f"({m['duration']} s each, non-streaming and streaming), and the shares of nginx's figures are "
           "taken round by round. " if "rounds" in m else "")
        + "Then "
        f"{m['streams']} concurrent streams (raw asyncio connections) go straight to a fake engine that spaces its "
        "events, and through Gantry to a second deployment of it, while Gantry's RSS is sampled." + llama)
    machine = (
        f"Machine: {m['cores']} cores ({m['cpu']}); wrk, the proxy and the engine share them. Gantry "
        f"{m['commit']}, {m['date']}; the whole run took {m['elapsed_s']} s.")
    wrap = lambda text: textwrap.fill(text, width=100, break_long_words=False, break_on_hyphens=False)
    command = f"`DURATION={m['duration']} CONNECTIONS={m['connections']} bash bench/gateway.sh`"
    heading = "## Gateway overhead, against nginx and LiteLLM (`bench/gateway.sh`)"
    return f"{heading}\n\n{wrap(what)}\n\n{wrap(machine)}\n{command}\n\n{body}\n"


def main():
    results = load(sys.argv[1])
    body = table(results)
    print()
    print(body)
    print()
    if len(sys.argv) > 2 and sys.argv[2] != "-":
        path = sys.argv[2]
        text = open(path).read()
        block = f"{START}\n{section(results, body)}{END}"
        if START in text and END in text:
            before, rest = text.split(START, 1)
            text = before + block + rest.split(END, 1)[1]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        with open(path, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
