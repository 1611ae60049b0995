//! Partitions added to the events topic while the dataflow runs: each worker reads its new
//! ones from their start within seconds of their creation (the end probe watches the topic's
//! partitions), and the checkpoint topic grows with the events topic first, so that their
//! checkpoints can be written (until they are, no window closes).

use rdkafka::consumer::Consumer;
use rdkafka::producer::BaseProducer;
use rdkafka::{Offset, TopicPartitionList};

use super::context::CheckpointDelivery;
use super::reader::KafkaReader;
use crate::failure::Failure;

impl KafkaReader {
    /// Takes the partitions the end probe found beyond those known: grows the checkpoint
    /// topic, assigns this worker's new ones from their start and checkpoints them there.
    pub(super) fn read_new_partitions(&mut self) {
        let partitions = self.ends.partitions();
        let topic = self.state.config.checkpoint_topic.clone();
        if let Err(error) = self.grow_checkpoint_topic(partitions) {
            tracing::warn!(%topic, partitions, %error, "Cannot grow the checkpoint topic with the events topic; trying again.");
            return;
        }
        let (index, peers) = self.worker;
        let before = self.state.settings.partitions;
        let new: Vec<i32> = (before..partitions)
            .filter(|p| *p as usize % peers == index)
            .collect();
        // What the checkpoints name from now on (the new ones' first among them).
        self.state.grow(partitions, &new);
        if new.is_empty() {
            return;
        }
        // Checkpointed before anything of them is read, as at the start; read only then. Not
        // claims: a run that was taken over from while it grew must not take them back.
        if !self.commit_partitions(i64::MIN, |p| new.contains(&p), false) {
            self.state.shrink(before, &new);
            return;
        }
        // The assignment is replaced whole: the partitions read already go on from the next
        // offset to handle.
        let mut assignment = TopicPartitionList::new();
        for p in &self.state.partitions {
            let offset = if new.contains(&p.id) {
                Offset::Beginning
            } else {
                Offset::Offset(p.next_offset)
            };
            let _ = assignment.add_partition_offset(&self.state.config.topic, p.id, offset);
        }
        if let Err(error) = self.consumer.assign(&assignment) {
            self.state.shrink(before, &new);
            tracing::warn!(%error, partitions = ?new, "Cannot assign the partitions added to the events topic; trying again.");
            return;
        }
        // A new assignment is read whole: no partition stays paused.
        for p in self.state.partitions.iter_mut().filter(|p| p.paused) {
            p.paused = false;
            self.state.metrics.partitions_paused.add(-1);
        }
        self.consumer.context().read_also(&new);
        self.state.metrics.grow(partitions);
        self.state.metrics.partitions_reading.add(new.len() as i64);
        tracing::info!(worker = index, partitions = ?new, "Reading the partitions added to the events topic from their start.");
    }

    /// Gives the checkpoint topic `partitions` partitions (another worker may have done it),
    /// and a checkpoint producer that knows them.
    fn grow_checkpoint_topic(&mut self, partitions: i32) -> Result<(), Failure> {
        let topic = &self.state.config.checkpoint_topic;
        let has = service::kafka::partitions_of(&self.consumer, topic)
            .map_err(|e| Failure::kafka(format!("read the metadata of {topic}"), e))?;
        if (has.len() as i32) < partitions {
            let grown = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Failure::io("start", "a runtime to grow the checkpoint topic", e))?
                .block_on(service::kafka::grow_topic(
                    &self.state.config.brokers,
                    topic,
                    partitions,
                ));
            if let Err(error) = grown {
                // Grown meanwhile by another worker, or refused.
                let again = service::kafka::partitions_of(&self.consumer, topic)
                    .map_err(|e| Failure::kafka(format!("read the metadata of {topic}"), e))?;
                if (again.len() as i32) < partitions {
                    return Err(Failure::kafka(
                        error.to_string(),
                        rdkafka::error::KafkaError::AdminOpCreation(error.to_string()),
                    ));
                }
            }
        }
        // A producer that knew the topic before would refuse its new partitions until it
        // refreshes its metadata (minutes).
        self.checkpoints = checkpoint_producer(&self.state.config.brokers)?;
        Ok(())
    }
}

/// The producer of checkpoints: each waited for, one round in flight at a time, so they land
/// in order without an idempotent producer, whose state a restarted broker may refuse.
pub(super) fn checkpoint_producer(
    brokers: &str,
) -> Result<BaseProducer<CheckpointDelivery>, Failure> {
    service::kafka::client_config(brokers)
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("max.in.flight.requests.per.connection", "1")
        .create_with_context(CheckpointDelivery::default())
        .map_err(|e| Failure::kafka("create the checkpoint producer", e))
}
