#!/usr/bin/env python3
"""Turns the bench programs' JSON lines and latency samples into latest.json, latest.md
and (full mode, gnuplot) latest.png. Smoke mode also checks the figures are present."""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def fmt(v, unit=""):
    if v is None or (isinstance(v, (int, float)) and v < 0):
        return "—"
    if isinstance(v, float) and v >= 100:
        v = round(v)
    return f"{v:,}{unit}" if isinstance(v, int) else f"{v}{unit}"


def median_of(values):
    """Median of numbers (None/negative = not measured are left out unless all are)."""
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    good = [v for v in nums if v >= 0]
    if not nums:
        return values[0]
    m = statistics.median(good or nums)
    return round(m, 1) if isinstance(m, float) else m


def aggregate(lines):
    """One entry per system: each figure is the median over the rounds; the per-round
    values are kept under "rounds"."""
    by = {}
    for line in lines:
        by.setdefault(line["system"], []).append(line)
    out = []
    for name, runs in by.items():
        agg = {"system": name}
        for key in runs[0]:
            if key in ("system", "round"):
                continue
            vals = [r.get(key) for r in runs]
            if isinstance(vals[0], dict):
                agg[key] = {k: median_of([v.get(k) for v in vals if v]) for k in vals[0]}
            else:
                agg[key] = median_of(vals)
        agg["rounds"] = runs
        out.append(agg)
    return out


def row(s):
    lat = s.get("latency") or {}
    join = s.get("join") or {}
    kib = lambda b: "—" if b is None or b < 0 else f"{b / 1024:.1f}"
    return [
        s["system"],
        fmt(lat.get("p50")), fmt(lat.get("p90")), fmt(lat.get("p99")), fmt(lat.get("max")),
        fmt(s.get("sends_per_s")), fmt(s.get("recv_per_s")),
        fmt(join.get("p50")), fmt(join.get("p99")),
        kib(s.get("rss_client_per_session")), kib(s.get("rss_server_per_sub")),
    ]


HEADER = ["system", "latency p50 µs", "p90", "p99", "max", "sends/s", "received/s",
          "join p50 µs", "join p99", "client KiB/session", "server KiB/sub"]


def markdown(doc):
    m = doc["machine"]
    p = doc["params"]
    out = [f"# Benchmark results ({doc['mode']} run)", ""]
    out.append(f"Run {doc['date']} on {m['nproc']} × {m['cpu_model']} ({m['kernel']}); "
               f"load average before/after: {m['loadavg_before']} / {m['loadavg_after']}. "
               f"Placement: servers pinned to CPU {p['server_cpu']}, clients to CPU "
               f"{p['client_cpu']} (taskset). Payload {p['payload']} B, "
               f"{p['warmup']} warm-up + {p['count']} timed round trips, "
               f"{p['tput']} messages for throughput (window {p['window']}), "
               f"{p['joins']} joins, {p['sessions']} idle sessions. Each figure is the median "
               f"of {p['rounds']} rounds (every round runs every system in turn; the "
               f"per-round values are in latest.json); the CDF pools all rounds.")
    out.append("")
    out.append("**The machine was busy**: other engineers were building and testing in the "
               "same 2-vCPU VM during this run, so absolute numbers are noisy; compare "
               "systems within this table only, and rerun `make bench` on an idle machine "
               "for real figures.")
    out.append("")
    out.append("| " + " | ".join(HEADER) + " |")
    out.append("|" + "---|" * len(HEADER))
    for s in doc["systems"]:
        out.append("| " + " | ".join(row(s)) + " |")
    out.append("")
    lib = doc["library"]
    out.append(f"Library size: `{lib['so']}` {lib['so_bytes']:,} B "
               f"({lib['so_stripped_bytes']:,} B stripped). mim-local RSS at the end of our "
               f"run: {fmt(doc.get('mim_local_rss_end'))} B.")
    out.append("")
    out.append("What the columns mean:")
    out.append("- latency: publish → subscriber callback, 1 sender + 1 receiver (two "
               "clients/connections in one process), one message in flight. "
               "libmomento-im: `mim_topic_publish_text` → `on_item`; the Node SDK: "
               "`publish` → `onItem`; NATS: `natsConnection_Publish` (SendAsap) → callback; "
               "Redis: `PUBLISH` → message read by a receiver thread. raw gRPC ping: one "
               "unary `mim_client_ping` round trip (our transport's floor).")
    for s in doc["systems"]:
        if s.get("latency_send"):
            d = s["latency_send"]
            out.append(f"- {s['system']} `mim_send` → `on_message` (list push + publish of "
                       f"the envelope, full IM path): p50 {d['p50']} µs, p90 {d['p90']}, "
                       f"p99 {d['p99']}, max {d['max']}.")
    out.append("- sends/s: one client, async publishes with up to `window` in flight "
               "(NATS: buffered publishes + one flush; it has no publish reply); received/s: "
               "messages counted at one subscriber / time from the first send to the last "
               "arrival.")
    for s in doc["systems"]:
        if s.get("tput_messages") and s["tput_messages"] != doc["params"]["tput"]:
            out.append(f"  - {s['system']}: throughput measured over {s['tput_messages']:,} "
                       f"messages (it is slow; keeps the run short).")
    out.append("- join: libmomento-im `mim_join` of a chat whose history holds 100 messages "
               "(subscribe, confirmation, list fetch, 100 callbacks); Node SDK: `subscribe` + "
               "`listFetch` of 100; Redis: `SUBSCRIBE` (confirmed) + `LRANGE 0 -1` of 100 on "
               "open connections. NATS core has no history (—).")
    out.append("- memory: RSS growth divided by the count of idle subscriptions opened on "
               "one client (libmomento-im: joined sessions on distinct chats; NATS/Redis: "
               "subscriptions on one connection), and the same for the server process. "
               "RSS is page-granular; small per-item figures are approximate.")
    out.append("")
    out.append("Not measured yet (later versions): fan-out to 1/100/1,000 subscribers, "
               "latency and memory at 1/10/100/1,000 chats, split-core placement.")
    out.append("")
    out.append("![latency CDF and throughput](latest.png)")
    out.append("")
    notes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "analysis.md")
    if doc["mode"] == "full" and os.path.exists(notes):
        with open(notes) as f:
            out.append(f.read())
    return "\n".join(out)


