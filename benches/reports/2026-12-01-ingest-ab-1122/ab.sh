#!/bin/bash
# A/B of ingest binaries under one client (the head's simulate), alternating.
# VARIANTS: "name:binary:extra-args" entries (extra args comma-separated); the binaries were
# copied to /tmp/lb/emostream-old (0f9a774) and /tmp/lb/emostream-head (a3aba3d). Run as
#   VARIANTS="old:/tmp/lb/emostream-old: head:/tmp/lb/emostream-head: head500:/tmp/lb/emostream-head:--linger,500ms" ab.sh
#   RATE=500000 VARIANTS="old:/tmp/lb/emostream-old: head:/tmp/lb/emostream-head:" ab.sh
# with EMOSTREAM_BROKERS pointing at the broker.
cd /work/main
rate=${RATE:-1000000}
t=127.0.0.1:18080
for round in 1 2; do
 for spec in $VARIANTS; do
  IFS=: read name bin extra <<< "$spec"
  $bin ingest --listen $t --user-rate-limit 0 --events-topic ab-$name-$round-$$ ${extra//,/ } > /dev/null 2>/tmp/lb/ingest-$name.log &
  pid=$!
  for i in $(seq 100); do curl -sf http://$t/health >/dev/null && break; sleep 0.1; done
  /tmp/lb/emostream-head simulate --target http://$t --duration 2s --body-pool 256 --rate 100000/s --batch 1000 --connections 16 --max-connections 16 >/dev/null 2>&1
  c1=$(awk '{print $14+$15}' /proc/$pid/stat)
  r=$(/tmp/lb/emostream-head simulate --target http://$t --duration 10s --body-pool 256 --rate ${rate}/s --batch 1000 --connections 16 --max-connections 16 2>&1 | grep offered)
  c2=$(awk '{print $14+$15}' /proc/$pid/stat)
  echo "round $round $name: ingest cpu $(( (c2-c1)*10 )) ms :: $r" | sed 's/rejected.*latency/latency/'
  kill $pid; wait $pid 2>/dev/null
 done
done
