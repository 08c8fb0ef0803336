#!/usr/bin/env python3
"""Turns the bench programs' JSON lines and latency samples into latest.json, latest.md
and (full mode, gnuplot) latest.png. Smoke mode also checks the figures are present."""
import argparse
import datetime
import json
import math
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


def machine_was_busy():
    """Something else used a core when the run began (1-minute load average above 1):
    the bench itself never runs before that reading."""
    try:
        return float(os.environ.get("BENCH_LOADAVG_BEFORE", "").split()[0]) > 1.0
    except (IndexError, ValueError):
        return True


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
        # A row can fail in some rounds (e.g. the h2 transport): the figures are the
        # medians over the rounds that measured them; "failed" only if every round failed.
        good = [r for r in runs if not r.get("failed")] or runs
        template = good[0]
        for key in template:
            if key in ("system", "round"):
                continue
            vals = [r.get(key) for r in good]
            if isinstance(template[key], dict):
                agg[key] = {k: median_of([v.get(k) for v in vals if v]) for k in template[key]}
            elif isinstance(template[key], str):
                agg[key] = template[key]
            else:
                agg[key] = median_of(vals)
        agg["rounds"] = runs
        out.append(agg)
    return out


def aggregate_by(lines, key):
    """Fan-out / scaling lines: one entry per (system, key value), every figure the
    median over the rounds, the per-round lines under "rounds"."""
    groups = {}
    for line in lines:
        groups.setdefault((line["system"], line[key]), []).append(line)
    out = []
    for (name, k), runs in groups.items():
        agg = {"system": name, key: k}
        for field in runs[0]:
            if field in ("system", "round", key):
                continue
            vals = [r.get(field) for r in runs]
            if isinstance(vals[0], dict):
                agg[field] = {x: median_of([v.get(x) for v in vals if v]) for x in vals[0]}
            elif isinstance(vals[0], str):
                agg[field] = vals[0]
            else:
                agg[field] = median_of(vals)
        agg["rounds"] = runs
        out.append(agg)
    out.sort(key=lambda a: a[key])
    return out


def systems_in_order(entries):
    seen = []
    for e in entries:
        if e["system"] not in seen:
            seen.append(e["system"])
    return seen


def row(s):
    if s.get("failed"):
        return [s["system"], f"failed: {s['failed']}"] + [""] * (len(HEADER) - 2)
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


def core_table(systems):
    out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for s in systems:
        out.append("| " + " | ".join(row(s)) + " |")
    return out


TRANSPORT_HEADER = ["transport row", "ping p50 / p99 µs", "publish→on_item p50 / p99 µs",
                    "mim_send→on_message p50 / p99 µs", "client CPU µs per blocking call "
                    "(getrusage / perf stat)", "client CPU µs per async publish (getrusage / "
                    "perf stat)", "sends/s", "server CPU µs per message (1 subscriber)",
                    "server CPU µs per publish (no subscriber)"]


def pair(d):
    d = d or {}
    return f"{fmt(d.get('p50'))} / {fmt(d.get('p99'))}"


def transport_table(systems):
    """The library once per transport build (issue 14): latency, client CPU and the
    server's CPU side by side."""
    rows = [s for s in systems if s["system"].startswith("mim (")]
    if not rows:
        return []
    out = ["| " + " | ".join(TRANSPORT_HEADER) + " |", "|" + "---|" * len(TRANSPORT_HEADER)]
    for s in rows:
        if s.get("failed"):
            cells = [s["system"], f"failed: {s['failed']}"] + [""] * (len(TRANSPORT_HEADER) - 2)
        else:
            cells = [s["system"], pair(s.get("ping")), pair(s.get("latency")),
                     pair(s.get("latency_send")),
                     f"{fmt(s.get('cpu_per_call_us'))} / {fmt(s.get('perf_cpu_per_call_us'))}",
                     f"{fmt(s.get('cpu_per_publish_us'))} / "
                     f"{fmt(s.get('perf_cpu_per_publish_us'))}",
                     fmt(s.get("sends_per_s")), fmt(s.get("server_cpu_per_msg_us")),
                     fmt(s.get("server_cpu_per_publish_us"))]
        out.append("| " + " | ".join(cells) + " |")
    return out


