#!/usr/bin/env bash
# Coverage-guided fuzzing (AFL++ through cargo-afl, on the stable toolchain) of the
# decoders: the JSON event decoder, the CSV row reader, the timestamp parser and the
# WebSocket client messages, each target for FUZZ_SECONDS (default 300), two at a time.
# Each target runs `model::checks` (no panic; what is accepted reads back as itself) on
# every input. Afterwards the kept inputs are minimized into fuzz/corpus/<target>/ and any
# failing input is copied to fuzz/crashes/<target>/: `make test` replays both
# (model/tests/corpus.rs). Writes benches/reports/<date>-fuzz/.
#
# cargo-afl is installed under ~/.cache/emostream/afl the first time (about a minute), and
# builds its AFL++ runtime from source once per Rust version.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

seconds=${FUZZ_SECONDS:-300}
targets=(event_json csv_row timestamp client_message)
root=${EMOSTREAM_CACHE:-$HOME/.cache/emostream}/afl
export PATH=$root/bin:$PATH
if ! command -v cargo-afl >/dev/null; then
  echo "Installing cargo-afl under $root (once)." >&2
  cargo install cargo-afl --version 0.18.2 --locked --root "$root" >&2
fi
# Builds the AFL++ runtime unless it is there for this Rust version already.
cargo afl config --build >/dev/null 2>&1 || true
(cd fuzz && CARGO_TARGET_DIR=../target/fuzz cargo afl build --release)

report=benches/reports/$(date -u +%F)-${REPORT_NAME:-fuzz}
out=target/fuzz/out
rm -rf "$out" "$report"
mkdir -p "$out" "$report/raw"
machine_info | grep -v '^broker:' > "$report/machine.txt"
echo "FUZZ_SECONDS=$seconds benches/fuzz.sh   # make fuzz" > "$report/commands.txt"
export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
run() {
  echo "cargo afl fuzz -i fuzz/corpus/$1 -o $out/$1 -V $seconds target/fuzz/release/$1" >> "$report/commands.txt"
  cargo afl fuzz -i "fuzz/corpus/$1" -o "$out/$1" -V "$seconds" "target/fuzz/release/$1" \
    > "$out/$1.log" 2>&1
  tail -n 30 "$out/$1.log" > "$report/raw/$1.log"
}
for ((i = 0; i < ${#targets[@]}; i += 2)); do
  run "${targets[i]}" &
  if ((i + 1 < ${#targets[@]})); then run "${targets[i + 1]}" & fi
  wait
done

crashes=0
{
  echo "# Coverage-guided fuzzing (AFL++)"
  echo
  sed 's/$/  /' "$report/machine.txt"
  echo "afl: $(cargo afl --version 2>/dev/null | head -1)  "
  echo
  echo "Each target ${seconds} s (two at a time on the machine's two cores), from the seeds in"
  echo "fuzz/corpus/<target>/; the check on every input: no panic, and an accepted input reads back"
  echo "as itself (model::checks)."
  echo
  echo "| target | inputs run | inputs/s | corpus kept | edges found | map coverage | crashes | hangs |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for t in "${targets[@]}"; do
    stats=$out/$t/default/fuzzer_stats
    cp "$stats" "$report/raw/$t.fuzzer_stats"
    field() { awk -F' *: *' -v k="$1" '$1 == k {print $2}' "$stats"; }
    echo "| $t | $(field execs_done) | $(field execs_per_sec) | $(field corpus_count) | $(field edges_found) | $(field bitmap_cvg) | $(field saved_crashes) | $(field saved_hangs) |"
    crashes=$((crashes + $(field saved_crashes)))
  done
} > "$report/summary.md"

# Keep what the fuzzer learned: the minimized corpus (seeds included) and any crash. The
# shell afl-cmin (the Python one that `cargo afl cmin` runs finds no coverage in these
# targets' traces).
cmin=$(ls -d "$HOME"/.local/share/afl.rs/rustc-"$(rustc --version | awk '{print $2}')"-*/afl.rs-*/afl/bin | tail -1)/afl-cmin.bash
for t in "${targets[@]}"; do
  minimized=$out/$t/minimized
  AFL_NO_UI=1 "$cmin" -i "$out/$t/default/queue" -o "$minimized" -- "target/fuzz/release/$t" \
    > "$out/$t.cmin.log" 2>&1
  # Inputs up to 64 KiB: the few larger ones (megabytes of one repeated byte) cost the
  # repository more than the paths they cover, which the decoders' unit tests also reach.
  find "$minimized" -type f -size -65k | while read -r f; do
    kept=fuzz/corpus/$t/$(sha1sum "$f" | cut -c1-16)
    [ -e "$kept" ] || cp "$f" "$kept"
  done
  if compgen -G "$out/$t/default/crashes/id*" > /dev/null; then
    mkdir -p "fuzz/crashes/$t"
    for f in "$out/$t/default/crashes"/id*; do
      kept=fuzz/crashes/$t/$(sha1sum "$f" | cut -c1-16)
      [ -e "$kept" ] || cp "$f" "$kept"
    done
  fi
done
{
  echo
  echo "Corpus now kept in fuzz/corpus/ (replayed by make test): $(for t in "${targets[@]}"; do echo -n "$t $(ls "fuzz/corpus/$t" | wc -l), "; done | sed 's/, $//')."
  if [ "$crashes" -eq 0 ]; then
    echo "No crash and no hang in this run."
  else
    echo "$crashes failing inputs, copied to fuzz/crashes/ (make test replays them until fixed)."
  fi
} >> "$report/summary.md"
cat "$report/summary.md"
[ "$crashes" -eq 0 ]
