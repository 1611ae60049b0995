//! The ingest service's metrics.

use service::admin::RenderMetrics;
use service::metrics::{Counter, Gauge, Histogram, TextEncoder};

/// Statuses the API answers with: the label set of `ingest_requests_total` is bounded.
pub const STATUSES: [u16; 14] = [
    200, 201, 202, 400, 401, 403, 404, 405, 409, 413, 415, 429, 503, 500,
];

/// Counters of the ingest service.
#[derive(Debug, Default)]
pub struct IngestMetrics {
    /// Requests by status (indexed like [`STATUSES`]).
    pub requests: [Counter; STATUSES.len()],
    /// Events handed to the producer.
    pub events_accepted: Counter,
    /// Events the broker acknowledged.
    pub events_delivered: Counter,
    /// Events the producer failed to deliver.
    pub produce_errors: Counter,
    /// Events handed to the producer and not yet acknowledged.
    pub queue_depth: Gauge,
    /// Time from request to response.
    pub request_seconds: Histogram,
    /// The HTTP loop's connections: open, waiting for their turn, answered 503.
    pub connections: std::sync::Arc<service::http::ServeCounts>,
    /// Producers replaced because their deliveries kept failing.
    pub producer_replacements: Counter,
    /// Events sent again after the broker did not take them.
    pub events_resent: Counter,
    /// Events whose delivery failed but which the topic holds (not sent again).
    pub events_found_stored: Counter,
}

impl IngestMetrics {
    /// Counts one request with `status`.
    pub fn count_status(&self, status: u16) {
        let i = STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(STATUSES.len() - 1);
        self.requests[i].add(1);
    }
}

impl RenderMetrics for IngestMetrics {
    fn render(&self) -> String {
        let mut e = TextEncoder::default();
        e.family(
            "ingest_requests_total",
            "counter",
            "HTTP requests by response status.",
        );
        for (status, counter) in STATUSES.iter().zip(&self.requests) {
            e.sample(
                "ingest_requests_total",
                &format!("status=\"{status}\""),
                counter.get(),
            );
        }
        e.counter(
            "ingest_events_accepted_total",
            "Events handed to the producer.",
            self.events_accepted.get(),
        )
        .counter(
            "ingest_events_delivered_total",
            "Events acknowledged by the broker.",
            self.events_delivered.get(),
        )
        .gauge(
            "ingest_connections_open",
            "HTTP connections open (at most --max-open-connections).",
            self.connections.open.get(),
        )
        .gauge(
            "ingest_connections_waiting",
            "Connections waiting for a place (up to a second, then answered 503).",
            self.connections.waiting.get(),
        )
        .counter(
            "ingest_connections_refused_total",
            "Connections answered 503 with Retry-After: no place for them within a second.",
            self.connections.refused.get(),
        )
        .counter(
            "ingest_producer_replacements_total",
            "Producers replaced because their deliveries kept failing.",
            self.producer_replacements.get(),
        )
        .counter(
            "ingest_produce_errors_total",
            "Deliveries that failed (events of a 202 answer are sent again).",
            self.produce_errors.get(),
        )
        .counter(
            "ingest_events_resent_total",
            "Events sent again after the broker did not take them.",
            self.events_resent.get(),
        )
        .counter(
            "ingest_events_found_stored_total",
            "Events whose delivery failed but which the events topic holds: not sent again.",
            self.events_found_stored.get(),
        )
        .gauge(
            "ingest_queue_depth",
            "Events handed to the producer, not yet acknowledged.",
            self.queue_depth.get(),
        )
        .histogram(
            "ingest_request_duration_seconds",
            "Time from request to response.",
            &self.request_seconds,
        );
        e.finish()
    }
}
