//! Counters, gauges and histograms, lock-free to update, rendered in the Prometheus text
//! format. Each service keeps its metrics in a struct and renders them on `GET /metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Sets the value.
    #[inline]
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// Adds `n` (may be negative).
    #[inline]
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Bucket bounds in seconds for latencies from 100 µs to 60 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// A histogram of seconds with fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// A histogram with the given upper bounds (seconds, ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation in seconds.
    #[inline]
    pub fn observe(&self, seconds: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| seconds <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros
            .fetch_add((seconds.max(0.0) * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// An empty tally with this histogram's buckets, for one thread to fill without atomics
    /// and add at once ([`Histogram::absorb`]).
    pub fn local(&self) -> LocalHistogram {
        LocalHistogram {
            bounds: self.bounds,
            buckets: vec![0; self.bounds.len()],
            sum_micros: 0,
            count: 0,
        }
    }

    /// Adds what `local` gathered, and empties it.
    pub fn absorb(&self, local: &mut LocalHistogram) {
        if local.count == 0 {
            return;
        }
        for (bucket, n) in self.buckets.iter().zip(&mut local.buckets) {
            if *n > 0 {
                bucket.fetch_add(std::mem::take(n), Ordering::Relaxed);
            }
        }
        self.sum_micros
            .fetch_add(std::mem::take(&mut local.sum_micros), Ordering::Relaxed);
        self.count
            .fetch_add(std::mem::take(&mut local.count), Ordering::Relaxed);
    }
}

/// Observations of one thread for a [`Histogram`], gathered without atomics (a loop that
/// observes once per socket would otherwise share three cache lines with every other thread
/// doing the same).
#[derive(Debug, Clone)]
pub struct LocalHistogram {
    bounds: &'static [f64],
    buckets: Vec<u64>,
    sum_micros: u64,
    count: u64,
}

impl LocalHistogram {
    /// Records one observation in seconds.
    #[inline]
    pub fn observe(&mut self, seconds: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| seconds <= b) {
            self.buckets[i] += 1;
        }
        self.sum_micros += (seconds.max(0.0) * 1e6) as u64;
        self.count += 1;
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new(LATENCY_BUCKETS)
    }
}

/// Builds a Prometheus text exposition.
#[derive(Debug, Default)]
pub struct TextEncoder {
    out: String,
}

impl TextEncoder {
    /// Starts a metric family.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        self
    }

    /// One sample; `labels` is `key="value",...` or empty.
    pub fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) -> &mut Self {
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let _ = writeln!(self.out, "{name}{{{labels}}} {value}");
        }
        self
    }

    /// A counter family with one sample.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) -> &mut Self {
        self.family(name, "counter", help).sample(name, "", value)
    }

    /// A gauge family with one sample.
    pub fn gauge(&mut self, name: &str, help: &str, value: i64) -> &mut Self {
        self.family(name, "gauge", help).sample(name, "", value)
    }

    /// A histogram family.
    pub fn histogram(&mut self, name: &str, help: &str, histogram: &Histogram) -> &mut Self {
        self.family(name, "histogram", help);
        let mut cumulative = 0;
        for (bound, bucket) in histogram.bounds.iter().zip(&histogram.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(self.out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = histogram.count.load(Ordering::Relaxed);
        let sum = histogram.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            self.out,
            "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}"
        );
        self
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_tally_adds_up_to_the_same_histogram() {
        let direct = Histogram::new(&[0.1, 1.0]);
        let shared = Histogram::new(&[0.1, 1.0]);
        let mut local = shared.local();
        for seconds in [0.05, 0.5, 2.0, 0.1] {
            direct.observe(seconds);
            local.observe(seconds);
        }
        shared.absorb(&mut local);
        shared.absorb(&mut local);
        let render = |h: &Histogram| {
            let mut e = TextEncoder::default();
            e.histogram("h", "h", h);
            e.finish()
        };
        assert_eq!(
            render(&shared),
            render(&direct),
            "absorbed once, then empty"
        );
    }

    #[test]
    fn renders_prometheus_text() {
        let h = Histogram::new(&[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(5.0);
        let mut e = TextEncoder::default();
        e.counter("events_total", "Events.", 3)
            .histogram("latency_seconds", "Latency.", &h);
        let text = e.finish();
        assert!(text.contains("# TYPE events_total counter\nevents_total 3\n"));
        assert!(text.contains("latency_seconds_bucket{le=\"0.1\"} 1\n"));
        assert!(text.contains("latency_seconds_bucket{le=\"1\"} 2\n"));
        assert!(text.contains("latency_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("latency_seconds_count 3\n"));
    }
}
