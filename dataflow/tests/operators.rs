//! Small dataflows around the window operators: captured output, asserted record for record.

use std::sync::{Arc, Mutex, mpsc};

use dataflow::operators::{AggregateWindows, CountDistinct, MergeWindows};
use dataflow::record::Tap;
use model::{ReportConfig, WindowReport, WindowSize};
use timely::dataflow::operators::capture::Event;
use timely::dataflow::operators::vec::Input;
use timely::dataflow::operators::{Capture, Probe};
use timely::dataflow::{InputHandleVec, ProbeHandle};

const SIZE: i64 = 2000;

fn tap(user: &str, emoji: &str) -> Tap {
    Tap {
        user: user.into(),
        emoji: emoji.into(),
    }
}

/// (window start, user, emoji) events, shared round-robin among the workers.
fn events() -> Vec<(i64, &'static str, &'static str)> {
    let users = ["ana", "bo", "cy", "di", "ed"];
    let emojis = ["🔥", "😂", "👏"];
    let mut out = Vec::new();
    for window in [-2000, 0, 2000, 6000] {
        for i in 0..37 {
            out.push((
                window,
                users[(i * 7 + window as usize / 1000) % 5],
                emojis[i % 3],
            ));
        }
    }
    out
}

/// What a plain count of `events` gives.
fn expected() -> Vec<(i64, Vec<WindowReport>)> {
    counted(&events())
        .into_iter()
        .map(|(w, report)| (w, vec![report]))
        .collect()
}

/// The exact report of each window of `(window start, user, emoji)` events.
fn counted(events: &[(i64, &str, &str)]) -> std::collections::BTreeMap<i64, WindowReport> {
    use std::collections::{BTreeMap, BTreeSet};
    type Users<'a> = BTreeSet<&'a str>;
    type Emojis<'a> = BTreeMap<&'a str, (u64, Users<'a>)>;
    let mut windows: BTreeMap<i64, (u64, Users, Emojis)> = BTreeMap::new();
    for &(w, u, e) in events {
        let window = windows.entry(w).or_default();
        window.0 += 1;
        window.1.insert(u);
        let emoji = window.2.entry(e).or_default();
        emoji.0 += 1;
        emoji.1.insert(u);
    }
    windows
        .into_iter()
        .map(|(w, (events, users, emojis))| {
            let totals = emojis
                .into_iter()
                .map(|(e, (count, us))| model::report::EmojiTotals {
                    emoji: e.into(),
                    count,
                    unique_users: us.len() as u64,
                });
            let report = WindowReport::build(
                w,
                w + SIZE,
                events,
                users.len() as u64,
                totals,
                &ReportConfig::default(),
            );
            (w, report)
        })
        .collect()
}

/// Runs the operators on `workers` workers, feeding the events window by window and
/// waiting for each advance of the input to reach the output; checks that the last window
/// stays open while the input may still add to it.
fn run(workers: usize, differential: bool) -> Vec<(i64, Vec<WindowReport>)> {
    let (send, recv) = mpsc::channel::<Event<i64, Vec<WindowReport>>>();
    let send = Arc::new(Mutex::new(send));
    timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let send = send.lock().unwrap().clone();
        let mut input = InputHandleVec::<i64, Tap>::new();
        let probe = ProbeHandle::new();
        let size = WindowSize::from_millis(SIZE).unwrap();
        worker.dataflow::<i64, _, _>(|scope| {
            let taps = scope.input_from(&mut input);
            let partials = if differential {
                taps.count_distinct(size)
            } else {
                taps.aggregate_windows()
            };
            partials
                .merge_windows(size, ReportConfig::default())
                .probe_with(&probe)
                .capture_into(send);
        });
        input.advance_to(-2000);
        for (i, (window, user, emoji)) in events().into_iter().enumerate() {
            if window > *input.time() {
                input.advance_to(window);
                worker.step_while(|| probe.less_than(input.time()));
            }
            if i % peers == index {
                input.send(tap(user, emoji));
            }
        }
        // An idle input that stays open holds the last window back ...
        input.advance_to(6000);
        for _ in 0..50 {
            worker.step();
        }
        assert!(
            probe.less_equal(&6000),
            "window 6000 must stay open while the input may add to it"
        );
        // ... and closing it releases the window.
        drop(input);
        worker.step_while(|| !probe.done());
    })
    .unwrap();
    reports_by_time(recv)
}

