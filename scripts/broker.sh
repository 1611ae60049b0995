#!/usr/bin/env bash
# A local Kafka-protocol broker (tansu) for development, tests and benchmarks.
#
#   scripts/broker.sh install        install tansu under ~/.cache/emostream (skipped when there)
#   scripts/broker.sh start [DIR]    start it on a free loopback port; prints the address
#   scripts/broker.sh stop [DIR]     stop the broker started in DIR
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
  port=$(free_port)
  local address=127.0.0.1:$port
  (
    cd "$dir"
    nohup "$tansu" broker \
      --listener-url "tcp://$address" \
      --advertised-listener-url "tcp://$address" \
      --storage-engine "${EMOSTREAM_BROKER_STORAGE:-memory://tansu/}" \
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
    kill "$(cat "$dir/broker.pid")" 2>/dev/null || true
    rm -f "$dir/broker.pid"
  fi
}

case "${1:-}" in
  install) install ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: $0 install|start [DIR]|stop [DIR]" >&2; exit 2 ;;
esac
