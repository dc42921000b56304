#!/usr/bin/env bash
# Reproduces BENCHMARKS.md: each scenario against a fresh server pinned to
# CPU 0, with the load generator pinned to CPU 1. Output: bench/out/*.json
# and the tables on stdout.
#   bench/run.sh            all scenarios
#   bench/run.sh conn-5000  one (see the case list below)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/out
go build -o bench/out/ssegate ./cmd/ssegate
go build -o bench/out/ssebench ./cmd/ssebench
ulimit -n 20000

TOKEN=bench-nudge-token-0123456789
server_pid=""
stop_server() { if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=""; fi; }
trap stop_server EXIT

gateway() { # env... : a fresh gateway on CPU 0
  stop_server
  env SSEGATE_UPSTREAM_URL=http://127.0.0.1:8080 SSEGATE_CERT_DIR=bench/out/certs SSEGATE_LOG_LEVEL=warn \
      SSEGATE_NUDGE_TOKEN=$TOKEN SSEGATE_PPROF=true "$@" taskset -c 0 bench/out/ssegate &
  server_pid=$!
}
floor() { # a fresh floor server on CPU 0; flags: -floor-cleartext
  stop_server
  taskset -c 0 bench/out/ssebench -serve-floor 127.0.0.1:8444 -floor-metrics 127.0.0.1:9091 "$@" &
  server_pid=$!
  sleep 1
}
load() { # name, ssebench flags...
  local name=$1; shift
  echo "== $name"
  taskset -c 1 bench/out/ssebench "$@" -json > "bench/out/$name.json"
  taskset -c 1 true
  python3 -c "import json,sys; r=json.load(open('bench/out/$name.json')); print({k: r[k] for k in r if k in ('clients','connections','opened','failed','deliveries','deliveries_missing','latency_p50_ms','latency_p99_ms','latency_max_ms','fanout_p99_ms','rss_per_connection_kb','rss_per_stream_kb','heap_per_stream_kb','stack_per_stream_kb','cpu_seconds_per_1k_events','upstream_rps','direct_polling_rps','legacy_rps','regular_polls','nudged_polls','changes','rss_mb','rss_end_mb','goroutines','goroutines_end','open_fds','open_fds_end')})"
}
fleet_pids=""
stop_fleet() { for p in $fleet_pids; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; fleet_pids=""; redis-cli -p 6391 shutdown nosave >/dev/null 2>&1 || true; }
fleet() { # n, env...: n gateways on one Redis of their own (port 6391), all on CPU 0; sets FLEET_URLS
  local n=$1; shift
  stop_server; stop_fleet
  redis-server --bind 127.0.0.1 --port 6391 --save '' --appendonly no --daemonize yes >/dev/null
  local urls=""
  for i in $(seq 0 $((n - 1))); do
    env SSEGATE_UPSTREAM_URL=http://127.0.0.1:8080 SSEGATE_CERT_DIR=bench/out/certs SSEGATE_LOG_LEVEL=warn \
        SSEGATE_NUDGE_TOKEN=$TOKEN SSEGATE_REDIS_URL=redis://127.0.0.1:6391/0 \
        SSEGATE_LISTEN_ADDR=127.0.0.1:$((8443 + i * 10)) SSEGATE_METRICS_ADDR=127.0.0.1:$((9090 + i * 10)) "$@" \
        taskset -c 0 bench/out/ssegate &
    fleet_pids="$fleet_pids $!"
    urls="$urls${urls:+,}https://127.0.0.1:$((8443 + i * 10))/api/notifications"
  done
  FLEET_URLS=$urls
}
trap 'stop_server; stop_fleet' EXIT
floorload() { local name=$1; shift; load "$name" -floor -url https://127.0.0.1:8444/events -metrics http://127.0.0.1:9091/metrics "$@"; }

run() {
  case $1 in
  conn-1000|conn-5000|conn-15000)
    n=${1#conn-}
    gateway; load "gateway-$1" -clients "$n" -changes 5 -nudge-token $TOKEN
    floor;   floorload "floor-$1" -clients "$n" -changes 5 ;;
  # What a stream costs (issue 15), changes 2.5 s apart. ssegate's latency
  # from the change includes its nudged poll, which waits up to
  # SSEGATE_POLL_INTERVAL (2 s) since the key's last poll (thousands of
  # clients on one key earn a regular poll every interval); fanout_p99_ms,
  # from the upstream's answer to the client, is what compares with the
  # floor's p99.
  tls-5000)  # own TLS connections (HTTP/2), one stream each
    gateway; load "gateway-$1" -clients 5000 -changes 5 -pause 2500ms -nudge-token $TOKEN -timeout 120s
    floor;   floorload "floor-$1" -clients 5000 -changes 5 -pause 2500ms -timeout 120s ;;
  mux-10000)
    gateway; load "gateway-$1" -clients 10000 -mux -streams-per-conn 100 -changes 5 -pause 2500ms -nudge-token $TOKEN -timeout 120s
    floor;   floorload "floor-$1" -clients 10000 -mux -streams-per-conn 100 -changes 5 -pause 2500ms -timeout 120s ;;
  h1-5000)   # HTTP/1.1 over TLS, one connection per stream, as behind a load balancer
    gateway; load "gateway-$1" -clients 5000 -http1 -changes 5 -pause 2500ms -nudge-token $TOKEN -timeout 120s
    floor;   floorload "floor-$1" -clients 5000 -http1 -changes 5 -pause 2500ms -timeout 120s ;;
  h1c-5000)  # cleartext HTTP/1.1 (TLS ended at the balancer)
    gateway SSEGATE_H2C=true; load "gateway-$1" -url http://127.0.0.1:8443/api/notifications -clients 5000 -http1 -changes 5 -pause 2500ms -nudge-token $TOKEN -timeout 120s
    floor -floor-cleartext;   load "floor-$1" -floor -url http://127.0.0.1:8444/events -metrics http://127.0.0.1:9091/metrics -clients 5000 -http1 -changes 5 -pause 2500ms -timeout 120s ;;
  mux-100000)
    gateway; load "gateway-$1" -clients 100000 -mux -streams-per-conn 200 -changes 3 -pause 2500ms -nudge-token $TOKEN -timeout 120s
    floor;   floorload "floor-$1" -clients 100000 -mux -streams-per-conn 200 -changes 3 -pause 2500ms -timeout 120s ;;
  users-1000)   # 1,000 users on their own keys; changes for 50 users at a time
    gateway; load "gateway-users-1000-polling" -clients 1000 -users 1000 -changes 10 -change-users 50 -pause 5s -timeout 60s
    gateway; load "gateway-users-1000-nudged"  -clients 1000 -users 1000 -changes 10 -change-users 50 -pause 5s -nudge-token $TOKEN ;;
  users-1000-budget)   # the same under a budget below direct polling's 16.7 rps; 5 users change at a time
    gateway SSEGATE_UPSTREAM_MAX_RPS=10 SSEGATE_POLL_INTERVAL_MAX=60s
    load "gateway-users-1000-budget-polling" -clients 1000 -users 1000 -changes 3 -change-users 5 -pause 5s -timeout 150s
    gateway SSEGATE_UPSTREAM_MAX_RPS=10 SSEGATE_POLL_INTERVAL_MAX=60s
    load "gateway-users-1000-budget-nudged"  -clients 1000 -users 1000 -changes 10 -change-users 5 -pause 5s -nudge-token $TOKEN ;;
  contract-1000)   # the load contract: 1,000 users, one tab each, a change per user every 120 s, pages that polled every 60 s; defaults; warm-up of M + T so every key is steady
    gateway; load "gateway-contract-1000-polling" -steady -users 1000 -every 120s -legacy-interval 60s -warmup 180s -duration 3m
    gateway; load "gateway-contract-1000-nudged"  -steady -users 1000 -every 120s -legacy-interval 60s -warmup 180s -duration 3m -nudge-token $TOKEN ;;
  fleet-1|fleet-2|fleet-3)   # 3,000 clients of 30 users spread over n replicas on Redis; nudged changes; a short POLL_INTERVAL so a nudge never waits for the last poll to age, and a contract that leaves no regular poll in the window, so every poll counted is a change's
    n=${1#fleet-}
    fleet "$n" SSEGATE_POLL_INTERVAL=200ms SSEGATE_LEGACY_INTERVAL=24h; load "gateway-$1" -url "$FLEET_URLS" -clients 3000 -users 30 -changes 10 -pause 3s -nudge-token $TOKEN
    stop_fleet
    gateway SSEGATE_POLL_INTERVAL=200ms SSEGATE_LEGACY_INTERVAL=24h; load "gateway-$1-alone" -clients 3000 -users 30 -changes 10 -pause 3s -nudge-token $TOKEN ;;
  soak-15000)   # 15,000 clients for 10 minutes, a change every 30 s
    gateway; load "gateway-$1" -clients 15000 -changes 21 -pause 30s -nudge-token $TOKEN ;;
  *) echo "unknown scenario $1"; exit 2 ;;
  esac
  stop_server
}

if [ $# -eq 0 ]; then set -- conn-1000 conn-5000 conn-15000 tls-5000 mux-10000 h1-5000 h1c-5000 mux-100000 users-1000 users-1000-budget contract-1000 soak-15000; fi
for s in "$@"; do run "$s"; done
