//! `aggregate_windows`: exact per-window totals over the users each worker owns.

use std::collections::BTreeMap;

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
    fn aggregate_windows(self) -> Stream<'scope, i64, Vec<PartialWindow>>;
}

impl<'scope> AggregateWindows<'scope> for Stream<'scope, i64, Vec<Tap>> {
    fn aggregate_windows(self) -> Stream<'scope, i64, Vec<PartialWindow>> {
        let route = Exchange::new(|tap: &Tap| user_route(&tap.user));
        self.unary_frontier(route, "AggregateWindows", |_capability, _info| {
            let mut open: BTreeMap<i64, (Capability<i64>, WindowAccumulator)> = BTreeMap::new();
            // Windows tend to be alike: size each new one like the last closed one.
            let mut hint = (0, 0);
            move |(input, frontier), output| {
                input.for_each_stamp(|time, batches| {
                    let Some(&start) = time.least() else { return };
                    let (_, window) = open.entry(start).or_insert_with(|| {
                        (
                            time.delayed(&start, 0),
                            WindowAccumulator::with_capacity(hint),
                        )
                    });
                    for batch in batches {
                        for tap in batch.drain(..) {
                            window.add(tap.user, tap.emoji);
                        }
                    }
                });
                while let Some(entry) = open.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let start = *entry.key();
                    let (capability, window) = entry.remove();
                    hint = window.size_hint();
                    output.session(&capability).give(window.finish(start));
                }
            }
        })
    }
}
