//! `count_distinct`: the window totals formulated with differential dataflow.
//!
//! Each event becomes the update `(window, user, emoji)` at its window's time (an amendment
//! at its own, later time), and is retracted once the window is released (its end plus the
//! allowed lateness), so the arrangements forget windows no one can amend. Counting and
//! distinct-counting these collections gives exactly the totals of `aggregate_windows`: at
//! a window's time its final totals, at an amendment's time what they grew by (the
//! retraction of the old count and the insertion of the new, netted). This formulation is
//! the cross-check of the hand-written hot path.

use std::collections::BTreeMap;
use std::hash::Hash;

use compact_str::CompactString;
use differential_dataflow::AsCollection;
use differential_dataflow::VecCollection;
use differential_dataflow::operators::CountTotal;
use differential_dataflow::operators::ThresholdTotal;
use model::WindowSize;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Concatenate;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::generic::operator::empty;

use super::Keep;
use crate::record::{Amend, EmojiPartial, PartialWindow, Tap};

/// Counts events and distinct users per window with differential dataflow.
pub trait CountDistinct<'scope> {
    /// Per window, the exact totals as partial windows (one record per statistic).
    ///
    /// # Examples
    ///
    /// ```
    /// use dataflow::operators::CountDistinct;
    /// use dataflow::record::Tap;
    /// use timely::dataflow::operators::Capture;
    /// use timely::dataflow::operators::capture::Event;
    /// use timely::dataflow::operators::vec::Input;
    ///
    /// let captured = timely::execute_directly(|worker| {
    ///     let (mut input, captured) = worker.dataflow::<i64, _, _>(|scope| {
    ///         let (input, taps) = scope.new_input::<Tap>();
    ///         let size = model::WindowSize::from_millis(2000).unwrap();
    ///         (input, taps.count_distinct(size).capture())
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
    /// // One record per statistic: they add up to the window's totals.
    /// let events: u64 = out.iter().map(|p| p.events).sum();
    /// let users: u64 = out.iter().map(|p| p.unique_users).sum();
    /// assert_eq!((events, users), (3, 2));
    /// ```
    fn count_distinct(self, size: WindowSize) -> Stream<'scope, i64, Vec<PartialWindow>>;

    /// Like [`count_distinct`](Self::count_distinct), with `amends` of windows kept as `keep`
    /// says: at an amendment's time, what each statistic of its window grew by.
    fn count_distinct_amended(
        self,
        amends: Stream<'scope, i64, Vec<Amend>>,
        keep: Keep,
    ) -> Stream<'scope, i64, Vec<PartialWindow>>;
}

type Triple = (i64, CompactString, CompactString);