#[test]
fn timely_operator_counts_exactly_on_1_2_and_4_workers() {
    for workers in [1, 2, 4] {
        assert_eq!(run(workers, false), expected(), "{workers} workers");
    }
}

#[test]
fn differential_formulation_counts_the_same() {
    for workers in [1, 2] {
        assert_eq!(run(workers, true), expected(), "{workers} workers");
    }
}

#[test]
fn an_empty_input_emits_nothing() {
    let reports = timely::execute_directly(|worker| {
        worker.dataflow::<i64, _, _>(|scope| {
            let (_input, taps) = scope.new_input::<Tap>();
            taps.aggregate_windows()
                .merge_windows(WindowSize::default(), ReportConfig::default())
                .capture()
        })
    });
    assert!(reports_by_time(reports).is_empty());
}

/// Captured reports grouped by the time they were emitted at, in time order.
fn reports_by_time(
    recv: mpsc::Receiver<Event<i64, Vec<WindowReport>>>,
) -> Vec<(i64, Vec<WindowReport>)> {
    let mut by_time = std::collections::BTreeMap::<i64, Vec<WindowReport>>::new();
    for event in recv {
        if let Event::Messages(stamp, data) = event {
            let time = *stamp.least().expect("a message has a time");
            by_time.entry(time).or_default().extend(data);
        }
    }
    by_time.into_iter().collect()
}

/// Users the worker `worker` of `peers` (a power of two) owns: timely's exchange sends a
/// record to the worker its hash names, masked by the worker count.
fn users_of(worker: u64, peers: u64, count: usize) -> Vec<&'static str> {
    let names = [
        "ana", "bo", "cy", "di", "ed", "flo", "gus", "hal", "ivy", "jo", "kai", "lu", "mo", "ned",
        "oz", "pia",
    ];
    let mine: Vec<&str> = names
        .into_iter()
        .filter(|u| dataflow::operators::user_route(u) & (peers - 1) == worker)
        .take(count)
        .collect();
    assert_eq!(mine.len(), count, "enough users of worker {worker}");
    mine
}

