#!/usr/bin/env bash
# Fan-out benchmark: EmoStream's broadcaster beside Bun's server.publish, a plain Node `ws`
# broadcaster and warp's own ws() (benches/fanout/warp_ws.rs, for its memory), in one run,
# measured by one client tool (benches/fanout/clients.mjs, Node `ws` clients in one process
# bound to 127.0.0.1 .. 127.0.0.16): per frame, the time from the first client's arrival to
# the last's (completion) and from the server's send to the last arrival; memory per
# connection with every client connected. Every server sends an open update of the current
# 2 s window every 250 ms and each window's final (EmoStream's come through Kafka, fed by
# `emostream wsload --feed-updates 250ms`). Then EmoStream at the largest count with the
# project's own load tool (`emostream wsload`), and the kernel's own share
# (benches/loopback_floor.py). Writes benches/reports/<date>-fanout/. Run through
# scripts/with-broker.sh (make bench-fanout does). The peers are installed here, pinned
# (benches/fanout/package.json).
#
# This machine is shared and its speed drifts from minute to minute, so each count runs in
# ROUNDS rounds (default 3), every server once per round, in an order that turns from round
# to round; the summary gives each server's median over the rounds and how many rounds it
# beat each peer in. EmoStream runs twice per round: with its default (a shard per core) and
# with one shard (`emostream-1`), which leaves the other core to the clients. warp `ws()` is
# there for its memory and runs in the first round only.
#
# BASELINE=REV adds the broadcaster of that revision (built once, in a worktree under
# target/storm-baseline) to every phase, as `baseline` and `baseline-1`: the same run then
# says whether a change moved the fan-out. STORM=0 leaves the reconnect storm out.
#
# One process holds at most 20,000 open files here (hard limit): the largest count is 19,000.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
: "${EMOSTREAM_BROKERS:?run through scripts/with-broker.sh or set EMOSTREAM_BROKERS}"
ulimit -n "$(ulimit -Hn)"

counts=${COUNTS:-"1000 10000 19000"}
seconds=${SECONDS_PER_RUN:-20}
baseline=${BASELINE:-${STORM_BASELINE:-}}
default_servers="emostream emostream-1 bun node warp"
if [ -n "$baseline" ]; then default_servers="emostream emostream-1 baseline baseline-1 bun node warp"; fi
servers=${SERVERS:-$default_servers}
rounds=${ROUNDS:-3}
report=benches/reports/$(date -u +%F)-${REPORT_NAME:-fanout}
bin=target/release/emostream
peers=benches/fanout
# A report of the same name and day is made again from scratch (KEEP_RAW=1 adds to it: a
# run of the counts left, after one was cut off).
if [ -z "${KEEP_RAW:-}" ]; then rm -rf "$report/raw"; fi
mkdir -p "$report/raw"
cargo build --release --bin emostream --example warp_ws
if [ ! -x "$peers/node_modules/.bin/bun" ] || [ ! -d "$peers/node_modules/ws" ]; then
  (cd "$peers" && npm install --no-audit --no-fund --silent)
fi
bun=$peers/node_modules/.bin/bun

{
  machine_info
  echo "open files per process: $(ulimit -Hn)"
  echo "bun: $("$bun" --version); node: $(node --version); ws: $(node -p "require('./$peers/node_modules/ws/package.json').version")"
  echo "layout: server, clients and broker on the same machine"
} > "$report/machine.txt"
if [ -z "${KEEP_RAW:-}" ]; then : > "$report/commands.txt"; fi

# The broadcaster of $baseline, built once in a worktree.
baseline_bin=target/storm-baseline/release/emostream
if [ -n "$baseline" ]; then
  baseline_rev=$(git rev-parse --short "$baseline")
  baseline_src=target/storm-baseline/src
  if [ "$(git -C "$baseline_src" rev-parse --short HEAD 2>/dev/null)" != "$baseline_rev" ]; then
    git worktree remove --force "$baseline_src" 2>/dev/null || rm -rf "$baseline_src"
    git worktree add -f "$baseline_src" "$baseline_rev" > /dev/null
  fi
  (cd "$baseline_src" && cargo build --release --bin emostream --target-dir "$PWD/../")
  echo "baseline: the broadcaster of $baseline_rev ($(git log -1 --format=%s "$baseline_rev" | cut -c1-100))" >> "$report/machine.txt"
  echo "$baseline_rev" > "$report/raw/baseline.txt"
fi


# Waits for a JSON line with "port" in FILE; prints the port.
port_of() {
  for _ in $(seq 1 200); do
    if [ -s "$1" ]; then python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).readline())['port'])" "$1"; return; fi
    sleep 0.05
  done
  echo "no port in $1" >&2; return 1
}

