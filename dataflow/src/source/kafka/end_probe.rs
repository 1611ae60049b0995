//! `EndProbe`: the ends of a worker's partitions, asked of the broker on a thread of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::KafkaSourceConfig;
use super::context::Quiet;
use crate::failure::Failure;

/// The ends (high watermarks) of a worker's partitions, asked of the broker on a thread of
/// its own (a blocking request must not stall the worker), each with when it was asked.
pub(super) struct EndProbe {
    pub(super) created: Instant,
    /// Per partition of the worker (in its order): the end and when it was asked, ms since
    /// `created` (0: never answered).
    pub(super) ends: Vec<(AtomicI64, AtomicU64)>,
}

impl EndProbe {
    /// Starts the thread; it stops once the reader is gone.
    pub(super) fn start(config: &KafkaSourceConfig, mine: &[i32]) -> Result<Arc<Self>, Failure> {
        let probe = Arc::new(EndProbe {
            created: Instant::now(),
            ends: mine
                .iter()
                .map(|_| (AtomicI64::new(-1), AtomicU64::new(0)))
                .collect(),
        });
        let client: BaseConsumer<Quiet> = service::kafka::client_config(&config.brokers)
            .create_with_context(Quiet)
            .map_err(|e| Failure::kafka("create the Kafka client for partition ends", e))?;
        let every =
            (config.idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(2));
        let (weak, topic, mine) = (Arc::downgrade(&probe), config.topic.clone(), mine.to_vec());
        std::thread::Builder::new()
            .name("partition-ends".into())
            .spawn(move || {
                while let Some(probe) = weak.upgrade() {
                    for (i, &p) in mine.iter().enumerate() {
                        let asked = probe.created.elapsed().as_millis() as u64 + 1;
                        let wait = every.max(Duration::from_secs(1));
                        if let Ok((low, high)) = client.fetch_watermarks(&topic, p, wait) {
                            // An empty partition (or one emptied by retention) is read.
                            let end = if high <= low { -1 } else { high };
                            probe.ends[i].0.store(end, Ordering::Relaxed);
                            probe.ends[i].1.store(asked, Ordering::Release);
                        }
                    }
                    drop(probe);
                    std::thread::sleep(every);
                }
            })
            .map_err(|e| Failure::io("start", "the partition-ends thread", e))?;
        Ok(probe)
    }

    /// Whether an answer asked after `since` shows the `i`th partition read to its end.
    pub(super) fn read_to_end(&self, i: usize, next_offset: i64, since: Instant) -> bool {
        let Some((end, asked)) = self.ends.get(i) else {
            return true;
        };
        let asked = asked.load(Ordering::Acquire);
        asked > 0
            && self.created + Duration::from_millis(asked - 1) >= since
            && end.load(Ordering::Relaxed) <= next_offset
    }
}
