//! `aggregate_windows`: exact per-window totals over the users each worker owns.

use std::collections::BTreeMap;
use std::time::Duration;

use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;

use super::user_route;
use crate::accumulator::WindowAccumulator;
use crate::record::{PartialWindow, Tap};

/// Counts events per window.
pub trait AggregateWindows<'scope> {
    /// Routes each event to the worker owning its user and emits, once the input frontier
    /// has passed a window, that worker's exact totals of the window.
    ///
    /// # Examples
    ///
    /// ```
    /// use dataflow::operators::AggregateWindows;
    /// use dataflow::record::Tap;
    /// use timely::dataflow::operators::Capture;
    /// use timely::dataflow::operators::capture::Event;
    /// use timely::dataflow::operators::vec::Input;
    ///
    /// let captured = timely::execute_directly(|worker| {
    ///     let (mut input, captured) = worker.dataflow::<i64, _, _>(|scope| {
    ///         let (input, taps) = scope.new_input::<Tap>();
    ///         (input, taps.aggregate_windows().capture())
    ///     });
    ///     input.advance_to(2000); // the window [2000, 4000)
    ///     for (user, emoji) in [("u1", "🔥"), ("u2", "🔥"), ("u1", "😂")] {
    ///         input.send(Tap { user: user.into(), emoji: emoji.into() });
    ///     }
    ///     captured
    /// });
    /// let out: Vec<_> = captured
    ///     .try_iter()
    ///     .filter_map(|e| if let Event::Messages(_, data) = e { Some(data) } else { None })
    ///     .flatten()
    ///     .collect();
    /// // One worker owns every user here: its shard is the whole window.
    /// assert_eq!(out.len(), 1);
    /// assert_eq!((out[0].window_start, out[0].events, out[0].unique_users), (2000, 3, 2));
    /// ```
    fn aggregate_windows(self) -> Stream<'scope, i64, Vec<PartialWindow>>
    where
        Self: Sized,
    {
        self.aggregate_windows_every(None)
    }

    /// Like [`aggregate_windows`](Self::aggregate_windows), and with `updates`, every
    /// interval also the worker's exact totals so far of each open window that changed
    /// since its last snapshot (`snapshot_of: Some(worker)`).
    fn aggregate_windows_every(
        self,
        updates: Option<Duration>,
    ) -> Stream<'scope, i64, Vec<PartialWindow>>;
}

/// A window being counted, and whether it changed since its last snapshot.
struct OpenWindow {
    capability: Capability<i64>,
    counts: WindowAccumulator,
    changed: bool,
}

impl<'scope> AggregateWindows<'scope> for Stream<'scope, i64, Vec<Tap>> {
    fn aggregate_windows_every(
        self,
        updates: Option<Duration>,
    ) -> Stream<'scope, i64, Vec<PartialWindow>> {
        let route = Exchange::new(|tap: &Tap| user_route(&tap.user));
        let scope = self.scope();
        let worker = scope.index() as u32;
        self.unary_frontier(route, "AggregateWindows", move |_capability, info| {
            let activator = scope.activator_for(info.address);
            let mut open: BTreeMap<i64, OpenWindow> = BTreeMap::new();
            // Windows tend to be alike: size each new one like the last closed one.
            let mut hint = (0, 0);
            // Snapshots are taken at the wall clock's multiples of the interval, on every
            // worker at once, so the merge (just after them) sums snapshots of one moment.
            let mut last_slot = i64::MIN;
            move |(input, frontier), output| {
                input.for_each_stamp(|time, batches| {
                    let Some(&start) = time.least() else { return };
                    let window = open.entry(start).or_insert_with(|| OpenWindow {
                        capability: time.delayed(&start, 0),
                        counts: WindowAccumulator::with_capacity(hint),
                        changed: false,
                    });
                    for batch in batches {
                        for tap in batch.drain(..) {
                            window.counts.add(tap.user, tap.emoji);
                        }
                    }
                    window.changed = true;
                });
                while let Some(entry) = open.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let start = *entry.key();
                    let window = entry.remove();
                    hint = window.counts.size_hint();
                    output
                        .session(&window.capability)
                        .give(window.counts.finish(start));
                }
                let Some(every) = updates else { return };
                let (slot, until_next) = super::update_slot(every, Duration::ZERO);
                if slot > last_slot {
                    last_slot = slot;
                    for (&start, window) in open.iter_mut().filter(|(_, w)| w.changed) {
                        window.changed = false;
                        output
                            .session(&window.capability)
                            .give(window.counts.snapshot(start, worker));
                    }
                }
                if !open.is_empty() {
                    activator.activate_after(until_next);
                }
            }
        })
    }
}
