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
    use std::collections::{BTreeMap, BTreeSet};
    type Users<'a> = BTreeSet<&'a str>;
    type Emojis<'a> = BTreeMap<&'a str, (u64, Users<'a>)>;
    let mut windows: BTreeMap<i64, (u64, Users, Emojis)> = BTreeMap::new();
    for (w, u, e) in events() {
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
            (w, vec![report])
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
