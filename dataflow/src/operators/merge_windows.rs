//! `merge_windows`: adds up the per-shard totals of each window into its `WindowReport`.

use std::collections::BTreeMap;
use std::time::Duration;

use compact_str::CompactString;
use foldhash::HashMap;
use model::report::{EmojiTotals, WindowState};
use model::{ReportConfig, WindowReport, WindowSize};
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Map;

use super::Keep;
use crate::record::{PartialWindow, WindowUpdate};

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
    ///         input.send(PartialWindow { window_start: 0, events, unique_users: users, emojis, snapshot_of: None });
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
    ) -> Stream<'scope, i64, Vec<WindowReport>>
    where
        Self: Sized,
    {
        self.merge_window_updates(Keep::none(size), config, None)
            .map(|update: WindowUpdate| update.report)
    }

    /// Like [`merge_windows`](Self::merge_windows), as updates: each window's final report
    /// with the next revision, and with `updates`, at most once an interval the exact totals
    /// of the events read so far of each open window that changed (the sum of every worker's
    /// latest snapshot), each with a higher revision than the window's last.
    ///
    /// A final window's totals are kept as `keep` says. Shards of it that come after its
    /// start (what amendments added) are added to them once the frontier passes their time,
    /// and the window goes out again at that time, `Revised`, with the next revision: one
    /// message per window for all the amendments of one time, from every worker. A window
    /// that had no final (no event was on time in it) goes out `Revised` too: its implicit
    /// final was empty.
    ///
    /// Revisions: finals only, each final is revision 1. With updates, a revision is the
    /// wall clock when the message was made (ms since the epoch; one more than the window's
    /// last if the clock has not moved on), so a dataflow restarted in the middle of a window
    /// never sends a lower revision than the run before it did.
    fn merge_window_updates(
        self,
        keep: Keep,
        config: ReportConfig,
        updates: Option<Duration>,
    ) -> Stream<'scope, i64, Vec<WindowUpdate>>;
}

#[derive(Default, Clone)]
struct Totals {
    events: u64,
    unique_users: u64,
    emojis: HashMap<CompactString, (u64, u64)>,
}

impl Totals {
    fn add(&mut self, part: &PartialWindow) {
        self.events += part.events;
        self.unique_users += part.unique_users;
        for emoji in &part.emojis {
            let entry = self.emojis.entry(emoji.emoji.clone()).or_default();
            entry.0 += emoji.count;
            entry.1 += emoji.unique_users;
        }
    }

    fn report(&self, start: i64, size: WindowSize, config: &ReportConfig) -> WindowReport {
        let emojis = self
            .emojis
            .iter()
            .map(|(emoji, &(count, unique_users))| EmojiTotals {
                emoji: emoji.to_string(),
                count,
                unique_users,
            });
        WindowReport::build(
            start,
            size.end_of(start),
            self.events,
            self.unique_users,
            emojis,
            config,
        )
    }
}

/// A window being merged on worker 0, open or kept for amendments after its final.
struct MergingWindow {
    /// The window's start, while it is open (its shards and snapshots travel at it).
    capability: Option<Capability<i64>>,
    /// What the workers' shards add up to so far (final totals, then amendments).
    totals: Totals,
    /// Each worker's latest snapshot while the window is open.
    snapshots: BTreeMap<u32, PartialWindow>,
    /// Whether a snapshot came since the last open update.
    changed: bool,
    /// The revision of the last update sent.
    revision: u64,
}

impl MergingWindow {
    fn new(revision: u64) -> Self {
        MergingWindow {
            capability: None,
            totals: Totals::default(),
            snapshots: BTreeMap::new(),
            changed: false,
            revision,
        }
    }
}

