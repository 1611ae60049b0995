//! The live dataflow's metrics, served on `--metrics-listen`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use service::admin::RenderMetrics;
use service::metrics::{Counter, Gauge, Histogram, TextEncoder};

/// The metrics of one partition of the events topic.
#[derive(Debug, Default)]
struct PartitionMetrics {
    consumed: Counter,
    watermark_ms: Gauge,
    watermark_lag_ms: Gauge,
    /// Whether the partition has a watermark (it has had data): without one, no sample.
    watermark_known: AtomicBool,
    consumer_lag: Gauge,
}

/// Counters of the live dataflow (labels: partition numbers only, a bounded set).
#[derive(Debug)]
pub struct DataflowMetrics {
    /// Per partition of the events topic (more as the topic grows).
    partitions: RwLock<Vec<PartitionMetrics>>,
    /// Late events, per window size (each size judges lateness by its own windows).
    late: Vec<(String, Arc<Counter>)>,
    /// Invalid messages.
    pub invalid: Counter,
    /// Windows published (finals).
    pub windows: Counter,
    /// Updates of open windows published.
    pub open_updates: Counter,
    /// Events of closed windows within the allowed lateness (amendments).
    pub amends: Counter,
    /// Revisions of final windows published.
    pub revisions: Counter,
    /// Window end to publication, wall clock.
    pub emit_delay_seconds: Histogram,
    /// Producers replaced because the broker refused their records.
    pub producer_replacements: Counter,
    /// Checkpoints the broker refused or did not take in time (windows stay open meanwhile).
    pub checkpoint_failures: Counter,
    /// Partitions being read (one per partition and window size), once the readers are set.
    pub partitions_reading: Gauge,
    /// Partitions paused because they are read too far ahead of the slowest.
    pub partitions_paused: Gauge,
    /// Ingests heard from on the ingests topic.
    pub ingests_known: Gauge,
    /// Ingests that hold the finals back: they hold taps the broker has not stored, or went
    /// quiet.
    pub ingests_holding: Gauge,
}

impl DataflowMetrics {
    /// Metrics for a topic of `partitions` partitions and the window sizes labelled `sizes`.
    pub fn new(partitions: i32, sizes: &[String]) -> Self {
        let n = partitions.max(0) as usize;
        DataflowMetrics {
            partitions: RwLock::new((0..n).map(|_| PartitionMetrics::default()).collect()),
            late: sizes
                .iter()
                .map(|size| (size.clone(), Arc::default()))
                .collect(),
            invalid: Counter::default(),
            windows: Counter::default(),
            open_updates: Counter::default(),
            amends: Counter::default(),
            revisions: Counter::default(),
            emit_delay_seconds: Histogram::default(),
            producer_replacements: Counter::default(),
            checkpoint_failures: Counter::default(),
            partitions_reading: Gauge::default(),
            partitions_paused: Gauge::default(),
            ingests_known: Gauge::default(),
            ingests_holding: Gauge::default(),
        }
    }

    /// The late-event counter of the window size labelled `size` (a fresh one, not served,
    /// for a size these metrics do not name).
    pub fn late_counter(&self, size: &str) -> Arc<Counter> {
        self.late
            .iter()
            .find(|(label, _)| label == size)
            .map_or_else(Arc::default, |(_, counter)| Arc::clone(counter))
    }

    /// Late events of the window size labelled `size` so far.
    pub fn late_events(&self, size: &str) -> u64 {
        self.late
            .iter()
            .find(|(label, _)| label == size)
            .map_or(0, |(_, counter)| counter.get())
    }

    /// Takes partitions up to `partitions` (the events topic grew).
    pub fn grow(&self, partitions: i32) {
        let mut all = self.partitions.write().unwrap_or_else(|e| e.into_inner());
        let n = partitions.max(0) as usize;
        if all.len() < n {
            all.resize_with(n, PartitionMetrics::default);
        }
    }

    /// What `f` makes of the metrics of `partition`, if they are kept.
    #[inline]
    fn with<T>(&self, partition: i32, f: impl FnOnce(&PartitionMetrics) -> T) -> Option<T> {
        let all = self.partitions.read().unwrap_or_else(|e| e.into_inner());
        all.get(usize::try_from(partition).ok()?).map(f)
    }

    /// Counts one message consumed from `partition`.
    #[inline]
    pub fn consumed(&self, partition: i32) {
        self.with(partition, |m| m.consumed.add(1));
    }

    /// Events consumed from `partition` so far.
    pub fn consumed_from(&self, partition: i32) -> u64 {
        self.with(partition, |m| m.consumed.get()).unwrap_or(0)
    }

