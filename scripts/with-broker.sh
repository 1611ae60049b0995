#!/usr/bin/env bash
# Runs a command with EMOSTREAM_BROKERS set. When it is not set already, starts a local
# broker (installing it the first time; EMOSTREAM_BROKER_KIND picks tansu or noida), runs the
# command, and stops the broker afterwards.
#
#   scripts/with-broker.sh COMMAND [ARG...]
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${EMOSTREAM_BROKERS:-}" ]; then
  exec "$@"
fi

dir=target/broker-$$
scripts/broker.sh install
EMOSTREAM_BROKERS=$(scripts/broker.sh start "$dir")
export EMOSTREAM_BROKERS
trap 'scripts/broker.sh stop "$dir"; rm -rf "$dir"' EXIT
echo "Broker (${EMOSTREAM_BROKER_KIND:-tansu}) at $EMOSTREAM_BROKERS." >&2

# Run in the background and wait, so Ctrl-C reaches the command and the trap still runs.
"$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null || true' INT TERM
wait "$child" || status=$?
wait "$child" 2>/dev/null || true
exit "${status:-0}"
