//! Replay of recorded CSV logs through the windowed dataflow, as fast as the machine goes.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use model::emojis::EmojiSet;
use model::log::LogWriter;
use model::report::WindowState;
use model::{ReportConfig, WindowReport, WindowSize, WindowSpec};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Probe;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::{ProbeHandle, Stream};
use timely::worker::Worker;

use crate::cluster::ClusterConfig;
use crate::control::RunControl;
use crate::failure::Failure;
use crate::fate::Rules;
use crate::operators::{CountConfig, CountWindows, Engine, Keep};
use crate::record::{RejectedRow, SideRecord, SourceStats, WindowUpdate};
use crate::sink::{RejectCsvWriter, WindowCsvWriter};
use crate::source::{LogFile, LogSourceConfig, ReadLogs, SourceError};

/// What to replay and how.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// CSV files, or directories of them.
    pub paths: Vec<PathBuf>,
    /// Workers and processes.
    pub cluster: ClusterConfig,
    /// The window sizes and their lateness. More sizes than one are computed in the same
    /// run from the same input, each exactly as a run with that size alone; each writes its
    /// own file (the size in its name).
    pub windows: WindowSpec,
    /// Scaling and filtering of the reports.
    pub report: ReportConfig,
    /// Which implementation counts.
    pub engine: Engine,
    /// Window rows go here (stdout when `None`): the last revision of each window, once no
    /// amendment can change it.
    pub out: Option<PathBuf>,
    /// Every final and revised message goes here, with its state and revision, if set.
    pub revisions_out: Option<PathBuf>,
    /// Late events go here, if set.
    pub late_out: Option<PathBuf>,
    /// Rejected rows go here, if set.
    pub rejects_out: Option<PathBuf>,
    /// Rows of other emojis are rejected, as the live dataflow rejects them.
    pub emojis: Arc<EmojiSet>,
    /// Stop at the first rejected row.
    pub strict: bool,
    /// Block size for sharing files among workers.
    pub block_bytes: u64,
}

impl ReplayConfig {
    /// A replay of `paths` with the defaults: one worker, 2 s windows, 1 s lateness, 10 s
    /// allowed lateness.
    pub fn new(paths: Vec<PathBuf>) -> Self {
        ReplayConfig {
            paths,
            cluster: ClusterConfig::default(),
            windows: WindowSpec::default(),
            report: ReportConfig::default(),
            engine: Engine::default(),
            out: None,
            revisions_out: None,
            late_out: None,
            rejects_out: None,
            emojis: Arc::new(EmojiSet::default()),
            strict: false,
            block_bytes: crate::source::blocks::DEFAULT_BLOCK_BYTES,
        }
    }
}

/// What a replay did, as seen by process 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Counters of all sources.
    pub sources: SourceStats,
    /// Events counted in windows (in their last revisions).
    pub events_in_windows: u64,
    /// Of those, events counted through corrections (amendments of final windows).
    pub events_in_corrections: u64,
    /// Windows emitted.
    pub windows: u64,
    /// Revisions of final windows.
    pub revisions: u64,
    /// Input bytes.
    pub bytes: u64,
    /// The windows of each size after the first.
    pub more: Vec<SizeSummary>,
}

/// The windows of one more window size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SizeSummary {
    /// The size.
    pub window: WindowSize,
    /// Windows emitted.
    pub windows: u64,
    /// Events counted in them (in their last revisions).
    pub events_in_windows: u64,
    /// Of those, events counted through corrections.
    pub events_in_corrections: u64,
    /// Revisions of final windows.
    pub revisions: u64,
    /// Events late for this size (beyond its allowed lateness).
    pub late: u64,
}

impl ReplayConfig {
    /// Where the windows of `size` go: `out` as given with one size, with the size in the
    /// file name with several.
    pub fn out_for(&self, size: WindowSize) -> Option<PathBuf> {
        self.labelled(self.out.as_ref()?, size)
    }

    /// Where the revisions of `size` go, named like [`out_for`](Self::out_for).
    pub fn revisions_out_for(&self, size: WindowSize) -> Option<PathBuf> {
        self.labelled(self.revisions_out.as_ref()?, size)
    }

    /// Where the events late for `size` go, named like [`out_for`](Self::out_for).
    pub fn late_out_for(&self, size: WindowSize) -> Option<PathBuf> {
        self.labelled(self.late_out.as_ref()?, size)
    }

