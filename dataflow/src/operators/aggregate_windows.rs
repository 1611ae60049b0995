//! `aggregate_windows`: exact per-window totals over the users each worker owns.

use std::collections::BTreeMap;
use std::time::Duration;

use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;

use timely::dataflow::operators::generic::operator::empty;

use super::{Keep, user_route};
use crate::accumulator::WindowAccumulator;
use crate::record::{Amend, PartialWindow, Tap};

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
    fn aggregate_windows(self) -> Stream<'scope, i64, Vec<PartialWindow>>;

    /// Like [`aggregate_windows`](Self::aggregate_windows), with `amends` and `updates`.
    ///
    /// An amendment (routed like an event) comes after its window started, at a later time.
    /// A final window's totals are kept as long as `keep` says (until the frontier reaches
    /// its end plus the allowed lateness). Once the frontier passes an amendment's time, the
    /// amendment is added to its window's totals and what the shard's totals grew by goes out
    /// at that time. A window no event of this shard was in is kept from its first
    /// amendment. A window's final shard goes out at its start, its growth later: every shard
    /// not a snapshot adds to its window.
    ///
    /// With `updates`, every interval also the worker's exact totals so far of each open
    /// window that changed since its last snapshot (`snapshot_of: Some(worker)`).
    fn aggregate_windows_every(
        self,
        amends: Stream<'scope, i64, Vec<Amend>>,
        keep: Keep,
        updates: Option<Duration>,
    ) -> Stream<'scope, i64, Vec<PartialWindow>>;
}

/// A window being counted, and whether it changed since its last snapshot.
struct OpenWindow {
    capability: Capability<i64>,
    counts: WindowAccumulator,
    changed: bool,
}

/// A final window kept for amendments: its totals and what was sent of them.
struct KeptWindow {
    counts: WindowAccumulator,
    sent: PartialWindow,
}

impl KeptWindow {
    /// What the totals grew by since they were last sent.
    fn growth(&mut self, start: i64) -> PartialWindow {
        let now = self.counts.snapshot(start, 0);
        let growth = now.minus(&self.sent);
        self.sent = now;
        PartialWindow {
            snapshot_of: None,
            ..growth
        }
    }
}

impl<'scope> AggregateWindows<'scope> for Stream<'scope, i64, Vec<Tap>> {
    fn aggregate_windows(self) -> Stream<'scope, i64, Vec<PartialWindow>> {
        let scope = self.scope();
        let keep = Keep::none(model::WindowSize::default());
        self.aggregate_windows_every(empty(scope), keep, None)
    }

    // Long: the operator's closure holds its state: splitting it would spread one loop over several places.
    fn aggregate_windows_every(
        self,
        amends: Stream<'scope, i64, Vec<Amend>>,
        keep: Keep,
        updates: Option<Duration>,
    ) -> Stream<'scope, i64, Vec<PartialWindow>> {
        let route = Exchange::new(|tap: &Tap| user_route(&tap.user));
        let amend_route = Exchange::new(|amend: &Amend| user_route(&amend.tap.user));
        let scope = self.scope();
        let worker = scope.index() as u32;
        self.binary_frontier(
            amends,
            route,
            amend_route,
            "AggregateWindows",
            move |_capability, info| {
                let activator = scope.activator_for(info.address);
                let mut open: BTreeMap<i64, OpenWindow> = BTreeMap::new();
                let mut kept: BTreeMap<i64, KeptWindow> = BTreeMap::new();
                // Amendments by the time they came at, until the frontier passes it.
                let mut amending: BTreeMap<i64, (Capability<i64>, Vec<Amend>)> = BTreeMap::new();
                // Windows tend to be alike: size each new one like the last closed one.
                let mut hint = (0, 0);
                // Snapshots are taken at the wall clock's multiples of the interval, on every
                // worker at once, so the merge (just after them) sums snapshots of one moment.
                let mut last_slot = i64::MIN;
                move |(input, frontier), (amend_input, amend_frontier), output| {
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
                    let passed = |t: &i64| !frontier.less_equal(t) && !amend_frontier.less_equal(t);
                    amend_input.for_each_stamp(|time, batches| {
                        let Some(&at) = time.least() else { return };
                        let (_, amends) = amending
                            .entry(at)
                            .or_insert_with(|| (time.delayed(&at, 0), Vec::new()));
                        for batch in batches {
                            amends.append(batch);
                        }
                    });
                    while let Some(entry) = open.first_entry() {
                        if !passed(entry.key()) {
                            break;
                        }
                        let start = *entry.key();
                        let mut window = entry.remove();
                        hint = window.counts.size_hint();
                        let shard = window.counts.snapshot(start, 0);
                        let shard = PartialWindow {
                            snapshot_of: None,
                            ..shard
                        };
                        output.session(&window.capability).give(shard.clone());
                        if keep.keeps() {
                            let counts = window.counts;
                            kept.insert(
                                start,
                                KeptWindow {
                                    counts,
                                    sent: shard,
                                },
                            );
                        }
                    }
                    // Amendments once their time has passed, one time after the other, so what
                    // goes out at a time holds exactly the amendments of that time and before:
                    // a source notes them as counted once that time is published. Their windows
                    // started before it, so they are final here by then.
                    while let Some(entry) = amending.first_entry() {
                        if !passed(entry.key()) {
                            break;
                        }
                        let (capability, amends) = entry.remove();
                        let mut touched = std::collections::BTreeSet::new();
                        for amend in amends {
                            let start = amend.window_start;
                            debug_assert!(
                                start < *capability.time(),
                                "an amendment comes after its window"
                            );
                            let window = kept.entry(start).or_insert_with(|| KeptWindow {
                                counts: WindowAccumulator::default(),
                                sent: PartialWindow::empty(start),
                            });
                            window.counts.add(amend.tap.user, amend.tap.emoji);
                            touched.insert(start);
                        }
                        let mut session = output.session(&capability);
                        for start in touched {
                            if let Some(window) = kept.get_mut(&start) {
                                session.give(window.growth(start));
                            }
                        }
                    }
                    kept.retain(|&start, _| !passed(&(keep.released_at(start) - 1)));
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
            },
        )
    }
}
