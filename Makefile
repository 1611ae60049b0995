# EmoStream: `make up` runs the system, `make test` runs every check CI runs.
# Both install what they need (Rust components, the tansu broker) and skip what is already there.

CARGO ?= cargo
BIN := target/release/emostream
SAMPLE := data/sample.csv

.PHONY: up test build toolchain fmt clippy unit clients clients-build second-broker browser notebooks figures soak bench bench-replay bench-live bench-e2e bench-fanout bench-fleet bench-brokers bench-micro chaos fuzz replay-sample clean

## up: build and run the live system (ingest + dataflow), with a local broker unless EMOSTREAM_BROKERS is set
up: toolchain build
	scripts/with-broker.sh $(BIN) up

## replay-sample: replay the bundled sample log and print its windows
replay-sample: build
	$(BIN) replay $(SAMPLE)

## test: formatting, lints and the whole test suite
test: toolchain fmt clippy clients unit second-broker browser notebooks

build:
	$(CARGO) build --release --bin emostream

toolchain:
	@command -v $(CARGO) >/dev/null || { echo "error: cargo not found: install Rust from https://rustup.rs"; exit 1; }
	@scripts/build-deps.sh
	@$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy

fmt:
	$(CARGO) fmt --all --check

clippy:
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

## clients: the client library (clients/js): tsc on it and on its README's example, its
## build, its tests, and that the broadcaster serves this build
clients:
	scripts/clients.sh

## clients-build: build the client library and copy it where the broadcaster serves it from
clients-build:
	scripts/clients.sh --write

## browser: the live page in headless Chromium through the whole pipeline
browser:
	scripts/browser-deps.sh
	$(CARGO) build --bin emostream
	scripts/with-broker.sh node --test tests/browser/

## unit: the test suite and the doc-tests, the broker suites against a local broker unless
## EMOSTREAM_BROKERS is set (a plain `cargo test` runs all but the broker suites)
unit:
	scripts/test-deps.sh
	scripts/with-broker.sh $(CARGO) test --workspace --features emostream/broker-tests --lib --bins --tests
	$(CARGO) test --workspace --doc

## second-broker: the live exactness, dataflow restart, exactness-under-faults and broker
## outage tests again on a second Kafka-protocol broker (noida-db, from tests/requirements.txt)
SECOND_BROKER_TESTS := $(CARGO) test --workspace --features emostream/broker-tests \
	--test integration -- --exact \
	live_windows::events_posted_over_http_come_out_as_exact_windows_on_every_topic \
	live_windows::a_viewer_five_minutes_ahead_makes_nobody_late \
	live_windows::a_viewer_five_minutes_ahead_makes_nobody_late_on_four_partitions \
	live_windows::a_viewer_fifteen_seconds_ahead_makes_nobody_late \
	live_windows::partitions_added_while_taps_flow_are_read_and_every_tap_counted \
	live_restarts::a_dataflow_killed_and_restarted_publishes_the_same_windows \
	live_restarts::a_late_tap_is_reported_once_across_stops_right_after_it \
	live_restarts::a_size_added_across_a_restart_leaves_every_window_whole \
	live_restarts::a_restart_with_settings_the_checkpoints_do_not_fit_is_refused_by_name \
	live_restarts::sigterm_with_two_workers_and_two_sizes_closes_no_window_early \
	live_restarts::a_dataflow_of_two_sizes_killed_under_load_counts_every_tap_once \
	live_restarts::published_windows_no_checkpoint_accounts_for_are_refused_and_latest_reports_their_events_late \
	live_windows::a_partition_far_ahead_in_a_backfill_waits_for_the_one_behind \
	recording::a_live_run_recorded_and_replayed_gives_the_live_windows \
	outage::a_broker_outage_under_load_loses_nothing_acknowledged_and_heals_by_itself \
	outage::a_broker_stalled_past_the_delivery_timeout_gets_every_event_once \
	live_restarts::a_second_dataflow_of_a_group_takes_over_and_the_first_stops
SECOND_BROKER_COUNT := 17
second-broker:
	@# A renamed test would leave the run with fewer to do: every one must be found.
	@found=$$($(SECOND_BROKER_TESTS) --list 2>/dev/null | grep -c ': test$$'); \
	  [ "$$found" = $(SECOND_BROKER_COUNT) ] || { echo "error: make second-broker finds $$found of its $(SECOND_BROKER_COUNT) tests" >&2; exit 1; }
	env -u EMOSTREAM_BROKERS EMOSTREAM_BROKER_KIND=noida scripts/with-broker.sh $(SECOND_BROKER_TESTS)

## notebooks: run the notebooks top to bottom, headless, on the recorded reports
notebooks:
	$(CARGO) build --bin emostream
	scripts/notebooks.sh

## figures: write the notebooks' figures to notebooks/figures (the README shows them)
figures:
	$(CARGO) build --bin emostream
	EMOSTREAM_FIGURES=$(CURDIR)/notebooks/figures scripts/notebooks.sh

## bench: the whole benchmark suite; reports under benches/reports/, summary in the README
bench: toolchain
	benches/replay.sh
	scripts/with-broker.sh benches/live.sh
	scripts/with-broker.sh benches/e2e.sh
	scripts/with-broker.sh benches/fanout.sh
	benches/micro.sh
	python3 benches/summarize_suite.py

## chaos: the fault scenarios at full length against a fresh broker, report under benches/reports/
chaos: toolchain
	env -u EMOSTREAM_BROKERS scripts/with-broker.sh benches/chaos.sh

## soak: the deterministic simulation of the live source and its recovery over many more
## seeds than `make test` runs (SOAK_SEEDS from SOAK_FIRST; a failure names its seed)
SOAK_SEEDS ?= 100000
SOAK_FIRST ?= 2000
soak: toolchain
	EMOSTREAM_SIM_SEEDS=$(SOAK_SEEDS) EMOSTREAM_SIM_FIRST=$(SOAK_FIRST) \
	  $(CARGO) test --release -p emostream-dataflow --lib simulation -- --nocapture

## fuzz: AFL++ on the decoders, five minutes per target, corpus under fuzz/, report under benches/reports/
fuzz: toolchain
	benches/fuzz.sh

## bench-replay: the replay benchmark report (10M events) under benches/reports/
bench-replay: toolchain
	benches/replay.sh

## bench-fanout: the broadcaster beside Bun and Node ws (pinned, installed by the bench), one client tool
bench-fanout: toolchain
	scripts/with-broker.sh benches/fanout.sh

## bench-fleet: 6 broadcasters of one cluster, 100,000 registered viewers, one broadcaster killed
bench-fleet: toolchain
	scripts/with-broker.sh benches/fleet.sh

## bench-brokers: tansu and noida-db side by side (empty fetches, an idle dataflow's CPU)
bench-brokers: toolchain
	benches/brokers.sh

## bench-e2e: end-to-end latency report (simulated traffic and viewers) under benches/reports/
bench-e2e: toolchain
	scripts/with-broker.sh benches/e2e.sh

## bench-micro: criterion micro-benchmarks of the hot paths, report under benches/reports/
bench-micro: toolchain
	benches/micro.sh

## bench-live: ingest and Kafka dataflow benchmark report under benches/reports/
bench-live: toolchain
	scripts/with-broker.sh benches/live.sh

clean:
	$(CARGO) clean