/// Amendments merged from several workers: at one time both workers' shards of a window
/// grow, and one of them grows a window it had no event of before its final. Every final
/// and revision equals the plain count of what it covers, revisions increase, for both
/// engines and 1, 2 and 4 workers.
#[test]
// Long: the scenario, its expected messages and the run over both engines and three worker counts, in one place.
fn revisions_merge_what_every_worker_amended_at_one_time_for_both_engines() {
    use dataflow::operators::{CountConfig, CountWindows, Engine, Keep};
    use dataflow::record::{Amend, WindowUpdate};
    use model::report::WindowState;

    let (a, b) = (users_of(0, 2, 2), users_of(1, 2, 2));
    // (time sent at, window start, user, emoji): taps at their window's start, amendments
    // (sent at a later time) of windows whose final went out.
    let taps = [
        (0, 0, a[0], "🔥"),
        (0, 0, a[1], "🔥"),
        (2000, 2000, a[0], "🔥"),
        (2000, 2000, b[0], "😂"),
    ];
    let amends = [
        // On two workers, worker 1 had nothing in window 0: its first shard of it is growth.
        (4000, 0, b[0], "😂"),
        (4000, 0, a[0], "😂"),
        (4000, 0, a[1], "🔥"),
        // Both workers' shards of window 2000 grow at 4000.
        (4000, 2000, b[1], "🔥"),
        (4000, 2000, a[1], "👏"),
        // Again, a user already counted.
        (6000, 0, b[0], "😂"),
    ];
    // Each window's messages: its final, then a revision per time it was amended, each the
    // plain count of the taps and amendments sent before that time's end.
    let mut want: Vec<(i64, i64, WindowState, WindowReport)> = Vec::new();
    for (at, state) in [
        (2000, WindowState::Final),
        (4000, WindowState::Final),
        (6000, WindowState::Revised),
        (8000, WindowState::Revised),
    ] {
        let covered: Vec<(i64, &str, &str)> = taps
            .iter()
            .chain(&amends)
            .filter(|(sent, ..)| *sent < at)
            .map(|&(_, w, u, e)| (w, u, e))
            .collect();
        let amended_now: std::collections::BTreeSet<i64> = amends
            .iter()
            .filter(|(sent, ..)| *sent == at - 2000)
            .map(|(_, w, ..)| *w)
            .collect();
        for (window, report) in counted(&covered) {
            let due = match state {
                WindowState::Final => window + SIZE == at,
                _ => amended_now.contains(&window),
            };
            if due {
                want.push((window, at - 2000, state, report));
            }
        }
    }
    want.sort_by_key(|(window, time, ..)| (*window, *time));
    for engine in [Engine::Timely, Engine::Differential] {
        for workers in [1, 2, 4] {
            let (send, recv) = mpsc::channel::<Event<i64, Vec<WindowUpdate>>>();
            let send = Arc::new(Mutex::new(send));
            timely::execute(timely::Config::process(workers), move |worker| {
                let send = send.lock().unwrap().clone();
                let mut tap_input = InputHandleVec::<i64, Tap>::new();
                let mut amend_input = InputHandleVec::<i64, Amend>::new();
                let size = WindowSize::from_millis(SIZE).unwrap();
                let spec = model::WindowSpec::new(vec![size], std::time::Duration::ZERO)
                    .unwrap()
                    .with_allowed_lateness(std::time::Duration::from_secs(10))
                    .unwrap();
                worker.dataflow::<i64, _, _>(|scope| {
                    let amends = scope.input_from(&mut amend_input);
                    scope
                        .input_from(&mut tap_input)
                        .count_window_updates(
                            amends,
                            CountConfig {
                                engine,
                                keep: Keep::new(size, &spec),
                                report: ReportConfig::default(),
                                updates: None,
                            },
                        )
                        .capture_into(send);
                });
                // Worker 0 reads everything; the operators route each user to its owner.
                if worker.index() == 0 {
                    for time in [0, 2000, 4000, 6000] {
                        tap_input.advance_to(time);
                        amend_input.advance_to(time);
                        for &(_, _, user, emoji) in taps.iter().filter(|t| t.0 == time) {
                            tap_input.send(tap(user, emoji));
                        }
                        for &(_, window, user, emoji) in amends.iter().filter(|t| t.0 == time) {
                            amend_input.send(Amend {
                                window_start: window,
                                tap: tap(user, emoji),
                            });
                        }
                    }
                }
            })
            .unwrap();
            let mut got: Vec<(i64, i64, WindowState, u64, WindowReport)> = recv
                .into_iter()
                .filter_map(|event| match event {
                    Event::Messages(time, updates) => Some((*time.least().unwrap(), updates)),
                    Event::Progress(_) => None,
                })
                .flat_map(|(time, updates)| {
                    updates
                        .into_iter()
                        .map(move |u| (u.report.window_start, time, u.state, u.revision, u.report))
                })
                .collect();
            got.sort_by_key(|(window, time, ..)| (*window, *time));
            let tag = format!("{engine:?} on {workers} workers");
            for pair in got.windows(2).filter(|p| p[0].0 == p[1].0) {
                assert!(pair[0].3 < pair[1].3, "{tag}: revisions increase: {got:?}");
            }
            let got: Vec<_> = got
                .into_iter()
                .map(|(window, time, state, _, report)| (window, time, state, report))
                .collect();
            assert_eq!(got, want, "{tag}");
        }
    }
}