impl<'scope> CountDistinct<'scope> for Stream<'scope, i64, Vec<Tap>> {
    fn count_distinct(self, size: WindowSize) -> Stream<'scope, i64, Vec<PartialWindow>> {
        let scope = self.scope();
        self.count_distinct_amended(empty(scope), Keep::none(size))
    }

    fn count_distinct_amended(
        self,
        amends: Stream<'scope, i64, Vec<Amend>>,
        keep: Keep,
    ) -> Stream<'scope, i64, Vec<PartialWindow>> {
        let scope = self.scope();
        // Each event inserted at its time, and retracted when its window is released.
        let triples: VecCollection<'scope, i64, Triple> = self
            .binary(
                amends,
                Pipeline,
                Pipeline,
                "StampTaps",
                move |_capability, _info| {
                    move |input, amend_input, output| {
                        input.for_each_stamp(|time, batches| {
                            let Some(&start) = time.least() else { return };
                            let released = keep.released_at(start);
                            let capability = time.delayed(&start, 0);
                            let mut session = output.session(&capability);
                            for tap in batches.flat_map(|b| b.drain(..)) {
                                let triple = (start, tap.user, tap.emoji);
                                session.give((triple.clone(), start, 1isize));
                                session.give((triple, released, -1isize));
                            }
                        });
                        amend_input.for_each_stamp(|time, batches| {
                            let Some(&at) = time.least() else { return };
                            let capability = time.delayed(&at, 0);
                            let mut session = output.session(&capability);
                            for amend in batches.flat_map(|b| b.drain(..)) {
                                let start = amend.window_start;
                                // Sources amend only windows that started before.
                                let at = at.max(start);
                                let released = keep.released_at(start).max(at);
                                let triple = (start, amend.tap.user, amend.tap.emoji);
                                session.give((triple.clone(), at, 1isize));
                                session.give((triple, released, -1isize));
                            }
                        });
                    }
                },
            )
            .as_collection();

        let emoji_events = triples.clone().map(|(w, _, e)| (w, e)).count_total();
        let emoji_users = triples
            .clone()
            .distinct_total()
            .map(|(w, _, e)| (w, e))
            .count_total();
        let window_events = triples.clone().map(|(w, _, _)| w).count_total();
        let window_users = triples
            .map(|(w, u, _)| (w, u))
            .distinct_total()
            .map(|(w, _)| w)
            .count_total();

        let by_emoji = |(w, _): &(i64, CompactString)| *w;
        let by_window = |w: &i64| *w;
        scope.concatenate([
            growth(emoji_events, keep, by_emoji, |(w, emoji), count| {
                emoji_partial(w, emoji, count, 0)
            }),
            growth(emoji_users, keep, by_emoji, |(w, emoji), users| {
                emoji_partial(w, emoji, 0, users)
            }),
            growth(window_events, keep, by_window, |w, events| {
                window_partial(w, events, 0)
            }),
            growth(window_users, keep, by_window, |w, users| {
                window_partial(w, 0, users)
            }),
        ])
    }
}

fn emoji_partial(
    window_start: i64,
    emoji: CompactString,
    count: u64,
    unique_users: u64,
) -> PartialWindow {
    PartialWindow {
        emojis: vec![EmojiPartial {
            emoji,
            count,
            unique_users,
        }],
        ..PartialWindow::empty(window_start)
    }
}

fn window_partial(window_start: i64, events: u64, unique_users: u64) -> PartialWindow {
    PartialWindow {
        events,
        unique_users,
        ..PartialWindow::empty(window_start)
    }
}

/// What each count grew by at each time, as partial windows: a window's count at its own
/// time, and at an amendment's time the new count minus the old. The retractions of a
/// released window are not part of any report.
fn growth<'scope, K>(
    counts: VecCollection<'scope, i64, (K, isize)>,
    keep: Keep,
    window_of: impl Fn(&K) -> i64 + 'static,
    to_partial: impl Fn(K, u64) -> PartialWindow + 'static,
) -> Stream<'scope, i64, Vec<PartialWindow>>
where
    K: differential_dataflow::Data + Hash,
{
    counts
        .inner
        .unary(Pipeline, "CountsToPartials", move |_capability, _info| {
            move |input, output| {
                input.for_each_stamp(|stamp, batches| {
                    // A batch of differential output spans many times: each count goes out at
                    // its own time.
                    let mut by_time: BTreeMap<i64, foldhash::HashMap<K, i64>> = BTreeMap::new();
                    for ((key, count), time, diff) in batches.flat_map(|b| b.drain(..)) {
                        if time >= keep.released_at(window_of(&key)) {
                            continue;
                        }
                        *by_time.entry(time).or_default().entry(key).or_default() +=
                            diff as i64 * count as i64;
                    }
                    for (time, nets) in by_time {
                        let mut parts: Vec<PartialWindow> = nets
                            .into_iter()
                            .filter(|(_, net)| *net != 0)
                            .map(|(key, net)| {
                                debug_assert!(net > 0, "a window's counts only grow");
                                to_partial(key, net.max(0) as u64)
                            })
                            .collect();
                        output
                            .session(&stamp.delayed(&time, 0))
                            .give_container(&mut parts);
                    }
                });
            }
        })
}
