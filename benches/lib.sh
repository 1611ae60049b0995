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

# Waits until FILE holds a line matching PATTERN (at most 10 s).
wait_for_line() {
  for _ in $(seq 1 100); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "error: $1 never printed $2" >&2
  return 1
}