impl<'scope> MergeWindows<'scope> for Stream<'scope, i64, Vec<PartialWindow>> {
    // Long: the operator's closure holds its state: splitting it would spread one loop over several places.
    fn merge_window_updates(
        self,
        keep: Keep,
        config: ReportConfig,
        updates: Option<Duration>,
    ) -> Stream<'scope, i64, Vec<WindowUpdate>> {
        let scope = self.scope();
        let size = keep.size();
        self.unary_frontier(
            Exchange::new(|_: &PartialWindow| 0),
            "MergeWindows",
            move |_capability, info| {
                let activator = scope.activator_for(info.address);
                let mut open: BTreeMap<i64, MergingWindow> = BTreeMap::new();
                let mut kept: BTreeMap<i64, MergingWindow> = BTreeMap::new();
                // What amendments added, by the time it came at, until the frontier passes it.
                let mut growing: BTreeMap<i64, (Capability<i64>, Vec<PartialWindow>)> =
                    BTreeMap::new();
                // Just after the workers' snapshots (taken at the wall clock's multiples of the
                // interval): a fifth of the interval for them to arrive.
                let mut last_slot = i64::MIN;
                move |(input, frontier), output| {
                    input.for_each_stamp(|time, batches| {
                        let Some(&at) = time.least() else { return };
                        for part in batches.flat_map(|b| b.drain(..)) {
                            let start = part.window_start;
                            if start < at && part.snapshot_of.is_none() {
                                // What amendments added, after the window's time.
                                growing
                                    .entry(at)
                                    .or_insert_with(|| (time.delayed(&at, 0), Vec::new()))
                                    .1
                                    .push(part);
                                continue;
                            }
                            debug_assert_eq!(start, at, "a window's shards travel at its start");
                            let window = open.entry(start).or_insert_with(|| MergingWindow::new(0));
                            if window.capability.is_none() {
                                window.capability = Some(time.delayed(&start, 0));
                            }
                            match part.snapshot_of {
                                Some(worker) => {
                                    window.snapshots.insert(worker, part);
                                    window.changed = true;
                                }
                                None => window.totals.add(&part),
                            }
                        }
                    });
                    let passed = |t: &i64| !frontier.less_equal(t);
                    while let Some(entry) = open.first_entry() {
                        if !passed(entry.key()) {
                            break;
                        }
                        let start = *entry.key();
                        let mut window = entry.remove();
                        let Some(capability) = window.capability.take() else {
                            continue;
                        };
                        window.revision = next_revision(window.revision, updates);
                        let update = WindowUpdate {
                            report: window.totals.report(start, size, &config),
                            state: WindowState::Final,
                            revision: window.revision,
                        };
                        output.session(&capability).give(update);
                        if keep.keeps() {
                            window.snapshots.clear();
                            kept.insert(start, window);
                        }
                    }
                    // Amendments once their time has passed, one time after the other: a
                    // revision at a time holds exactly what was amended at it and before.
                    while let Some(entry) = growing.first_entry() {
                        if !passed(entry.key()) {
                            break;
                        }
                        let (capability, parts) = entry.remove();
                        let mut touched = std::collections::BTreeSet::new();
                        for part in parts {
                            let start = part.window_start;
                            // A window without a final (no event on time) had an empty one.
                            kept.entry(start)
                                .or_insert_with(|| MergingWindow::new(next_revision(0, updates)))
                                .totals
                                .add(&part);
                            touched.insert(start);
                        }
                        let mut session = output.session(&capability);
                        for start in touched {
                            let Some(window) = kept.get_mut(&start) else {
                                continue;
                            };
                            window.revision = next_revision(window.revision, updates);
                            session.give(WindowUpdate {
                                report: window.totals.report(start, size, &config),
                                state: WindowState::Revised,
                                revision: window.revision,
                            });
                        }
                    }
                    kept.retain(|&start, _| !passed(&(keep.released_at(start) - 1)));
                    let Some(every) = updates else { return };
                    let (slot, until_next) = super::update_slot(every, every / 5);
                    if slot > last_slot {
                        last_slot = slot;
                        for (&start, window) in open.iter_mut().filter(|(_, w)| w.changed) {
                            let Some(capability) = &window.capability else {
                                continue;
                            };
                            window.changed = false;
                            window.revision = next_revision(window.revision, updates);
                            let mut so_far = Totals::default();
                            for part in window.snapshots.values() {
                                so_far.add(part);
                            }
                            let update = WindowUpdate {
                                report: so_far.report(start, size, &config),
                                state: WindowState::Open,
                                revision: window.revision,
                            };
                            output.session(capability).give(update);
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

/// The revision after `last`: with updates, the wall clock if it has moved on.
fn next_revision(last: u64, updates: Option<Duration>) -> u64 {
    match updates {
        Some(_) => (last + 1).max(model::now_ms().max(0) as u64),
        None => last + 1,
    }
}