# measure NAME N PID CLIENT-ARGS...: the clients against the server PID; memory and results
# (NAME is the server and the round: bun-r2).
measure() {
  local name=$1 n=$2 pid=$3; shift 3
  local ready=$report/raw/$name-$n.ready before
  before=$(rss "$pid")
  echo "node $peers/clients.mjs $* --clients $n --seconds $seconds --sources 16" >> "$report/commands.txt"
  node "$peers/clients.mjs" "$@" --clients "$n" --seconds "$seconds" --sources 16 --ready "$ready" \
    > "$report/raw/$name-$n.json" 2> "$report/raw/$name-$n.clients.log" &
  local clients=$!
  for _ in $(seq 1 2400); do [ -s "$ready" ] && break; sleep 0.05; done
  local connected_rss cpu_before cpu_after
  connected_rss=$(rss "$pid")
  cpu_before=$(cpu "$pid")
  wait "$clients" || echo "the clients of $name ended with $?" >&2
  cpu_after=$(cpu "$pid")
  echo "{\"before_kib\":$before,\"connected_kib\":$connected_rss,\"peak_kib\":$(hwm "$pid"),\"cpu_ms\":$(( (cpu_after - cpu_before) * 10 ))}" > "$report/raw/$name-$n.memory.json"
}

# run_server SERVER N ROUND: one server, its clients, measured.
run_server() {
  local server=$1 n=$2 round=$3 pid
  local name=$server-r$round
  case $server in
    emostream|emostream-1|baseline|baseline-1)
      local prefix=fanout-$$-$n-$round-$server args=${BROADCAST_ARGS:-} server_bin=$bin
      case $server in *-1) args="$args --shards 1" ;; esac
      case $server in baseline*) server_bin=$baseline_bin ;; esac
      # shellcheck disable=SC2086 # the arguments are words
      "$server_bin" broadcast --listen 127.0.0.1:0 --cluster-prefix "$prefix" --registry-topic "$prefix-registry" \
        --token-secret bench --max-connections-per-ip 0 $args --ready-file "$report/raw/$name-$n.ready.json" \
        > /dev/null 2> "$report/raw/$name-$n.server.log" &
      pid=$!
      local addr
      addr=$(ready_addr "$report/raw/$name-$n.ready.json" broadcast)
      echo "$server_bin broadcast --listen 127.0.0.1:0 --cluster-prefix $prefix --registry-topic $prefix-registry --token-secret bench --max-connections-per-ip 0 $args" >> "$report/commands.txt"
      echo "$bin wsload --register http://$addr --clients 1 --duration 600s --feed-topic ${prefix}1 --feed-updates 250ms" >> "$report/commands.txt"
      "$bin" wsload --register "http://$addr" --clients 1 --duration 600s --feed-topic "${prefix}1" \
        --feed-updates 250ms --brokers "$EMOSTREAM_BROKERS" > /dev/null 2> "$report/raw/$name-$n.feed.log" &
      local feeder=$!
      measure "$name" "$n" "$pid" --register "http://$addr"
      kill "$feeder" 2>/dev/null || true; wait "$feeder" 2>/dev/null || true
      ;;
    bun)
      echo "$bun $peers/bun-server.mjs 0" >> "$report/commands.txt"
      "$bun" "$peers/bun-server.mjs" 0 > "$report/raw/$name-$n.port" 2> "$report/raw/$name-$n.server.log" &
      pid=$!
      measure "$name" "$n" "$pid" --url "ws://127.0.0.1:$(port_of "$report/raw/$name-$n.port")/ws"
      ;;
    warp)
      echo "target/release/examples/warp_ws 0" >> "$report/commands.txt"
      target/release/examples/warp_ws 0 > "$report/raw/$name-$n.port" 2> "$report/raw/$name-$n.server.log" &
      pid=$!
      measure "$name" "$n" "$pid" --url "ws://127.0.0.1:$(port_of "$report/raw/$name-$n.port")/ws"
      ;;
    node)
      echo "node $peers/node-server.mjs 0" >> "$report/commands.txt"
      node "$peers/node-server.mjs" 0 > "$report/raw/$name-$n.port" 2> "$report/raw/$name-$n.server.log" &
      pid=$!
      measure "$name" "$n" "$pid" --url "ws://127.0.0.1:$(port_of "$report/raw/$name-$n.port")/ws"
      ;;
  esac
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
}

