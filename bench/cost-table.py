#!/usr/bin/env python3
"""Prints BENCHMARKS.md's per-stream cost table (issue 15) from the JSON that
bench/run.sh tls-5000 mux-10000 h1-5000 h1c-5000 mux-100000 leaves in
bench/out (or the directory given as the first argument): ssegate against
the floor server measured in the same run."""
import json
import os
import sys

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")
rows = [
    ("tls-5000", "5,000 own TLS connections (HTTP/2)"),
    ("mux-10000", "10,000 multiplexed (100 per connection)"),
    ("h1-5000", "5,000 HTTP/1.1 over TLS"),
    ("h1c-5000", "5,000 cleartext HTTP/1.1"),
    ("mux-100000", "100,000 multiplexed (200 per connection)"),
]
print("| scenario | floor RSS | ssegate RSS | ratio | heap, floor / ssegate | stacks, floor / ssegate | floor p99 | ssegate fan-out p99 | ratio | ssegate p99 from the change | CPU per event, ratio | delivered, ssegate / floor |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for key, name in rows:
    try:
        g = json.load(open(os.path.join(out, f"gateway-{key}.json")))
        f = json.load(open(os.path.join(out, f"floor-{key}.json")))
    except FileNotFoundError:
        print(f"| {name} | not run | | | | | | | | | | |")
        continue
    ratio = lambda a, b: f"×{a / b:.2f}"
    print(
        f"| {name} | {f['rss_per_stream_kb']:.1f} | {g['rss_per_stream_kb']:.1f} | **{ratio(g['rss_per_stream_kb'], f['rss_per_stream_kb'])}** "
        f"| {f['heap_per_stream_kb']:.1f} / {g['heap_per_stream_kb']:.1f} | {f['stack_per_stream_kb']:.2f} / {g['stack_per_stream_kb']:.2f} "
        f"| {f['latency_p99_ms']:,.0f} | {g['fanout_p99_ms']:,.0f} | **{ratio(g['fanout_p99_ms'], f['latency_p99_ms'])}** | {g['latency_p99_ms']:,.0f} "
        f"| {ratio(g['cpu_seconds_per_1k_events'], f['cpu_seconds_per_1k_events'])} "
        f"| {g['deliveries'] - g['deliveries_missing']:,} of {g['deliveries']:,} / {f['deliveries'] - f['deliveries_missing']:,} of {f['deliveries']:,} |"
    )