def plot(doc, samples, out_png, workdir):
    gp = shutil.which("gnuplot")
    if not gp:
        print("bench: gnuplot not found, no plot", file=sys.stderr)
        return False
    curves = []
    names = {"libmomento-im": "libmomento-im (publish→on_item)",
             "libmomento-im-send": "libmomento-im (mim_send→on_message)",
             "grpc-ping": "raw gRPC ping", "node-sdk": "Node SDK",
             "nats": "NATS", "redis": "Redis"}
    for key, title in names.items():
        vals = []  # all rounds pooled
        for rd in sorted(os.listdir(samples)):
            path = os.path.join(samples, rd, key + ".txt")
            if os.path.exists(path):
                with open(path) as f:
                    vals += [float(x) for x in f if x.strip()]
        vals.sort()
        if not vals:
            continue
        dat = os.path.join(workdir, key + ".cdf")
        with open(dat, "w") as f:
            for i, v in enumerate(vals):
                f.write(f"{v} {(i + 1) / len(vals)}\n")
        curves.append((dat, title))
    bars = os.path.join(workdir, "tput.dat")
    with open(bars, "w") as f:
        for i, s in enumerate(doc["systems"]):
            if s.get("sends_per_s"):
                name = s["system"].split(" (")[0]
                f.write(f"{i} \"{name}\" {s['sends_per_s']} {s.get('recv_per_s', 0)}\n")
    script = [
        "set terminal pngcairo size 1400,600 font ',10'" if _has_cairo(gp)
        else "set terminal png size 1400,600",
        f"set output '{out_png}'",
        "set termoption noenhanced",
        "set multiplot layout 1,2",
        "set title 'publish → receive latency CDF (µs, log scale)'",
        "set logscale x", "set xlabel 'µs'", "set ylabel 'fraction'", "set key bottom right",
        "set grid",
        "plot " + ", ".join(f"'{d}' using 1:2 with lines lw 2 title '{t}'" for d, t in curves),
        "unset logscale x", "set logscale y",
        "set title 'throughput (messages/s, log scale)'", "set xlabel ''", "set ylabel 'msg/s'",
        "set style data histogram", "set style histogram clustered gap 1",
        "set style fill solid 0.8 border -1", "set xtics rotate by -20", "set key top right",
        "set yrange [100:*]",
        f"plot '{bars}' using 3:xtic(2) title 'sends/s', '' using 4 title 'received/s'",
        "unset multiplot",
    ]
    r = subprocess.run([gp], input="\n".join(script), text=True, capture_output=True)
    if r.returncode != 0:
        print("bench: gnuplot failed: " + r.stderr, file=sys.stderr)
        return False
    return True