read -ra order <<< "$servers"
for n in $counts; do
  for round in $(seq 1 "$rounds"); do
    # Each round starts one server further on: none always runs first or last.
    for i in "${!order[@]}"; do
      server=${order[$(( (i + round - 1) % ${#order[@]} ))]}
      if [ "$server" = warp ] && [ "$round" -gt 1 ]; then continue; fi
      echo "$(date -u +%T) $server, $n clients, round $round" >&2
      run_server "$server" "$n" "$round"
    done
  done
done

# EmoStream with the project's own load tool at the largest count, both ways, each round.
largest=$(echo "$counts" | tr ' ' '\n' | sort -n | tail -1)
for round in $(seq 1 "$rounds"); do
  for variant in emostream emostream-1; do
    prefix=fanout-$$-own-$round-$variant
    args=${BROADCAST_ARGS:-}
    [ "$variant" = emostream-1 ] && args="$args --shards 1"
    # shellcheck disable=SC2086 # the arguments are words
    "$bin" broadcast --listen 127.0.0.1:0 --cluster-prefix "$prefix" --registry-topic "$prefix-registry" \
      --token-secret bench --max-connections-per-ip 0 $args --ready-file "$report/raw/own-$variant-r$round.ready.json" \
      > /dev/null 2> "$report/raw/own-$variant-r$round.server.log" &
    pid=$!
    addr=$(ready_addr "$report/raw/own-$variant-r$round.ready.json" broadcast)
    cmd="$bin wsload --register http://$addr --clients $largest --sources 127.0.0.1,...,127.0.0.16 --duration ${seconds}s --feed-topic ${prefix}1 --feed-updates 250ms"
    echo "$cmd" >> "$report/commands.txt"
    echo "$(date -u +%T) wsload against $variant, $largest clients, round $round" >&2
    "$bin" wsload --register "http://$addr" --clients "$largest" \
      --sources "$(seq -s, -f '127.0.0.%g' 1 16)" --duration "${seconds}s" --feed-topic "${prefix}1" \
      --feed-updates 250ms --brokers "$EMOSTREAM_BROKERS" \
      --summary-json "$report/raw/own-$variant-$largest-r$round.json" \
      2> "$report/raw/own-$variant-r$round.log"
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  done
done

# A reconnect storm: STORM clients (the largest count) opened at once against a fresh
# server, each trying again as the client library does (after a 503 as its Retry-After asks;
# after a hang-up, 0.5 to 2 s on), timed until all are connected. EmoStream as built, and,
# with BASELINE=REV, the broadcaster of that revision, and Bun and Node for reference.
storm=${STORM:-$largest}
storm_servers="emostream bun node"
if [ -n "$baseline" ]; then storm_servers="emostream baseline bun node"; fi
if [ "$storm" = 0 ]; then storm_servers=""; fi
for round in $(seq 1 "$rounds"); do
  for server in $storm_servers; do
    echo "$(date -u +%T) storm against $server, $storm clients at once, round $round" >&2
    case $server in
      emostream|baseline)
        server_bin=$bin
        [ "$server" = baseline ] && server_bin=$baseline_bin
        prefix=fanout-$$-storm-$round-$server
        "$server_bin" broadcast --listen 127.0.0.1:0 --cluster-prefix "$prefix" --registry-topic "$prefix-registry" \
          --token-secret bench --max-connections-per-ip 0 --ready-file "$report/raw/storm-$server-r$round.ready.json" \
          > /dev/null 2> "$report/raw/storm-$server-r$round.server.log" &
        pid=$!
        target=(--register "http://$(ready_addr "$report/raw/storm-$server-r$round.ready.json" broadcast)")
        echo "$server_bin broadcast --listen 127.0.0.1:0 --cluster-prefix $prefix --registry-topic $prefix-registry --token-secret bench --max-connections-per-ip 0" >> "$report/commands.txt"
        ;;
      bun)
        "$bun" "$peers/bun-server.mjs" 0 > "$report/raw/storm-$server-r$round.port" 2> "$report/raw/storm-$server-r$round.server.log" &
        pid=$!
        target=(--url "ws://127.0.0.1:$(port_of "$report/raw/storm-$server-r$round.port")/ws")
        ;;
      node)
        node "$peers/node-server.mjs" 0 > "$report/raw/storm-$server-r$round.port" 2> "$report/raw/storm-$server-r$round.server.log" &
        pid=$!
        target=(--url "ws://127.0.0.1:$(port_of "$report/raw/storm-$server-r$round.port")/ws")
        ;;
    esac
    echo "node $peers/burst.mjs ${target[*]} --clients $storm --sources 16" >> "$report/commands.txt"
    node "$peers/burst.mjs" "${target[@]}" --clients "$storm" --sources 16 \
      > "$report/raw/storm-$server-$storm-r$round.json" 2> "$report/raw/storm-$server-r$round.clients.log" || true
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  done
done

# The kernel's share alone: raw writes to loopback sockets, no WebSocket, no event loop.
echo "python3 benches/loopback_floor.py 9000 900" >> "$report/commands.txt"
python3 benches/loopback_floor.py 9000 900 > "$report/raw/loopback-floor.json"

python3 benches/summarize_fanout.py "$report"
echo "report: $report/summary.md"
