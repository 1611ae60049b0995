#!/usr/bin/env bash
# A local Kafka-protocol broker (tansu) for development, tests and benchmarks.
#
#   scripts/broker.sh install        install tansu under ~/.cache/emostream (skipped when there)
#   scripts/broker.sh start [DIR]    start it on a free loopback port; prints the address
#   scripts/broker.sh stop [DIR]     stop the broker started in DIR
#   scripts/broker.sh restart [DIR]  start it again at the same address, on the same storage
#
# DIR (default target/broker) holds its pid, address and log. EMOSTREAM_BROKER_STORAGE picks
# the storage engine (default memory://tansu/; sqlite://tansu.db is durable).
set -euo pipefail

version=0.6.0
root=${EMOSTREAM_CACHE:-$HOME/.cache/emostream}
tansu=$root/bin/tansu

install() {
  if [ -x "$tansu" ] && "$tansu" --version 2>/dev/null | grep -q "$version"; then
    return
  fi
  echo "Installing tansu $version under $root (about 9 minutes on 2 cores, once)." >&2
  cargo install tansu --version "$version" --locked --features dynostore,libsql --root "$root" >&2
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  local dir=${1:-target/broker}
  install
  mkdir -p "$dir"
  local port
  if [ -n "${2:-}" ]; then
    port=${2##*:}
  else
    port=$(free_port)
  fi
  local address=127.0.0.1:$port
  local storage=${EMOSTREAM_BROKER_STORAGE:-memory://tansu/}
  echo "$storage" > "$dir/storage"
  (
    cd "$dir"
    nohup "$tansu" broker \
      --listener-url "tcp://$address" \
      --advertised-listener-url "tcp://$address" \
      --storage-engine "$storage" \
      > broker.log 2>&1 &
    echo $! > broker.pid
  )
  echo "$address" > "$dir/address"
  # Ready once the port accepts connections.
  for _ in $(seq 1 200); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
      echo "$address"
      return
    fi
    if ! kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null; then
      echo "error: the broker exited; its log:" >&2
      cat "$dir/broker.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "error: the broker did not accept connections on $address within 20 s" >&2
  exit 1
}

stop() {
  local dir=${1:-target/broker}
  if [ -f "$dir/broker.pid" ]; then
    local pid
    pid=$(cat "$dir/broker.pid")
    kill "$pid" 2>/dev/null || true
    # Gone within 5 s, or killed: its port must be free for a restart.
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    rm -f "$dir/broker.pid"
  fi
}

case "${1:-}" in
  install) install ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  restart)
    dir=${2:-target/broker}
    EMOSTREAM_BROKER_STORAGE=$(cat "$dir/storage") start "$dir" "$(cat "$dir/address")" ;;
  *) echo "usage: $0 install|start [DIR]|stop [DIR]|restart [DIR]" >&2; exit 2 ;;
esac
