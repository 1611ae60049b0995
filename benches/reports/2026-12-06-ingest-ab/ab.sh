#!/bin/bash
# A/B of the ingest with and without this session's ingest change (the record timestamp and
# the metadata refresh), one client, alternating; BATCH and RATE set the load.
rate=${RATE:-50000}; batch=${BATCH:-1}
t=127.0.0.1:18080
for round in 1 2 3; do
 for name in old head; do
  bin=/tmp/lb/emostream-$name
  $bin ingest --listen $t --user-rate-limit 0 --events-topic ab-$name-$round-$$ > /dev/null 2>/tmp/lb/ingest-$name.log &
  pid=$!
  for i in $(seq 100); do curl -sf http://$t/health >/dev/null && break; sleep 0.1; done
  /tmp/lb/emostream-head simulate --target http://$t --duration 2s --body-pool 256 --rate 20000/s --batch $batch --connections 128 --max-connections 128 >/dev/null 2>&1
  c1=$(awk '{print $14+$15}' /proc/$pid/stat)
  r=$(/tmp/lb/emostream-head simulate --target http://$t --duration 10s --body-pool 256 --rate ${rate}/s --batch $batch --connections 128 --max-connections 128 2>&1 | grep offered)
  c2=$(awk '{print $14+$15}' /proc/$pid/stat)
  echo "round $round $name: ingest cpu $(( (c2-c1)*10 )) ms :: $r" | sed 's/rejected.*latency/latency/'
  kill $pid; wait $pid 2>/dev/null
 done
done