def ms(us):
    if us is None or us < 0:
        return "—"
    return f"{us / 1000:.2f}" if us < 100000 else f"{us / 1000:.0f}"


def fanout_table(doc):
    entries = doc.get("fanout") or []
    counts = sorted({e["subs"] for e in entries})
    if not entries:
        return []
    head = ["system"] + [f"{n:,} subscriber{'s' if n != 1 else ''} p50 / p99 ms"
                         for n in counts]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in systems_in_order(entries):
        cells = [name]
        for n in counts:
            e = next((x for x in entries if x["system"] == name and x["subs"] == n), None)
            if not e:
                cells.append("not run")
                continue
            lat = e.get("latency") or {}
            cell = f"{ms(lat.get('p50'))} / {ms(lat.get('p99'))}"
            if e.get("incomplete"):
                cell += f" ({e['incomplete']} of {e['messages']} timed out)"
            cells.append(cell)
        out.append("| " + " | ".join(cells) + " |")
    return out


def scaling_tables(doc):
    entries = doc.get("scaling") or []
    if not entries:
        return []
    counts = sorted({e["chats"] for e in entries})
    chats = lambda n: f"{n:,} chat{'s' if n != 1 else ''}"
    head = ["system"] + [f"{chats(n)} p50 / p99 µs" for n in counts]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    names = systems_in_order(entries)
    find = lambda name, n: next((x for x in entries if x["system"] == name and x["chats"] == n), None)
    for name in names:
        cells = [name]
        for n in counts:
            e = find(name, n)
            lat = (e or {}).get("latency") or {}
            cells.append(f"{fmt(lat.get('p50'))} / {fmt(lat.get('p99'))}" if e else "not run")
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    head = ["system"] + [f"{chats(n)}: KiB/session (RSS MiB)" for n in counts]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        cells = [name]
        for n in counts:
            e = find(name, n)
            if not e:
                cells.append("not run")
                continue
            per, rss = e.get("rss_client_per_session"), e.get("rss_client")
            cells.append(f"{per / 1024:.1f} ({rss / 1048576:.1f})" if per is not None and rss else "—")
        out.append("| " + " | ".join(cells) + " |")
    return out


