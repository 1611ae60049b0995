#!/usr/bin/env bash
# A local Kafka-protocol broker for development, tests and benchmarks: tansu (the default) or
# noida-db (EMOSTREAM_BROKER_KIND=noida), the two EmoStream is tested on.
#
#   scripts/broker.sh install        install the broker under ~/.cache/emostream (skipped when there)
#   scripts/broker.sh start [DIR]    start it on a free loopback port; prints the address
#   scripts/broker.sh stop [DIR]     stop the broker started in DIR
#   scripts/broker.sh restart [DIR]  start it again at the same address, on the same storage
#   scripts/broker.sh user DIR NAME PASSWORD  a SASL SCRAM-SHA-512 user of tansu's
#
# DIR (default target/broker) holds its kind, pid, address and log. For tansu,
# EMOSTREAM_BROKER_STORAGE picks the storage engine (default memory://tansu/; sqlite://tansu.db
# is durable); noida-db keeps its data in DIR/data and writes it there when stopped.
# EMOSTREAM_BROKER_ADVERTISED (tansu) is the address clients are told to use, when another
# (a TLS-terminating proxy in front of it) is what they reach.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)

version=0.6.0
root=${EMOSTREAM_CACHE:-$HOME/.cache/emostream}
tansu=$root/bin/tansu
kind=${EMOSTREAM_BROKER_KIND:-tansu}

install() {
  case "$kind" in
    tansu)
      if [ -x "$tansu" ] && "$tansu" --version 2>/dev/null | grep -q "$version"; then
        return
      fi
      echo "Installing tansu $version under $root (about 9 minutes on 2 cores, once)." >&2
      cargo install tansu --version "$version" --locked --features dynostore,libsql --root "$root" >&2
      ;;
    # Pinned in tests/requirements.txt.
    noida) noida_binary >/dev/null ;;
    *) echo "error: EMOSTREAM_BROKER_KIND is $kind: tansu or noida" >&2; exit 2 ;;
  esac
}

# The noida-db binary inside its Python package (run directly, so its pid is the broker's).
noida_binary() {
  local venv
  venv=$("$here/scripts/python-env.sh" "$here/tests/requirements.txt" tests)
  "$venv/bin/python" -c 'import noida_db, os; print(os.path.join(os.path.dirname(noida_db.__file__), "noida-db"))'
}

# Starts the broker in the background in DIR on ADDRESS; its pid goes to DIR/broker.pid.
launch() {
  local dir=$1 address=$2
  case "$kind" in
    tansu)
      local storage=${EMOSTREAM_BROKER_STORAGE:-memory://tansu/}
      echo "$storage" > "$dir/storage"
      # EMOSTREAM_BROKER_AUTH=1: clients must log in (SASL SCRAM, the users `user` made).
      local auth=()
      [ -n "${EMOSTREAM_BROKER_AUTH:-}" ] && auth=(--authentication)
      (
        cd "$dir"
        nohup "$tansu" broker \
          --listener-url "tcp://$address" \
          --advertised-listener-url "tcp://${EMOSTREAM_BROKER_ADVERTISED:-$address}" \
          --storage-engine "$storage" \
          "${auth[@]}" \
          > broker.log 2>&1 &
        echo $! > broker.pid
      )
      ;;
    noida)
      local binary
      binary=$(noida_binary)
      mkdir -p "$dir/data"
      nohup "$binary" start --only kafka --host 127.0.0.1 --kafka-port "${address##*:}" \
        --data-dir "$dir/data" > "$dir/broker.log" 2>&1 &
      echo $! > "$dir/broker.pid"
      ;;
  esac
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# DIR made absolute: noida-db's own commands find the server by its data directory.
absolute() {
  mkdir -p "$1"
  (cd "$1" && pwd)
}

start() {
  local dir
  dir=$(absolute "${1:-target/broker}")
  install
  local port
  if [ -n "${2:-}" ]; then
    port=${2##*:}
  else
    port=$(free_port)
  fi
  local address=127.0.0.1:$port
  echo "$kind" > "$dir/kind"
  launch "$dir" "$address"
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
  [ -d "$dir" ] || return 0
  dir=$(absolute "$dir")
  if [ -f "$dir/broker.pid" ]; then
    local pid
    pid=$(cat "$dir/broker.pid")
    if [ "$(cat "$dir/kind" 2>/dev/null)" = noida ]; then
      # Its own stop closes the port and saves the data ("data saved"); then the process
      # ends. (A signal alone leaves the save to the exit, which could outlast the
      # wait below: the outage test lost its last acknowledged events so in 3 of 4 runs, none
      # in 6 since.)
      if ! "$(noida_binary)" stop kafka --data-dir "$dir/data" >> "$dir/broker.log" 2>&1; then
        echo "warning: noida-db did not stop its kafka service (see $dir/broker.log)" >&2
      fi
    fi
    kill "$pid" 2>/dev/null || true
    # Gone within 10 s, or killed: its port must be free for a restart.
    for _ in $(seq 1 100); do
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
    kind=$(cat "$dir/kind" 2>/dev/null || echo tansu)
    if [ -f "$dir/storage" ]; then
      EMOSTREAM_BROKER_STORAGE=$(cat "$dir/storage")
      export EMOSTREAM_BROKER_STORAGE
    fi
    start "$dir" "$(cat "$dir/address")" ;;
  user)
    # A SASL SCRAM-SHA-512 user of tansu's (made while the broker does not require logins).
    dir=${2:?usage: $0 user DIR NAME PASSWORD}
    "$tansu" user create --broker "tcp://$(cat "$dir/address")" --mechanism scram512 \
      "${3:?a user name}" "${4:?a password}" >&2 ;;
  *) echo "usage: $0 install|start [DIR]|stop [DIR]|restart [DIR]|user DIR NAME PASSWORD" >&2; exit 2 ;;
esac