    fn labelled(&self, path: &std::path::Path, size: WindowSize) -> Option<PathBuf> {
        Some(if self.windows.is_several() {
            size.labelled_path(path)
        } else {
            path.to_path_buf()
        })
    }
}

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The input cannot be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Several window sizes were asked for without `--out`.
    #[error("several window sizes need --out: each size gets its own file, the size in its name")]
    SeveralSizesNeedOut,
    /// An input or output cannot be used.
    #[error(transparent)]
    Failed(#[from] Failure),
    /// The workers could not be started (a process of the cluster is unreachable).
    #[error("cannot start the workers: {0}")]
    Workers(String),
    /// A worker panicked.
    #[error("a worker failed: {0}")]
    Panicked(String),
    /// The connection to another process of the cluster failed.
    #[error(transparent)]
    PeerLost(#[from] crate::cluster::PeerLost),
    /// A strict run met a rejected row.
    #[error("rejected row at {}:{}: {} (raw: {:?})", .0.file, .0.line, .0.reason, .0.raw)]
    Rejected(RejectedRow),
}

/// Replays the logs of `config`. Returns the summary on process 0 and `None` elsewhere.
pub fn run_replay(
    config: ReplayConfig,
    control: Arc<RunControl>,
) -> Result<Option<ReplaySummary>, ReplayError> {
    if config.windows.is_several() && config.out.is_none() {
        return Err(ReplayError::SeveralSizesNeedOut);
    }
    let files = Arc::new(LogFile::discover(&config.paths)?);
    let bytes = files.iter().map(|f| f.len).sum();
    let cluster = config.cluster.clone();
    if cluster.processes > 1 {
        crate::cluster::watch_peers();
    }
    let config = Arc::new(config);
    let worker_control = Arc::clone(&control);
    let guards = cluster
        .execute(move |worker| {
            run_worker(
                worker,
                &config,
                Arc::clone(&files),
                Arc::clone(&worker_control),
            )
        })
        .map_err(ReplayError::Workers)?;
    let mut summary = None;
    for result in guards.join() {
        match result {
            Ok(Some(worker_summary)) => summary = Some(worker_summary),
            Ok(None) => {}
            Err(panic) => {
                return Err(match cluster.peer_lost() {
                    Some(lost) => ReplayError::PeerLost(lost),
                    None => ReplayError::Panicked(panic),
                });
            }
        }
    }
    if let Some(failure) = control.failure() {
        return Err(ReplayError::Failed(failure));
    }
    if let Some(row) = control.first_reject() {
        return Err(ReplayError::Rejected(row));
    }
    Ok(summary.map(|s| ReplaySummary { bytes, ..s }))
}

/// The outputs of one window size.
struct SizeOutput {
    keep: Keep,
    windows: WindowCsvWriter<Box<dyn Write>>,
    revisions: Option<WindowCsvWriter<Box<dyn Write>>>,
    /// Windows an amendment may still change: the newest message of each, and the events
    /// of its final.
    pending: BTreeMap<i64, (WindowReport, u64)>,
    /// The events late for this size, a replayable log.
    late: Option<LogWriter<BufWriter<File>>>,
    totals: SizeSummary,
}

impl SizeOutput {
    /// Takes a message about a window: written to the revisions, and kept as the window's
    /// newest until it is released.
    fn update(&mut self, update: WindowUpdate) -> csv::Result<()> {
        if let Some(revisions) = &mut self.revisions {
            revisions.write_revision(&update.report, update.state, update.revision)?;
        }
        let start = update.report.window_start;
        let final_events = match update.state {
            WindowState::Revised => {
                self.totals.revisions += 1;
                self.pending.get(&start).map_or(0, |(_, events)| *events)
            }
            _ => update.report.events,
        };
        if !self.keep.keeps() {
            return self.write(&update.report, final_events);
        }
        self.pending.insert(start, (update.report, final_events));
        Ok(())
    }

    /// Writes the windows that no amendment can change once the input is at `frontier`
    /// (every one at the end).
    fn release(&mut self, frontier: Option<i64>) -> csv::Result<()> {
        while let Some(entry) = self.pending.first_entry() {
            if frontier.is_some_and(|f| self.keep.released_at(*entry.key()) > f) {
                break;
            }
            let (report, final_events) = entry.remove();
            self.write(&report, final_events)?;
        }
        Ok(())
    }

    fn write(&mut self, report: &WindowReport, final_events: u64) -> csv::Result<()> {
        self.totals.windows += 1;
        self.totals.events_in_windows += report.events;
        self.totals.events_in_corrections += report.events - final_events.min(report.events);
        self.windows.write(report)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.windows.flush()?;
        if let Some(revisions) = &mut self.revisions {
            revisions.flush()?;
        }
        if let Some(late) = &mut self.late {
            late.flush()?;
        }
        Ok(())
    }
}

/// The outputs, open on worker 0 only.
struct Outputs {
    /// Per window size, the live one first.
    sizes: Vec<SizeOutput>,
    rejects: Option<RejectCsvWriter<BufWriter<File>>>,
    sources: SourceStats,
}

impl Outputs {
    /// Opens the outputs; with `several_files`, a rejected row's reason names its file.
    fn open(config: &ReplayConfig, several_files: bool) -> Result<Self, Failure> {
        let create = |path: &PathBuf| {
            File::create(path)
                .map(|f| BufWriter::with_capacity(1 << 16, f))
                .map_err(|e| Failure::io("create", path.display(), e))
        };
        let csv_error = |e: csv::Error| Failure::io("write", "the outputs", e.into());
        let mut sizes = Vec::new();
        for &size in config.windows.sizes() {
            let windows: Box<dyn Write> = match config.out_for(size) {
                Some(path) => Box::new(create(&path)?),
                None => Box::new(BufWriter::new(std::io::stdout().lock())),
            };
            let revisions = match config.revisions_out_for(size) {
                Some(path) => {
                    let out: Box<dyn Write> = Box::new(create(&path)?);
                    Some(WindowCsvWriter::with_revisions(out).map_err(csv_error)?)
                }
                None => None,
            };
            sizes.push(SizeOutput {
                keep: Keep::new(size, &config.windows),
                windows: WindowCsvWriter::new(windows).map_err(csv_error)?,
                revisions,
                pending: BTreeMap::new(),
                late: config
                    .late_out_for(size)
                    .map(|p| create(&p).map(LogWriter::new))
                    .transpose()?
                    .transpose()
                    .map_err(|e| Failure::io("write", "the late events", e))?,
                totals: SizeSummary {
                    window: size,
                    ..SizeSummary::default()
                },
            });
        }
        Ok(Outputs {
            sizes,
            rejects: config
                .rejects_out
                .as_ref()
                .map(|p| create(p).map(|out| RejectCsvWriter::new(out, several_files)))
                .transpose()?
                .transpose()
                .map_err(csv_error)?,
            sources: SourceStats::default(),
        })
    }

    /// The summary of the run.
    fn summary(&self) -> ReplaySummary {
        let live = &self.sizes[0].totals;
        ReplaySummary {
            sources: self.sources,
            events_in_windows: live.events_in_windows,
            events_in_corrections: live.events_in_corrections,
            windows: live.windows,
            revisions: live.revisions,
            bytes: 0,
            more: self.sizes[1..].iter().map(|s| s.totals).collect(),
        }
    }

    /// Takes a record of the source of size `index` (rows are read and rejected once, by
    /// the live size's source; each size has its own late events).
    fn side(&mut self, index: usize, record: &SideRecord, control: &RunControl) -> csv::Result<()> {
        let size = &mut self.sizes[index];
        match record {
            SideRecord::Late(event) => size.late.as_mut().map_or(Ok(()), |w| {
                w.write_event(&event.user, &event.emoji, event.timestamp)
                    .map_err(csv::Error::from)
            }),
            SideRecord::Rejected(row) => {
                control.reject(row);
                self.rejects.as_mut().map_or(Ok(()), |w| w.write(row))
            }
            SideRecord::Stats(stats) => {
                size.totals.late += stats.late;
                if index == 0 {
                    self.sources += *stats;
                }
                Ok(())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        for size in &mut self.sizes {
            size.flush()?;
        }
        if let Some(w) = &mut self.rejects {
            w.flush()?;
        }
        Ok(())
    }
}

/// Writes the late events, rejected rows and counts of the source of size `index` to the
/// outputs, on worker 0.
fn write_side<'scope>(
    side: Stream<'scope, i64, Vec<SideRecord>>,
    index: usize,
    outputs: Option<Rc<RefCell<Outputs>>>,
    control: Arc<RunControl>,
) {
    side.sink(
        Exchange::new(|_: &SideRecord| 0),
        "WriteSide",
        move |(input, _frontier)| {
            input.for_each(|_time, records| {
                let Some(outputs) = &outputs else { return };
                for record in records.drain(..) {
                    if let Err(e) = outputs.borrow_mut().side(index, &record, &control) {
                        control.fail(Failure::io("write", "the late events or rejects", e.into()));
                    }
                }
            });
        },
    );
}

/// Writes the window messages of size `index` to the outputs, each window once released.
fn write_windows<'scope>(
    updates: Stream<'scope, i64, Vec<WindowUpdate>>,
    index: usize,
    outputs: Option<Rc<RefCell<Outputs>>>,
    control: Arc<RunControl>,
) {
    updates.sink(Pipeline, "WriteWindows", move |(input, frontier)| {
        let Some(outputs) = &outputs else {
            input.for_each(|_, _| {});
            return;
        };
        let mut outputs = outputs.borrow_mut();
        let size = &mut outputs.sizes[index];
        let mut failed = None;
        input.for_each(|_time, updates| {
            for update in updates.drain(..) {
                if let Err(e) = size.update(update) {
                    failed.get_or_insert(e);
                }
            }
        });
        // A strict run stops at its first rejected row: the windows its stop closes are not
        // results.
        let released = match control.first_reject() {
            Some(_) => Ok(()),
            None => size.release(frontier.frontier().first().copied()),
        };
        if let Some(e) = failed.or(released.err()) {
            control.fail(Failure::io("write", "the window rows", e.into()));
        }
    });
}

// Long: the dataflows of every window size and the outputs they share are built together.
fn run_worker(
    worker: &mut Worker,
    config: &ReplayConfig,
    files: Arc<Vec<LogFile>>,
    control: Arc<RunControl>,
) -> Option<ReplaySummary> {
    let outputs = if worker.index() == 0 {
        match Outputs::open(config, files.len() > 1) {
            Ok(outputs) => Some(Rc::new(RefCell::new(outputs))),
            Err(message) => {
                control.fail(message);
                None
            }
        }
    } else {
        None
    };
    let source = LogSourceConfig {
        files,
        block_bytes: config.block_bytes,
        rules: Rules {
            window: config.windows.live(),
            windows: config.windows.clone(),
            emojis: Arc::clone(&config.emojis),
            max_future_ms: crate::fate::DEFAULT_MAX_FUTURE_MS,
        },
        send_late: config.late_out.is_some(),
        send_rejects: config.rejects_out.is_some(),
        primary: true,
    };
    // Each more window size: the same logs through a dataflow of its own, so its windows
    // are exactly those of a run with that size alone.
    for (index, &size) in config.windows.sizes().iter().enumerate().skip(1) {
        let source = LogSourceConfig {
            rules: Rules {
                window: size,
                ..source.rules.clone()
            },
            send_rejects: false,
            primary: false,
            ..source.clone()
        };
        let outputs = outputs.clone();
        let control = Arc::clone(&control);
        worker.dataflow::<i64, _, _>(|scope| {
            let frontier = ProbeHandle::new();
            let (taps, amends, side) =
                scope.read_logs(source, Arc::clone(&control), frontier.clone());
            let count = CountConfig::new(config.engine, size, &config.windows, config.report);
            let updates = taps
                .probe_with(&frontier)
                .count_window_updates(amends, count);
            write_windows(updates, index, outputs.clone(), Arc::clone(&control));
            write_side(side, index, outputs, control);
        });
    }
    worker.dataflow::<i64, _, _>(|scope| {
        let frontier = ProbeHandle::new();
        let (taps, amends, side) = scope.read_logs(source, Arc::clone(&control), frontier.clone());
        let size = config.windows.live();
        let count = CountConfig::new(config.engine, size, &config.windows, config.report);
        let updates = taps
            .probe_with(&frontier)
            .count_window_updates(amends, count);
        write_windows(updates, 0, outputs.clone(), Arc::clone(&control));
        write_side(side, 0, outputs.clone(), Arc::clone(&control));
    });
    while worker.has_dataflows() {
        worker.step_or_park(None);
    }
    let outputs = outputs?;
    let mut outputs = outputs.borrow_mut();
    if let Err(e) = outputs.flush() {
        control.fail(Failure::io("write", "the outputs", e));
    }
    Some(outputs.summary())
}