def markdown(doc):
    m = doc["machine"]
    p = doc["params"]
    out = [f"# Benchmark results ({doc['mode']} run)", ""]
    out.append(f"Run {doc['date']} on {m['nproc']} × {m['cpu_model']} ({m['kernel']}); "
               f"load average before/after: {m['loadavg_before']} / {m['loadavg_after']}; "
               f"the whole run took {doc.get('wall_s', '?')} s. "
               f"Payload {p['payload']} B, "
               f"{p['warmup']} warm-up + {p['count']} timed round trips, "
               f"{p['tput']} messages for throughput (window {p['window']}), "
               f"{p['joins']} joins, {p['sessions']} idle sessions. Each figure is the median "
               f"of {p['rounds']} rounds (every round runs every system in turn; the "
               f"per-round values are in latest.json); the CDF pools all rounds.")
    out.append("")
    if m.get("busy", True):
        out.append("**The machine was busy** when this run began (1-minute load average "
                   "above 1: other work shared the 2 vCPUs), so absolute numbers are noisy; "
                   "compare systems within this table only, and rerun `make bench` on an "
                   "idle machine for real figures.")
    else:
        out.append("The machine was otherwise idle when the run began (1-minute load "
                   "average below 1); the bench itself keeps both vCPUs busy. Compare "
                   "systems within one run: absolute figures move between runs on this VM.")
    out.append("")
    pl = doc["placements"]
    out.append(f"## Same core: servers and clients pinned to CPU {pl['same']['server_cpu']} "
               f"(taskset)")
    out.append("")
    out += core_table(doc["systems"])
    out.append("")
    tt = transport_table(doc["systems"])
    if tt:
        out.append("### The library per transport, same core")
        out.append("")
        out += tt
        out.append("")
        out.append("Each transport row runs against its own fresh mim-local (the same "
                   "binary). Client CPU: every thread of the bench process, per timed "
                   "`mim_client_ping` (blocking unary call) and per pipelined "
                   "`mim_topic_publish_text_async` with nobody subscribed (window "
                   f"{p['window']}); getrusage around the timed loop, and `perf stat -e "
                   "task-clock` over two whole runs of different lengths (their difference "
                   "per op, so start-up cancels out; — when perf is unavailable). Server "
                   "CPU: mim-local's utime + stime (/proc/PID/stat, 10 ms ticks) over the "
                   "throughput run (publish + delivery to one subscriber) and over the "
                   "no-subscriber publishes.")
        out.append("")
    if doc.get("systems_split"):
        out.append(f"## Split cores: servers on CPU {pl['split']['server_cpu']}, clients on "
                   f"CPU {pl['split']['client_cpu']}")
        out.append("")
        out.append("Waking a thread on the other core costs ≈ 40–50 µs per hop on this VM "
                   "(/work/shared/BENCHMARKING.md), so one-in-flight latency usually rises "
                   "and throughput rises (two cores work).")
        out.append("")
        out += core_table(doc["systems_split"])
        out.append("")
        tt = transport_table(doc["systems_split"])
        if tt:
            out += tt
            out.append("")
    lib = doc["library"]
    out.append(f"Library size: `{lib['so']}` {lib['so_bytes']:,} B "
               f"({lib['so_stripped_bytes']:,} B stripped). mim-local RSS at the end of our "
               f"same-core run: {fmt(doc.get('mim_local_rss_end'))} B.")
    out.append("")
    out.append("What the columns mean:")
    out.append("- latency: publish → subscriber callback, 1 sender + 1 receiver (two "
               "clients/connections in one process), one message in flight. "
               "libmomento-im: `mim_topic_publish_text` → `on_item`; the Node SDK: "
               "`publish` → `onItem`; NATS: `natsConnection_Publish` (SendAsap) → callback; "
               "Redis: `PUBLISH` → message read by a receiver thread. raw gRPC ping: one "
               "unary `mim_client_ping` round trip (our transport's floor).")
    for key, title in (("systems", "same core"), ("systems_split", "split cores")):
        for s in doc.get(key) or []:
            if s.get("latency_send"):
                d = s["latency_send"]
                out.append(f"- {s['system']} `mim_send` → `on_message` (list push + publish "
                           f"of the envelope, full IM path), {title}: p50 {d['p50']} µs, "
                           f"p90 {d['p90']}, p99 {d['p99']}, max {d['max']}.")
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
               "RSS is page-granular; small per-item figures are approximate. This "
               "process has run the other phases first and reuses their freed heap, so "
               "the client figure reads low: the scaling table below measures it again in a "
               "fresh process.")
    out.append("")
    fo = fanout_table(doc)
    if fo:
        xp = pl[p["extra_placement"]]
        out.append(f"## Fan-out: one message to N subscribers (placement "
                   f"{p['extra_placement']}: server CPU {xp['server_cpu']}, publisher and "
                   f"subscriber processes CPU {xp['client_cpu']})")
        out.append("")
        out += fo
        out.append("")
        out.append(f"Time from just before the publish call until the last of the N "
                   f"subscribers has the message, one message in flight (the next is sent "
                   f"when all have it, or after a timeout: then it counts as timed out, not "
                   f"as a sample). The N subscribers are spread over "
                   f"{p['fanout_procs']} processes (fewer when N is smaller); each process "
                   f"reports, per message, the CLOCK_MONOTONIC time at which the last of its "
                   f"subscribers had it, and the publisher takes the maximum. Timed messages: "
                   f"{p['fanout_messages']} for 1 and 100 subscribers, "
                   f"{p['fanout_messages_big']} for 1,000 (Node SDK: "
                   f"{p.get('node_fanout_messages_big') or p['fanout_messages_big']}; with fewer "
                   f"than 100 samples p99 is the maximum), after "
                   f"10 warm-up messages; 100-byte payload carrying the sequence number and "
                   f"send time.")
        out.append("- libmomento-im: each subscriber is a topic subscription "
                   "(`mim_topic_subscribe`, one gRPC stream each), one `mim_client` per 100 "
                   "subscriptions in each process; published with `mim_topic_publish_text`.")
        out.append("- Node SDK: the same with one `TopicClient` per 100 subscriptions (the "
                   "SDK's limit per stream connection), published with `publish`.")
        out.append("- NATS: each subscriber is a subscription (the server sends one MSG per "
                   "subscription), one connection per 100 subscriptions, nats.c's global "
                   "delivery thread pool instead of one thread per subscription.")
        out.append("- Redis: each subscriber is a connection (a connection subscribed twice "
                   "to a channel gets a message once); each process polls its connections "
                   "in one thread.")
        out.append("")
    ft = footprint_table(doc)
    if ft:
        out.append("## Footprint per transport build (bench/footprint.sh)")
        out.append("")
        out += ft
        out.append("")
        out.append("A process linked against the build's libmomento-im.so holds one client "
                   "with one joined session against a fresh mim-local (plaintext, and TLS "
                   "with a throwaway self-signed certificate); the per-session figure is "
                   "the RSS growth over 100 more joined sessions, divided by 100.")
        out.append("")
    sc = scaling_tables(doc)
    if sc:
        out.append(f"## Scaling: one client holding 1 … 1,000 chats (placement "
                   f"{p['extra_placement']})")
        out.append("")
        out += sc
        out.append("")
        out.append(f"One client process holds N idle chats (after 10 warm-up ones), then "
                   f"the latency of {p['scale_count']} messages (after "
                   f"{p['scale_warmup']} warm-up, one in flight) is measured in one of them; "
                   f"KiB/session is the client's RSS growth over the N divided by N (page "
                   f"granular: at 1 chat it is mostly noise), RSS the client's total. "
                   f"libmomento-im: N `mim_join`ed chats, latency `mim_send` → `on_message` "
                   f"from a second client (list push + publish: compare with the "
                   f"`mim_send` figure above, not with the publish latency); Node SDK: N "
                   f"topic subscriptions on one `TopicClient` (stream connections = "
                   f"N/100 rounded up), `publish` → `onItem`; NATS: N subscriptions on "
                   f"distinct subjects on one connection; Redis: N channels subscribed on one "
                   f"connection; both publish → callback from a second connection.")
        out.append("")
    for note in doc.get("notes") or []:
        out.append(f"- {note}")
    if doc.get("notes"):
        out.append("")
    out.append("![latency CDF, throughput, fan-out, scaling](latest.png)")
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
             "grpc-ping": "raw gRPC ping"}
    for t, label in (("h2", "h2"), ("grpc", "grpc core")):
        names[f"libmomento-im@{t}"] = f"mim ({label}) publish→on_item"
        names[f"libmomento-im-send@{t}"] = f"mim ({label}) mim_send→on_message"
        names[f"grpc-ping@{t}"] = f"mim ({label}) ping"
    names.update({"node-sdk": "Node SDK", "nats": "NATS", "redis": "Redis"})
    for key, title in names.items():
        vals = []  # all same-core rounds pooled
        for rd in sorted(os.listdir(samples)):
            path = os.path.join(samples, rd, key + ".txt")
            if rd.startswith("same-") and os.path.exists(path):
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
    split = {s["system"]: s for s in doc.get("systems_split") or []}
    with open(bars, "w") as f:
        for i, s in enumerate(doc["systems"]):
            if s.get("sends_per_s"):
                name = s["system"].split(" (")[0]
                sp = split.get(s["system"], {}).get("sends_per_s") or 0
                f.write(f"{i} \"{name}\" {s['sends_per_s']} {s.get('recv_per_s', 0)} {sp}\n")
    # fan-out p99 and scaling p50, one data block per system
    def series(entries, key, field, path):
        titles = []
        with open(path, "w") as f:
            for name in systems_in_order(entries):
                pts = [(e[key], (e.get("latency") or {}).get(field)) for e in entries
                       if e["system"] == name]
                pts = [(x, y) for x, y in pts if y is not None and y > 0]
                if not pts:
                    continue
                for x, y in sorted(pts):
                    f.write(f"{x} {y}\n")
                f.write("\n\n")
                titles.append(name.split(" (")[0])
        return titles
    fo_dat = os.path.join(workdir, "fanout.dat")
    fo_titles = series(doc.get("fanout") or [], "subs", "p99", fo_dat)
    sc_dat = os.path.join(workdir, "scale.dat")
    sc_titles = series(doc.get("scaling") or [], "chats", "p50", sc_dat)
    script = [
        "set terminal pngcairo size 1400,1000 font ',10'" if _has_cairo(gp)
        else "set terminal png size 1400,1000",
        f"set output '{out_png}'",
        "set termoption noenhanced",
        "set multiplot layout 2,2",
        "set title 'publish → receive latency CDF, same core (µs, log scale)'",
        "set logscale x", "set xlabel 'µs'", "set ylabel 'fraction'", "set key bottom right",
        "set grid",
        "plot " + ", ".join(f"'{d}' using 1:2 with lines lw 2 title '{t}'" for d, t in curves),
        "unset logscale x", "set logscale y",
        "set title 'throughput (messages/s, log scale)'", "set xlabel ''", "set ylabel 'msg/s'",
        "set style data histogram", "set style histogram clustered gap 1",
        "set style fill solid 0.8 border -1", "set xtics rotate by -20", "set key top right",
        "set yrange [100:*]",
        f"plot '{bars}' using 3:xtic(2) title 'sends/s same core', '' using 4 title "
        f"'received/s same core', '' using 5 title 'sends/s split cores'",
        "set style data linespoints", "unset xtics", "set xtics", "set xtics norotate",
        "set yrange [*:*]", "set logscale xy", "set key top left",
    ]
    if fo_titles:
        script += [
            "set title 'fan-out: p99 until the last subscriber has it (µs)'",
            "set xlabel 'subscribers'", "set ylabel 'µs'",
            "plot " + ", ".join(f"'{fo_dat}' index {i} using 1:2 with linespoints lw 2 "
                                f"title '{t}'" for i, t in enumerate(fo_titles)),
        ]
    if sc_titles:
        script += [
            "set title 'scaling: p50 latency in one chat while holding N chats (µs)'",
            "set xlabel 'chats held by the client'", "set ylabel 'µs'",
            "plot " + ", ".join(f"'{sc_dat}' index {i} using 1:2 with linespoints lw 2 "
                                f"title '{t}'" for i, t in enumerate(sc_titles)),
        ]
    script.append("unset multiplot")
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
              "client-cpu", "split-client-cpu", "mim-local-rss-end", "placements",
              "extra-placement", "fanout-subs", "chats", "node-fanout-subs", "node-chats",
              "node-fanout-messages-big", "footprint"]:
        ap.add_argument("--" + a)
    for a in ["payload", "count", "warmup", "tput", "window", "joins", "sessions", "rounds",
              "fanout-procs", "fanout-messages", "fanout-messages-big", "scale-count",
              "scale-warmup", "wall-s"]:
        ap.add_argument("--" + a, type=int)
    ap.add_argument("--loadavg-before", default=None)
    a = ap.parse_args()
    lines = []
    with open(a.results) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                lines.append(json.loads(line))
    placements = (a.placements or "same").split()
    core = {pl: aggregate([x for x in lines if "kind" not in x and x.get("placement") == pl])
            for pl in placements}
    split_cpu = {"same": a.client_cpu, "split": a.split_client_cpu}
    ints = lambda v: [int(x) for x in (v or "").split()]
    doc = {
        "mode": a.mode,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "wall_s": a.wall_s,
        "machine": {"nproc": os.cpu_count(), "cpu_model": cpu_model(),
                    "kernel": platform.platform(),
                    "loadavg_before": os.environ.get("BENCH_LOADAVG_BEFORE", "?"),
                    "loadavg_after": loadavg(), "busy": machine_was_busy()},
        "placements": {pl: {"server_cpu": a.server_cpu, "client_cpu": split_cpu[pl],
                            "pinning": f"taskset -c {a.server_cpu} (servers), taskset -c "
                                       f"{split_cpu[pl]} (clients)"}
                       for pl in ("same", "split")},
        "params": {"server_cpu": a.server_cpu, "client_cpu": a.client_cpu,
                   "split_client_cpu": a.split_client_cpu, "placements_run": placements,
                   "extra_placement": a.extra_placement,
                   "pinning": f"taskset -c {a.server_cpu} (servers), taskset -c "
                              f"{a.client_cpu} (clients)",
                   "payload": a.payload, "count": a.count, "warmup": a.warmup,
                   "tput": a.tput, "window": a.window, "joins": a.joins,
                   "sessions": a.sessions, "rounds": a.rounds,
                   "fanout_procs": a.fanout_procs, "fanout_subs": ints(a.fanout_subs),
                   "node_fanout_subs": ints(a.node_fanout_subs),
                   "fanout_messages": a.fanout_messages,
                   "fanout_messages_big": a.fanout_messages_big,
                   "node_fanout_messages_big": int(a.node_fanout_messages_big)
                   if a.node_fanout_messages_big else None,
                   "chats": ints(a.chats), "node_chats": ints(a.node_chats),
                   "scale_count": a.scale_count, "scale_warmup": a.scale_warmup},
        "library": {"so": os.path.basename(a.so), "so_bytes": os.path.getsize(a.so),
                    "so_stripped_bytes": os.path.getsize(a.so_stripped)},
        "mim_local_rss_end": int(a.mim_local_rss_end) if a.mim_local_rss_end else None,
        "systems": core.get("same", []),
        "systems_split": core.get("split", []),
        "fanout": aggregate_by([x for x in lines if x.get("kind") == "fanout"], "subs"),
        "scaling": aggregate_by([x for x in lines if x.get("kind") == "scale"], "chats"),
    }
    doc["footprint"] = read_footprints(a.footprint)
    doc["notes"] = missing_notes(doc)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "latest.json"), "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    with open(os.path.join(a.out, "latest.md"), "w") as f:
        f.write(markdown(doc))
    if a.mode == "full":
        plot(doc, a.samples, os.path.abspath(os.path.join(a.out, "latest.png")),
             os.path.dirname(a.samples))
    text = markdown(doc)
    print(text[text.index("## Same core"):text.index("Library size")], file=sys.stderr)
    if a.mode == "smoke":
        return smoke_check(doc)
    return 0


