#!/usr/bin/env python3
"""Writes the Markdown comparison of bench/compare.sh's raw data (one directory per side and round)."""
import json
import os
import re
import statistics
import sys

data = sys.argv[1]
meta = dict(line.rstrip("\n").split(" ", 1) for line in open(os.path.join(data, "meta.txt")))
rounds = int(meta["rounds"])
sides = ("before", "after")


def read(side, rnd, name):
    path = os.path.join(data, f"{side}-{rnd}", name)
    return open(path).read() if os.path.exists(path) else None


# home-throughput: the same quantities under both commits' wording.
HOME = [
    ("delegated full handshakes/s (chain verdicts cached)", "higher",
     r"delegated full handshakes with the home card \(SoftHSM2\)(?:: |, per wall-clock second: chain verdicts cached )([\d.]+)/s"),
    ("ECDSA P-256 signatures/s through the home card", "higher", r"signatures through the home card: ([\d.]+)/s"),
    ("payments/s (durable commit + token signature)", "higher", r"payments with durable commits and a token signature: ([\d.]+)/s"),
    ("record layer download, resumed Daiko.Tls MB/s", "higher", r"download resumed Daiko\.Tls ([\d.]+) MB/s"),
    ("record layer upload, resumed Daiko.Tls MB/s", "higher", r"upload resumed Daiko\.Tls ([\d.]+) MB/s"),
    ("keep-alive GET p50 ms, direct Daiko.Tls", "lower", r"direct Daiko\.Tls p50 ([\d.]+) ms"),
    ("keep-alive GET p50 ms, relay", "lower", r"relay p50 ([\d.]+) ms"),
    ("keep-alive GET p50 ms, handoff", "lower", r"handoff p50 ([\d.]+) ms"),
]
# Peers whose code did not change: they show whether both sides saw the same machine.
PEERS = [
    ("openssl s_time -new, connections per user-CPU second", "higher",
     r"openssl s_time -new \(software key\): ([\d.]+)/s|count over its user CPU seconds: ([\d.]+)/s"),
    ("raw C_Sign on the same SoftHSM2 token /s", "higher", r"raw Pkcs11Interop C_Sign on the same SoftHSM2 token: ([\d.]+)/s"),
    ("plain SQLite insert-and-commit /s", "higher", r"plain SQLite insert-and-commit: ([\d.]+)/s"),
    ("record layer download, SslStream MB/s", "higher", r"download resumed Daiko\.Tls [\d.]+ MB/s, SslStream ([\d.]+) MB/s"),
]


# Daiko against its peer measured in the same run: the load both saw cancels out of these.
RATIOS = [
    ("delegated full handshakes / SslStream full handshakes", 0, 1, "higher"),
    ("home-card signatures / raw C_Sign", 2, 3, "higher"),
    ("payments / plain SQLite insert-and-commit", 4, 5, "higher"),
    ("record download Daiko.Tls / SslStream", 6, 7, "higher"),
]
PAIRS = [HOME[0][2], r"SslStream full handshakes[^:]*: ([\d.]+)/s", HOME[1][2], PEERS[1][2], HOME[2][2], PEERS[2][2], HOME[3][2], PEERS[3][2]]


def one(side, rnd, pattern):
    text = read(side, rnd, "home-throughput.md")
    m = re.search(pattern, text) if text else None
    return float(next(g for g in m.groups() if g is not None)) if m else None


def home_values(pattern):
    values = {s: [] for s in sides}
    for s in sides:
        for r in range(1, rounds + 1):
            v = one(s, r, pattern)
            if v is not None:
                values[s].append(v)
    return values


def ratio_values(numerator, denominator):
    values = {s: [] for s in sides}
    for s in sides:
        for r in range(1, rounds + 1):
            a, b = one(s, r, PAIRS[numerator]), one(s, r, PAIRS[denominator])
            if a is not None and b:
                values[s].append(a / b)
    return values


def terminal_values():
    table = {}
    for s in sides:
        for r in range(1, rounds + 1):
            text = read(s, r, "terminal-cost.json")
            if not text:
                continue
            for row in json.loads(text)["results"]:
                for metric in ("cpu_ms", "first_byte_ms", "bytes_sent", "bytes_received", "public_key_ops"):
                    try:
                        median = float(row[metric]["Median"])
                    except (TypeError, ValueError):
                        continue
                    if median != median:
                        continue
                    table.setdefault((row["way"], row["session"], metric), {x: [] for x in sides})[s].append(median)
    return table


def fmt(x):
    return "–" if x is None else (f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}")


def row(name, better, values):
    med = {s: statistics.median(values[s]) if values[s] else None for s in sides}
    ratio = med["after"] / med["before"] if med["before"] and med["after"] is not None else None
    if ratio is None:
        verdict = ""
    elif abs(ratio - 1) < 0.10:
        verdict = "same (within 10 %)"
    else:
        improved = ratio > 1 if better == "higher" else ratio < 1
        verdict = "better" if improved else "worse"
    per_round = lambda s: ", ".join(fmt(v) for v in values[s])
    return f"| {name} | {per_round('before')} | {per_round('after')} | {fmt(med['before'])} | {fmt(med['after'])} | {'–' if ratio is None else f'{ratio:.2f}'} | {verdict} |"


HEAD = "| quantity | before, per round | after, per round | before median | after median | after/before | |\n|---|---|---|---|---|---|---|"

print("# The redesign against the commit before it, one interleaved run\n")
print(f"- before: `{meta['before']}`")
print(f"- after: `{meta['after']}`")
print(f"- {rounds} rounds, run before, after, before, after, …; terminal-cost with {meta['runs']} runs per way, "
      f"home-throughput full length; {meta['cores']} cores shared with other builds and tests.")
print("- Each cell is one run's median (terminal-cost) or rate (home-throughput); the medians are over the rounds.\n")

print("## Load average (1, 5, 15 min) and wall time of each run\n")
print("| round | side | load at start | load at end | seconds | failures |\n|---|---|---|---|---|---|")
for r in range(1, rounds + 1):
    for s in sides:
        failures = (read(s, r, "failures.txt") or "").strip().replace("\n", "; ")
        print(f"| {r} | {s} | {(read(s, r, 'load-start.txt') or '').strip()} | {(read(s, r, 'load-end.txt') or '').strip()} | "
              f"{(read(s, r, 'seconds.txt') or '').strip()} | {failures} |")

print("\n## home-throughput\n")
print(HEAD)
for name, better, pattern in HOME:
    print(row(name, better, home_values(pattern)))
print("\nDaiko over its peer in the same run (the load of that moment cancels out):\n")
print(HEAD)
for name, a, b, better in RATIOS:
    print(row(name, better, ratio_values(a, b)))
print("\nPeers whose code is the same on both sides (they show whether both sides saw the same machine):\n")
print(HEAD)
for name, better, pattern in PEERS:
    print(row(name, better, home_values(pattern)))

print("\n## terminal-cost (ways both commits measure)\n")
print("CPU is the terminal's own; first byte from the terminal's first action, over the emulated 100 ms / 1000 kbit/s link.\n")
print(HEAD)
table = terminal_values()
names = {"cpu_ms": "CPU ms", "first_byte_ms": "first byte ms", "bytes_sent": "bytes sent", "bytes_received": "bytes received",
         "public_key_ops": "public-key ops"}
for (way, session, metric), values in table.items():
    if values["before"] and values["after"]:
        print(row(f"{way} ({session}): {names[metric]}", "lower", values))
