//! `merge_windows`: adds up the per-shard totals of each window into its `WindowReport`.

use std::collections::BTreeMap;

use compact_str::CompactString;
use foldhash::HashMap;
use model::report::EmojiTotals;
use model::{ReportConfig, WindowReport, WindowSize};
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;

use crate::record::PartialWindow;

/// Merges window shards.
pub trait MergeWindows<'scope> {
    /// Sends every shard to worker 0, which emits each window's report, in window order,
    /// once the frontier has passed it.
    ///
    /// # Examples
    ///
    /// ```
    /// use dataflow::operators::MergeWindows;
    /// use dataflow::record::{EmojiPartial, PartialWindow};
    /// use model::{ReportConfig, WindowSize};
    /// use timely::dataflow::operators::Capture;
    /// use timely::dataflow::operators::capture::Event;
    /// use timely::dataflow::operators::vec::Input;
    ///
    /// let size = WindowSize::from_millis(2000).unwrap();
    /// let captured = timely::execute_directly(move |worker| {
    ///     let (mut input, captured) = worker.dataflow::<i64, _, _>(|scope| {
    ///         let (input, shards) = scope.new_input::<PartialWindow>();
    ///         (input, shards.merge_windows(size, ReportConfig::default()).capture())
    ///     });
    ///     input.advance_to(0);
    ///     // Two shards of the window [0, 2000): their users are apart, so totals add up.
    ///     for (events, users) in [(3, 2), (5, 4)] {
    ///         let emojis = vec![EmojiPartial { emoji: "🔥".into(), count: events, unique_users: users }];
    ///         input.send(PartialWindow { window_start: 0, events, unique_users: users, emojis });
    ///     }
    ///     captured
    /// });
    /// let reports: Vec<_> = captured
    ///     .try_iter()
    ///     .filter_map(|e| if let Event::Messages(_, data) = e { Some(data) } else { None })
    ///     .flatten()
    ///     .collect();
    /// assert_eq!((reports[0].events, reports[0].unique_users, reports[0].emojis[0].count), (8, 6, 8));
    /// ```
    fn merge_windows(
        self,
        size: WindowSize,
        config: ReportConfig,
    ) -> Stream<'scope, i64, Vec<WindowReport>>;
}

#[derive(Default)]
struct Totals {
    events: u64,
    unique_users: u64,
    emojis: HashMap<CompactString, (u64, u64)>,
}

impl<'scope> MergeWindows<'scope> for Stream<'scope, i64, Vec<PartialWindow>> {
    fn merge_windows(
        self,
        size: WindowSize,
        config: ReportConfig,
    ) -> Stream<'scope, i64, Vec<WindowReport>> {
        self.unary_frontier(
            Exchange::new(|_: &PartialWindow| 0),
            "MergeWindows",
            move |_capability, _info| {
                let mut open: BTreeMap<i64, (Capability<i64>, Totals)> = BTreeMap::new();
                move |(input, frontier), output| {
                    input.for_each_stamp(|time, batches| {
                        // Shards travel at their window's start.
                        let Some(&start) = time.least() else { return };
                        let (_, totals) = open
                            .entry(start)
                            .or_insert_with(|| (time.delayed(&start, 0), Totals::default()));
                        for part in batches.flat_map(|b| b.drain(..)) {
                            debug_assert_eq!(
                                part.window_start, start,
                                "a window shard travels at its window start"
                            );
                            totals.events += part.events;
                            totals.unique_users += part.unique_users;
                            for emoji in part.emojis {
                                let entry = totals.emojis.entry(emoji.emoji).or_default();
                                entry.0 += emoji.count;
                                entry.1 += emoji.unique_users;
                            }
                        }
                    });
                    while let Some(entry) = open.first_entry() {
                        if frontier.less_equal(entry.key()) {
                            break;
                        }
                        let start = *entry.key();
                        let (capability, totals) = entry.remove();
                        let emojis =
                            totals
                                .emojis
                                .into_iter()
                                .map(|(emoji, (count, unique_users))| EmojiTotals {
                                    emoji: emoji.into(),
                                    count,
                                    unique_users,
                                });
                        let report = WindowReport::build(
                            start,
                            size.end_of(start),
                            totals.events,
                            totals.unique_users,
                            emojis,
                            &config,
                        );
                        output.session(&capability).give(report);
                    }
                }
            },
        )
    }
}