def read_footprints(arg):
    """ "transport=path.json ..." (bench/footprint.sh's output per transport build) →
    {row name: doc}."""
    rows = {"h2": "mim (h2)", "grpc": "mim (grpc core)"}
    out = {}
    for item in (arg or "").split():
        name, _, path = item.partition("=")
        try:
            with open(path) as f:
                out[rows.get(name, name)] = json.load(f)
        except (OSError, ValueError):
            pass
    return out


def footprint_table(doc):
    fp = doc.get("footprint") or {}
    if not fp:
        return []
    names = list(fp)
    mib = lambda kib: f"{kib / 1024:.1f} MiB"
    lines = [
        ("shared libraries loaded by libmomento-im.so (ldd)",
         lambda f: f"{f['shared_libraries']} ({f['shared_libraries_bytes'] / 1048576:.1f} MiB)"),
        ("libstdc++ / libgrpc / libcurl among them",
         lambda f: " / ".join("yes" if f[k] else "no" for k in ("libstdcxx", "libgrpc", "libcurl"))),
        ("RSS, 1 client + 1 joined session, plaintext", lambda f: mib(f["plaintext"]["rss_one_session_kib"])),
        ("RSS, 1 client + 1 joined session, TLS", lambda f: mib(f["tls"]["rss_one_session_kib"])),
        ("threads (plaintext / TLS)", lambda f: f"{f['plaintext']['threads_one_session']} / "
                                                f"{f['tls']['threads_one_session']}"),
        ("RSS per idle joined session (plaintext / TLS)",
         lambda f: f"{f['plaintext']['rss_per_session_bytes'] / 1024:.1f} / "
                   f"{f['tls']['rss_per_session_bytes'] / 1024:.1f} KiB"),
    ]
    out = ["| footprint | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    for title, fn in lines:
        out.append(f"| {title} | " + " | ".join(fn(fp[n]) for n in names) + " |")
    return out


def missing_notes(doc):
    """Says which requested fan-out / scaling figure produced no line (a failed run)."""
    p = doc["params"]
    notes = []
    for kind, key, want, node_want in (("fanout", "subs", p["fanout_subs"], p["node_fanout_subs"]),
                                       ("scaling", "chats", p["chats"], p["node_chats"])):
        have = {(e["system"], e[key]) for e in doc[kind]}
        for name in systems_in_order(doc[kind]):
            for n in (node_want if name.startswith("Node SDK") else want):
                if (name, n) not in have:
                    notes.append(f"{kind} {n} {key}: no result for {name} (it failed; "
                                 f"see the run's log)")
    return notes


def smoke_check(doc):
    """The smoke run passes when both our systems reported every figure."""
    by = {s["system"]: s for s in doc["systems"]}
    # The one transport row the smoke measures (the given build), named by its transport.
    mim = next((s["system"] for s in doc["systems"] if s["system"].startswith("mim (")), "mim")
    ok = fail = 0
    checks = [
        ("mim row named by transport", lambda: mim in ("mim (h2)", "mim (grpc core)")
         and not by[mim].get("failed")),
        ("libmomento-im latency", lambda: by[mim]["latency"]["n"] == doc["params"]["count"]),
        ("libmomento-im mim_send latency", lambda: by[mim]["latency_send"]["n"] == doc["params"]["count"]),
        ("libmomento-im throughput", lambda: by[mim]["received"] == doc["params"]["tput"]
         and by[mim]["sends_per_s"] > 0),
        ("libmomento-im join", lambda: by[mim]["join"]["n"] == doc["params"]["joins"]),
        # RSS moves by pages and glibc may return freed heap meanwhile: with the smoke's
        # 20 sessions the growth can even be negative, so only check that it was measured.
        ("libmomento-im memory", lambda: math.isfinite(by[mim]["rss_client_per_session"])),
        ("ping", lambda: by[mim]["ping"]["n"] == doc["params"]["count"]),
        ("client CPU per call and per publish", lambda: by[mim]["cpu_per_call_us"] > 0
         and by[mim]["cpu_per_publish_us"] > 0),
        # 10 ms ticks: a smoke-sized run may see none, so only check it was read.
        ("server CPU per message", lambda: by[mim]["server_cpu_per_msg_us"] >= 0),
        ("library size", lambda: doc["library"]["so_bytes"] > 0),
        ("placements recorded", lambda: doc["placements"]["same"]["client_cpu"] is not None
         and all(s["rounds"][0]["placement"] == "same" for s in doc["systems"])),
    ]
    if "split" in doc["params"]["placements_run"]:
        split = {s["system"]: s for s in doc["systems_split"]}
        checks.append(("split placement latency", lambda: split[mim]["latency"]["n"]
                       == doc["params"]["count"] and split[mim]["ping"]["n"]
                       == doc["params"]["count"]))
    fan = {e["subs"]: e for e in doc["fanout"] if e["system"] == mim}
    for n in doc["params"]["fanout_subs"]:
        checks.append((f"fan-out to {n}", lambda n=n: fan[n]["incomplete"] == 0
                       and fan[n]["latency"]["n"] == fan[n]["messages"]
                       and 0 < fan[n]["latency"]["p50"] <= fan[n]["latency"]["p99"]))
    sc = {e["chats"]: e for e in doc["scaling"] if e["system"] == mim}
    for n in doc["params"]["chats"]:
        checks.append((f"scaling {n} chats", lambda n=n: sc[n]["latency"]["n"]
                       == doc["params"]["scale_count"] and sc[n]["rss_client"] > 0
                       and "rss_client_per_session" in sc[n]))
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
