//! `count_windows`: the window reports of a stream of on-time events, with either engine.

use std::time::Duration;

use model::{ReportConfig, WindowReport, WindowSize, WindowSpec};
use timely::dataflow::Stream;
use timely::dataflow::operators::generic::operator::empty;
use timely::dataflow::operators::vec::Map;

use super::{AggregateWindows, CountDistinct, Keep, MergeWindows};
use crate::record::{Amend, Tap, WindowUpdate};

/// Which implementation counts the windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// The hand-written timely operator (fastest).
    #[default]
    Timely,
    /// The differential-dataflow formulation (the cross-check).
    Differential,
}

/// How windows are counted and reported.
#[derive(Debug, Clone, Copy)]
pub struct CountConfig {
    /// Which implementation counts.
    pub engine: Engine,
    /// The window size, and how long final windows are kept for amendments.
    pub keep: Keep,
    /// Scaling and filtering of the reports.
    pub report: ReportConfig,
    /// Open updates at this interval (timely engine only), or finals only.
    pub updates: Option<Duration>,
}

impl CountConfig {
    /// Windows of `size` with the allowed lateness of `spec`, finals only.
    pub fn new(engine: Engine, size: WindowSize, spec: &WindowSpec, report: ReportConfig) -> Self {
        CountConfig {
            engine,
            keep: Keep::new(size, spec),
            report,
            updates: None,
        }
    }
}

/// Counts windows.
pub trait CountWindows<'scope> {
    /// Counts each window of `size` exactly with `engine` (taps travel at their window's
    /// start) and emits its report on worker 0 once the frontier has passed it.
    ///
    /// # Examples
    ///
    /// ```
    /// use dataflow::operators::{CountWindows, Engine};
    /// use dataflow::record::Tap;
    /// use model::{ReportConfig, WindowSize};
    /// use timely::dataflow::operators::capture::Event;
    /// use timely::dataflow::operators::Capture;
    /// use timely::dataflow::operators::vec::Input;
    ///
    /// let size = WindowSize::from_millis(2000).unwrap();
    /// let reports = timely::execute_directly(move |worker| {
    ///     let (mut input, reports) = worker.dataflow::<i64, _, _>(|scope| {
    ///         let (input, taps) = scope.new_input::<Tap>();
    ///         let reports = taps
    ///             .count_windows(Engine::Timely, size, ReportConfig::default())
    ///             .capture();
    ///         (input, reports)
    ///     });
    ///     // Taps travel at their window's start: here the window [2000, 4000).
    ///     input.advance_to(2000);
    ///     for (user, emoji) in [("u1", "🔥"), ("u2", "🔥"), ("u1", "😂")] {
    ///         input.send(Tap { user: user.into(), emoji: emoji.into() });
    ///     }
    ///     reports
    /// });
    /// let reports: Vec<_> = reports
    ///     .try_iter()
    ///     .filter_map(|event| match event {
    ///         Event::Messages(_, reports) => Some(reports),
    ///         Event::Progress(_) => None,
    ///     })
    ///     .flatten()
    ///     .collect();
    /// assert_eq!(reports.len(), 1);
    /// let window = &reports[0];
    /// assert_eq!((window.window_start, window.events, window.unique_users), (2000, 3, 2));
    /// assert_eq!((window.emojis[0].emoji.as_str(), window.emojis[0].count), ("🔥", 2));
    /// ```
    fn count_windows(
        self,
        engine: Engine,
        size: WindowSize,
        report: ReportConfig,
    ) -> Stream<'scope, i64, Vec<WindowReport>>;

    /// Like [`count_windows`](Self::count_windows), as updates: each window's final, each
    /// revision of a final window that `amends` amended, and with `config.updates` (timely
    /// engine only), every interval the exact totals so far of each open window that changed.
    fn count_window_updates(
        self,
        amends: Stream<'scope, i64, Vec<Amend>>,
        config: CountConfig,
    ) -> Stream<'scope, i64, Vec<WindowUpdate>>;
}

impl<'scope> CountWindows<'scope> for Stream<'scope, i64, Vec<Tap>> {
    fn count_windows(
        self,
        engine: Engine,
        size: WindowSize,
        report: ReportConfig,
    ) -> Stream<'scope, i64, Vec<WindowReport>> {
        let scope = self.scope();
        let config = CountConfig {
            engine,
            keep: Keep::none(size),
            report,
            updates: None,
        };
        self.count_window_updates(empty(scope), config)
            .map(|update: WindowUpdate| update.report)
    }

    fn count_window_updates(
        self,
        amends: Stream<'scope, i64, Vec<Amend>>,
        config: CountConfig,
    ) -> Stream<'scope, i64, Vec<WindowUpdate>> {
        let partials = match config.engine {
            Engine::Timely => self.aggregate_windows_every(amends, config.keep, config.updates),
            Engine::Differential => self.count_distinct_amended(amends, config.keep),
        };
        partials.merge_window_updates(config.keep, config.report, config.updates)
    }
}
