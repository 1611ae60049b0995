//! `EndProbe`: the ends of a worker's partitions, and how many partitions the events topic
//! has, asked of the broker on a thread of its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::KafkaSourceConfig;
use super::context::Quiet;
use crate::failure::Failure;

/// The ends (high watermarks) of a worker's partitions, asked of the broker on a thread of
/// its own (a blocking request must not stall the worker), each with when it was asked; the
/// partitions of the events topic, which may grow while the dataflow runs; and where the
/// late topic's partitions end.
pub(super) struct EndProbe {
    created: Instant,
    /// Per partition of the worker: the end and when it was asked, ms since `created`.
    ends: Mutex<HashMap<i32, (i64, u64)>>,
    /// How many partitions the events topic had at the last answer.
    partitions: AtomicI32,
    /// Per partition of the late topic: where it ended at the last answer (a record
    /// published later is at or after it).
    late: Vec<AtomicI64>,
}

impl EndProbe {
    /// Starts the thread for the partitions `p` with `p % peers == index`; it stops once the
    /// reader is gone.
    pub(super) fn start(
        config: &KafkaSourceConfig,
        (index, peers): (usize, usize),
    ) -> Result<Arc<Self>, Failure> {
        let probe = Arc::new(EndProbe {
            created: Instant::now(),
            ends: Mutex::new(HashMap::new()),
            partitions: AtomicI32::new(config.partitions),
            late: config
                .reported
                .ends()
                .iter()
                .map(|&end| AtomicI64::new(end))
                .collect(),
        });
        let client: BaseConsumer<Quiet> = service::kafka::client_config(&config.brokers)
            .create_with_context(Quiet)
            .map_err(|e| Failure::kafka("create the Kafka client for partition ends", e))?;
        let every =
            (config.idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(2));
        let wait = every.max(Duration::from_secs(1));
        let (weak, topic) = (Arc::downgrade(&probe), config.topic.clone());
        let late_topic = config.late_topic.clone();
        std::thread::Builder::new()
            .name("partition-ends".into())
            .spawn(move || {
                while let Some(probe) = weak.upgrade() {
                    if let Ok(found) = service::kafka::partitions_of(&client, &topic) {
                        probe
                            .partitions
                            .fetch_max(found.len() as i32, Ordering::Relaxed);
                    }
                    let partitions = probe.partitions.load(Ordering::Relaxed);
                    for p in (0..partitions).filter(|p| *p as usize % peers == index) {
                        let asked = probe.created.elapsed().as_millis() as u64 + 1;
                        if let Ok((low, high)) = client.fetch_watermarks(&topic, p, wait) {
                            // An empty partition (or one emptied by retention) is read.
                            let end = if high <= low { -1 } else { high };
                            let mut ends = probe.ends.lock().unwrap_or_else(|e| e.into_inner());
                            ends.insert(p, (end, asked));
                        }
                    }
                    for (p, end) in probe.late.iter().enumerate() {
                        if let Ok((_, high)) = client.fetch_watermarks(&late_topic, p as i32, wait)
                        {
                            end.fetch_max(high, Ordering::Relaxed);
                        }
                    }
                    drop(probe);
                    std::thread::sleep(every);
                }
            })
            .map_err(|e| Failure::io("start", "the partition-ends thread", e))?;
        Ok(probe)
    }

    /// How many partitions the events topic had at the last answer.
    pub(super) fn partitions(&self) -> i32 {
        self.partitions.load(Ordering::Relaxed)
    }

    /// Where each partition of the late topic ended at the last answer.
    pub(super) fn late_ends(&self) -> Vec<i64> {
        self.late
            .iter()
            .map(|end| end.load(Ordering::Relaxed))
            .collect()
    }

    /// Whether an answer asked after `since` shows partition `p` read to its end.
    pub(super) fn read_to_end(&self, p: i32, next_offset: i64, since: Instant) -> bool {
        let ends = self.ends.lock().unwrap_or_else(|e| e.into_inner());
        ends.get(&p).is_some_and(|&(end, asked)| {
            self.created + Duration::from_millis(asked - 1) >= since && end <= next_offset
        })
    }
}