def _has_cairo(gp):
    r = subprocess.run([gp, "-e", "set terminal"], text=True, capture_output=True)
    return "pngcairo" in (r.stdout + r.stderr)


def main():
    ap = argparse.ArgumentParser()
    for a in ["mode", "results", "samples", "out", "so", "so-stripped", "server-cpu",
              "client-cpu", "mim-local-rss-end"]:
        ap.add_argument("--" + a)
    for a in ["payload", "count", "warmup", "tput", "window", "joins", "sessions", "rounds"]:
        ap.add_argument("--" + a, type=int)
    ap.add_argument("--loadavg-before", default=None)
    a = ap.parse_args()
    systems = []
    with open(a.results) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                systems.append(json.loads(line))
    systems = aggregate(systems)
    doc = {
        "mode": a.mode,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "machine": {"nproc": os.cpu_count(), "cpu_model": cpu_model(),
                    "kernel": platform.platform(),
                    "loadavg_before": os.environ.get("BENCH_LOADAVG_BEFORE", "?"),
                    "loadavg_after": loadavg(), "busy": True},
        "params": {"server_cpu": a.server_cpu, "client_cpu": a.client_cpu,
                   "pinning": f"taskset -c {a.server_cpu} (servers), taskset -c "
                              f"{a.client_cpu} (clients)",
                   "payload": a.payload, "count": a.count, "warmup": a.warmup,
                   "tput": a.tput, "window": a.window, "joins": a.joins,
                   "sessions": a.sessions, "rounds": a.rounds},
        "library": {"so": os.path.basename(a.so), "so_bytes": os.path.getsize(a.so),
                    "so_stripped_bytes": os.path.getsize(a.so_stripped)},
        "mim_local_rss_end": int(a.mim_local_rss_end) if a.mim_local_rss_end else None,
        "systems": systems,
        "not_measured": ["fan-out 1/100/1000", "scaling 1/10/100/1000 chats",
                         "split-core placement"],
    }
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "latest.json"), "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    with open(os.path.join(a.out, "latest.md"), "w") as f:
        f.write(markdown(doc))
    if a.mode == "full":
        plot(doc, a.samples, os.path.abspath(os.path.join(a.out, "latest.png")),
             os.path.dirname(a.samples))
    print(markdown(doc).split("\n\n")[3], file=sys.stderr)  # the table
    if a.mode == "smoke":
        return smoke_check(doc)
    return 0


def smoke_check(doc):
    """The smoke run passes when both our systems reported every figure."""
    by = {s["system"]: s for s in doc["systems"]}
    ok = fail = 0
    checks = [
        ("libmomento-im latency", lambda: by["libmomento-im"]["latency"]["n"] == doc["params"]["count"]),
        ("libmomento-im mim_send latency", lambda: by["libmomento-im"]["latency_send"]["n"] == doc["params"]["count"]),
        ("libmomento-im throughput", lambda: by["libmomento-im"]["received"] == doc["params"]["tput"]
         and by["libmomento-im"]["sends_per_s"] > 0),
        ("libmomento-im join", lambda: by["libmomento-im"]["join"]["n"] == doc["params"]["joins"]),
        ("libmomento-im memory", lambda: by["libmomento-im"]["rss_client_per_session"] >= 0),
        ("raw gRPC ping", lambda: by["raw gRPC ping"]["latency"]["n"] == doc["params"]["count"]),
        ("library size", lambda: doc["library"]["so_bytes"] > 0),
    ]
    for name, fn in checks:
        try:
            good = bool(fn())
        except (KeyError, TypeError):
            good = False
        print(("ok   " if good else "FAIL ") + name, file=sys.stderr)
        ok += good
        fail += not good
    print(f"bench-smoke: {ok} passed, {fail} failed")
    return 1 if fail else 0


if __name__ == "__main__":
    sys.exit(main())