    /// Records the watermark of `partition`.
    pub fn watermark(&self, partition: i32, watermark: Option<i64>, wall_ms: i64) {
        let Some(w) = watermark else {
            return;
        };
        self.with(partition, |m| {
            m.watermark_ms.set(w);
            m.watermark_lag_ms.set(wall_ms - w);
            m.watermark_known.store(true, Ordering::Relaxed);
        });
    }

    /// Records how many messages of `partition` are not read yet.
    pub fn consumer_lag(&self, partition: i32, lag: i64) {
        self.with(partition, |m| m.consumer_lag.set(lag));
    }
}

impl RenderMetrics for DataflowMetrics {
    // Long: every metric in one place, in the order they are exposed.
    fn render(&self) -> String {
        let mut e = TextEncoder::default();
        let per_partition =
            |e: &mut TextEncoder, name: &str, kind: &str, help: &str, values: Vec<Option<i64>>| {
                e.family(name, kind, help);
                for (p, v) in values.into_iter().enumerate() {
                    if let Some(v) = v {
                        e.sample(name, &format!("partition=\"{p}\""), v);
                    }
                }
            };
        let partitions = self.partitions.read().unwrap_or_else(|e| e.into_inner());
        let each = |value: &dyn Fn(&PartitionMetrics) -> Option<i64>| -> Vec<Option<i64>> {
            partitions.iter().map(value).collect()
        };
        // A partition without data has no watermark: no sample rather than a made-up one.
        let known = |gauge: fn(&PartitionMetrics) -> &Gauge| {
            each(&|m| {
                m.watermark_known
                    .load(Ordering::Relaxed)
                    .then(|| gauge(m).get())
            })
        };
        per_partition(
            &mut e,
            "dataflow_events_consumed_total",
            "counter",
            "Messages consumed, by partition.",
            each(&|m| Some(m.consumed.get() as i64)),
        );
        per_partition(
            &mut e,
            "dataflow_consumer_lag_messages",
            "gauge",
            "Messages not read yet, by partition.",
            each(&|m| Some(m.consumer_lag.get())),
        );
        per_partition(
            &mut e,
            "dataflow_watermark_milliseconds",
            "gauge",
            "Watermark (UTC ms), by partition.",
            known(|m| &m.watermark_ms),
        );
        per_partition(
            &mut e,
            "dataflow_watermark_lag_milliseconds",
            "gauge",
            "Wall clock minus watermark, by partition.",
            known(|m| &m.watermark_lag_ms),
        );
        e.gauge(
            "dataflow_partitions_reading",
            "Partitions being read (one per partition and window size), once positioned.",
            self.partitions_reading.get(),
        );
        e.gauge(
            "dataflow_partitions_paused",
            "Partitions paused (one per partition and window size): read further ahead of the slowest than the read-ahead.",
            self.partitions_paused.get(),
        );
        e.gauge(
            "dataflow_ingests",
            "Ingests heard from on the ingests topic (running, not stopped).",
            self.ingests_known.get(),
        );
        e.gauge(
            "dataflow_ingests_holding",
            "Ingests that hold the finals back: they hold taps the broker has not stored, or went quiet.",
            self.ingests_holding.get(),
        );
        e.family(
            "dataflow_late_events_total",
            "counter",
            "Events of windows already closed, by window size.",
        );
        for (size, counter) in &self.late {
            e.sample(
                "dataflow_late_events_total",
                &format!("window=\"{size}\""),
                counter.get(),
            );
        }
        e.counter(
            "dataflow_invalid_events_total",
            "Messages that are not valid events.",
            self.invalid.get(),
        )
        .counter(
            "dataflow_windows_emitted_total",
            "Windows published final.",
            self.windows.get(),
        )
        .counter(
            "dataflow_open_updates_total",
            "Updates of open windows published to the cluster topics.",
            self.open_updates.get(),
        )
        .counter(
            "dataflow_amends_total",
            "Events of closed windows within the allowed lateness: they amend their window.",
            self.amends.get(),
        )
        .counter(
            "dataflow_revisions_total",
            "Revisions of final windows published (their amended totals).",
            self.revisions.get(),
        )
        .counter(
            "dataflow_producer_replacements_total",
            "Producers replaced because the broker refused their records.",
            self.producer_replacements.get(),
        )
        .counter(
            "dataflow_checkpoint_failures_total",
            "Checkpoints the broker refused or did not take in time: no window closes until one is written.",
            self.checkpoint_failures.get(),
        )
        .histogram(
            "dataflow_emit_delay_seconds",
            "From a window's end to its publication.",
            &self.emit_delay_seconds,
        );
        e.finish()
    }
}
