# Shared by the benchmark scripts: `. benches/lib.sh`.

# Prints the machine, versions and commit a report was made on.
machine_info() {
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse HEAD)"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores)"
  echo "memory: $(free -g | awk '/^Mem:/ {print $2}') GiB"
  echo "rustc: $(rustc --version)"
  echo "broker: tansu $("${EMOSTREAM_CACHE:-$HOME/.cache/emostream}/bin/tansu" --version 2>/dev/null | awk '{print $2}') (memory storage) on the same machine"
  awk '/^name = "rdkafka-sys"$/ {getline; print "librdkafka: rdkafka-sys " $3}' Cargo.lock | tr -d '"'
}

# Waits until the service that writes FILE (its --ready-file) is up (at most 60 s), then
# prints the address of PART: ingest, dataflow or broadcast (the first broadcaster).
ready_addr() {
  for _ in $(seq 1 600); do
    if [ -s "$1" ]; then
      python3 -c 'import json, sys
ready = json.load(open(sys.argv[1]))[sys.argv[2]]
print(ready[0] if isinstance(ready, list) else ready)' "$1" "$2"
      return
    fi
    sleep 0.1
  done
  echo "error: $1 was never written" >&2
  return 1
}

# Resident memory of process PID now, and at its peak, in KiB.
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

# CPU time (user + system) of process PID so far, in clock ticks (10 ms).
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
