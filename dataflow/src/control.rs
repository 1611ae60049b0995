//! `RunControl`: what the workers of one process share while a run goes on: progress,
//! the first rejected row of a strict run, and the first failure, either of which stops
//! the sources.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::failure::Failure;
use crate::record::RejectedRow;

/// Shared by the workers of a process.
#[derive(Debug, Default)]
pub struct RunControl {
    strict: bool,
    bytes_read: AtomicU64,
    stop: AtomicBool,
    first_reject: Mutex<Option<RejectedRow>>,
    failure: Mutex<Option<Failure>>,
}

impl RunControl {
    /// A control for a run; a strict run stops at the first rejected row.
    pub fn new(strict: bool) -> Self {
        RunControl {
            strict,
            ..RunControl::default()
        }
    }

    /// Whether the first rejected row stops the run.
    pub fn strict(&self) -> bool {
        self.strict
    }

    /// Input bytes read so far by this process.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    pub(crate) fn add_bytes(&self, bytes: u64) {
        self.bytes_read.fetch_add(bytes, Ordering::Relaxed);
    }

    /// True once the sources should stop reading.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Asks the sources to stop (a shutdown): they stop reading and let what is closed finish.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Notes a rejected row; in a strict run the first one stops the run.
    pub fn reject(&self, row: &RejectedRow) {
        if self.strict {
            let mut first = self.first_reject.lock().unwrap_or_else(|e| e.into_inner());
            first.get_or_insert_with(|| row.clone());
            self.stop.store(true, Ordering::Relaxed);
        }
    }

    /// Notes a failure (an input or output that cannot be used) and stops the run.
    pub fn fail(&self, reason: Failure) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        failure.get_or_insert(reason);
        self.stop.store(true, Ordering::Relaxed);
    }

    /// The first rejected row of a strict run.
    pub fn first_reject(&self) -> Option<RejectedRow> {
        self.first_reject
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The first failure.
    pub fn failure(&self) -> Option<Failure> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
