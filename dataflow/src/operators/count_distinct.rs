//! `count_distinct`: the window totals formulated with differential dataflow.
//!
//! Each event becomes the update `(window, user, emoji)` at its window's time, and is
//! retracted one window later so the arrangements release closed windows. Counting and
//! distinct-counting these collections gives exactly the totals of `aggregate_windows`;
//! this formulation is the cross-check of the hand-written hot path.

use std::collections::BTreeMap;

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

use crate::record::{EmojiPartial, PartialWindow, Tap};

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
    ///         (input, taps.count_distinct(model::WindowSize::from_millis(2000).unwrap()).capture())
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
}

type Triple = (i64, CompactString, CompactString);

impl<'scope> CountDistinct<'scope> for Stream<'scope, i64, Vec<Tap>> {
    fn count_distinct(self, size: WindowSize) -> Stream<'scope, i64, Vec<PartialWindow>> {
        let scope = self.scope();
        let inserted: VecCollection<'scope, i64, Triple> = self
            .unary(Pipeline, "StampTaps", |_capability, _info| {
                move |input, output| {
                    input.for_each_stamp(|time, batches| {
                        let Some(&start) = time.least() else { return };
                        let Some(capability) = time.retain_least(0) else {
                            return;
                        };
                        let mut session = output.session(&capability);
                        for tap in batches.flat_map(|b| b.drain(..)) {
                            session.give(((start, tap.user, tap.emoji), start, 1isize));
                        }
                    });
                }
            })
            .as_collection();
        let width = size.millis();
        let triples = inserted
            .clone()
            .concat(inserted.delay(move |t| t + width).negate());

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

        scope.concatenate([
            partials(emoji_events, |((w, emoji), count)| {
                emoji_partial(w, emoji, count, 0)
            }),
            partials(emoji_users, |((w, emoji), users)| {
                emoji_partial(w, emoji, 0, users)
            }),
            partials(window_events, |(w, events)| window_partial(w, events, 0)),
            partials(window_users, |(w, users)| window_partial(w, 0, users)),
        ])
    }
}

fn emoji_partial(
    window_start: i64,
    emoji: CompactString,
    count: isize,
    unique_users: isize,
) -> PartialWindow {
    PartialWindow {
        window_start,
        events: 0,
        unique_users: 0,
        emojis: vec![EmojiPartial {
            emoji,
            count: count as u64,
            unique_users: unique_users as u64,
        }],
        snapshot_of: None,
    }
}

fn window_partial(window_start: i64, events: isize, unique_users: isize) -> PartialWindow {
    PartialWindow {
        window_start,
        events: events as u64,
        unique_users: unique_users as u64,
        emojis: Vec::new(),
        snapshot_of: None,
    }
}

/// The insertions of a count collection as partial windows; retractions (a window's counts
/// going away one window later) are not part of any report.
fn partials<'scope, D: differential_dataflow::Data>(
    counts: VecCollection<'scope, i64, D>,
    to_partial: impl Fn(D) -> PartialWindow + 'static,
) -> Stream<'scope, i64, Vec<PartialWindow>> {
    counts
        .inner
        .unary(Pipeline, "CountsToPartials", move |_capability, _info| {
            let mut by_time: BTreeMap<i64, Vec<PartialWindow>> = BTreeMap::new();
            move |input, output| {
                input.for_each_stamp(|stamp, batches| {
                    // A batch of differential output spans many times: each count goes out at
                    // its own time, its window's start.
                    for (data, time, diff) in batches.flat_map(|b| b.drain(..)) {
                        if diff > 0 {
                            by_time.entry(time).or_default().push(to_partial(data));
                        }
                    }
                    for (time, mut parts) in std::mem::take(&mut by_time) {
                        output
                            .session(&stamp.delayed(&time, 0))
                            .give_container(&mut parts);
                    }
                });
            }
        })
}
