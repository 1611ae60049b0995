//! Registration: broadcasters announce themselves and their connection counts on a Kafka
//! topic every half second; every broadcaster keeps the table of live ones and assigns a
//! registering client to a cluster (by its id) and to one of that cluster's live broadcasters
//! by rendezvous hashing: the one whose hash with the client's id is highest. Every
//! broadcaster answers the same for a client without asking the others, clients spread
//! evenly (a broadcaster's share of 100,000 varies by about 1%), and when one leaves only its
//! own clients move, spread evenly over the rest. (Picking the least loaded by the announced
//! counts sent every broadcaster's registrations to the same one until the next
//! announcement: 14% from even with six.) A broadcaster announces how many clients it takes;
//! one full, by its announcement and what this one sent it since, is passed over for the next
//! in the client's order. One silent for two seconds is out of assignment.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::error::BroadcastError;
use crate::metrics::BroadcastMetrics;

/// How often a broadcaster announces itself.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// How long after its last announcement a broadcaster still gets clients.
pub const LIVENESS: Duration = Duration::from_secs(2);

/// One announcement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The broadcaster's id (unique per process start).
    pub id: String,
    /// Its cluster.
    pub cluster: u32,
    /// Where clients connect.
    pub ws_url: String,
    /// Its open connections.
    pub connections: i64,
    /// The clients it takes at most (0: not announced, no limit).
    #[serde(default)]
    pub capacity: i64,
    /// The fingerprint of its token key (`TokenSigner::fingerprint`): a viewer registered with
    /// one broadcaster can only connect to broadcasters of the same key.
    #[serde(default)]
    pub key: String,
}

#[derive(Debug)]
struct Member {
    heartbeat: Heartbeat,
    last_seen: Instant,
    /// Clients this broadcaster sent it since its last announcement.
    assigned_since: i64,
}

impl Member {
    /// Whether it has room for one more client, as far as this broadcaster knows.
    fn has_room(&self) -> bool {
        self.heartbeat.capacity <= 0
            || self.heartbeat.connections + self.assigned_since < self.heartbeat.capacity
    }
}

/// The live broadcasters of this one's token key.
#[derive(Debug, Default)]
pub struct Registry {
    members: Mutex<HashMap<String, Member>>,
    /// The fingerprint of this broadcaster's token key.
    key: String,
    /// The broadcasters of another key heard (each said once).
    others: Mutex<std::collections::HashSet<String>>,
}

impl Registry {
    /// The registry of a broadcaster whose token key has the fingerprint `key`.
    pub fn new(key: String) -> Self {
        Registry {
            key,
            ..Registry::default()
        }
    }

    /// Takes in an announcement; one of a broadcaster of another token key is said (once per
    /// broadcaster) and left out: its viewers would be refused.
    pub fn heard(&self, heartbeat: Heartbeat) {
        if heartbeat.key != self.key {
            let mut others = self.others.lock().unwrap_or_else(|e| e.into_inner());
            if others.insert(heartbeat.id.clone()) {
                tracing::error!(
                    broadcaster = %heartbeat.id,
                    ws_url = %heartbeat.ws_url,
                    cluster = heartbeat.cluster,
                    its_key = %heartbeat.key,
                    our_key = %self.key,
                    "A broadcaster with another token key is on the registry: no viewer is sent to it, and it sends none here (they would be refused with 401). Give every broadcaster of the deployment the same --token-secret."
                );
            }
            return;
        }
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        members.insert(
            heartbeat.id.clone(),
            Member {
                heartbeat,
                last_seen: Instant::now(),
                assigned_since: 0,
            },
        );
    }

    /// Assigns `client_id`: its cluster among the live ones, and the live broadcaster of
    /// that cluster that ranks first for it (rendezvous hashing). Returns `(cluster, ws_url)`.
    pub fn choose(&self, client_id: &str) -> Option<(u32, String)> {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        members.retain(|_, m| m.last_seen.elapsed() < LIVENESS * 10);
        let mut clusters: Vec<u32> = members
            .values()
            .filter(|m| m.last_seen.elapsed() < LIVENESS)
            .map(|m| m.heartbeat.cluster)
            .collect();
        clusters.sort_unstable();
        clusters.dedup();
        if clusters.is_empty() {
            return None;
        }
        // The same client always lands on the same cluster while the clusters stay the same.
        let hasher = BuildHasherDefault::<DefaultHasher>::default();
        let hash = hasher.hash_one(client_id);
        let cluster = clusters[(hash % clusters.len() as u64) as usize];
        // The first in the client's order with room; all full: the first (it refuses the
        // handshake, and the client registers again).
        let mut ranked: Vec<&mut Member> = members
            .values_mut()
            .filter(|m| m.heartbeat.cluster == cluster && m.last_seen.elapsed() < LIVENESS)
            .collect();
        ranked.sort_by_cached_key(|m| {
            std::cmp::Reverse((
                hasher.hash_one((client_id, &m.heartbeat.id)),
                m.heartbeat.id.clone(),
            ))
        });
        let at = ranked.iter().position(|m| m.has_room()).unwrap_or(0);
        let member = ranked.into_iter().nth(at)?;
        member.assigned_since += 1;
        Some((cluster, member.heartbeat.ws_url.clone()))
    }
}

/// Announces `me` (if given) and listens to every announcement on `topic`, on a thread.
pub fn spawn_registry(
    brokers: &str,
    topic: &str,
    me: Option<(Heartbeat, Arc<BroadcastMetrics>)>,
    registry: Arc<Registry>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, BroadcastError> {
    let consumer: BaseConsumer = service::kafka::client_config(brokers)
        .set("group.id", format!("emostream-registry-{topic}"))
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| BroadcastError::kafka("create the registry consumer", e))?;
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::End)
        .map_err(|e| BroadcastError::kafka(format!("assign {topic}"), e))?;
    consumer
        .assign(&assignment)
        .map_err(|e| BroadcastError::kafka(format!("assign {topic}"), e))?;
    let producer: BaseProducer = service::kafka::client_config(brokers)
        .set("linger.ms", "0")
        .create()
        .map_err(|e| BroadcastError::kafka("create the registry producer", e))?;
    if let Some((heartbeat, _)) = &me {
        registry.heard(heartbeat.clone());
    }
    let topic = topic.to_owned();
    std::thread::Builder::new()
        .name("registry".into())
        .spawn(move || {
            let mut next_announcement = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if let Some((heartbeat, metrics)) = &me
                    && Instant::now() >= next_announcement
                {
                    let heartbeat = Heartbeat {
                        connections: metrics.connections.get(),
                        ..heartbeat.clone()
                    };
                    let payload =
                        serde_json::to_vec(&heartbeat).expect("a heartbeat serializes to JSON");
                    let _ =
                        producer.send(BaseRecord::to(&topic).key(&heartbeat.id).payload(&payload));
                    producer.poll(Duration::ZERO);
                    next_announcement = Instant::now() + HEARTBEAT_INTERVAL;
                }
                if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100))
                    && let Some(Ok(heartbeat)) =
                        message.payload().map(serde_json::from_slice::<Heartbeat>)
                {
                    registry.heard(heartbeat);
                }
            }
            let _ = producer.flush(Duration::from_secs(1));
        })
        .map_err(|source| BroadcastError::Thread {
            name: "registry",
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(id: &str, cluster: u32, connections: i64) -> Heartbeat {
        Heartbeat {
            id: id.into(),
            cluster,
            ws_url: format!("ws://{id}/ws"),
            connections,
            capacity: 0,
            key: String::new(),
        }
    }

    #[test]
    fn a_broadcaster_of_another_token_key_gets_no_viewers() {
        let registry = Registry::new("ours".into());
        registry.heard(Heartbeat {
            key: "ours".into(),
            ..beat("a", 1, 0)
        });
        registry.heard(Heartbeat {
            key: "theirs".into(),
            ..beat("b", 1, 0)
        });
        for client in 0..200 {
            let (_, url) = registry.choose(&format!("viewer-{client}")).unwrap();
            assert_eq!(url, "ws://a/ws");
        }
        // Alone, it is no broadcaster at all to send viewers to.
        let alone = Registry::new("ours".into());
        alone.heard(Heartbeat {
            key: "theirs".into(),
            ..beat("b", 1, 0)
        });
        assert_eq!(alone.choose("viewer"), None);
    }

    /// Where each of `clients` is sent, by broadcaster URL.
    fn spread(registry: &Registry, clients: std::ops::Range<u32>) -> HashMap<u32, String> {
        clients
            .map(|i| {
                let (cluster, url) = registry.choose(&format!("client-{i}")).unwrap();
                assert_eq!(cluster, 1);
                (i, url)
            })
            .collect()
    }

    fn counts(assigned: &HashMap<u32, String>) -> HashMap<String, usize> {
        let mut per = HashMap::new();
        for url in assigned.values() {
            *per.entry(url.clone()).or_default() += 1;
        }
        per
    }

    #[test]
    fn clients_spread_evenly_and_only_a_leaving_broadcasters_move() {
        let registry = Registry::default();
        for b in 0..6 {
            // Announced counts do not sway the choice: every broadcaster answers alike.
            registry.heard(beat(&format!("b{b}"), 1, b * 5_000));
        }
        let before = spread(&registry, 0..60_000);
        let per = counts(&before);
        assert_eq!(per.len(), 6);
        for (url, &n) in &per {
            let off = (n as f64 - 10_000.0).abs() / 10_000.0;
            assert!(
                off < 0.03,
                "{url}: {n} of 60,000, {:.1}% from even",
                off * 100.0
            );
        }
        // b0 leaves: its clients spread over the five others, the rest stay where they were.
        registry
            .members
            .lock()
            .unwrap()
            .get_mut("b0")
            .unwrap()
            .last_seen -= LIVENESS;
        let after = spread(&registry, 0..60_000);
        let gone = "ws://b0/ws";
        let mut moved_to: HashMap<String, usize> = HashMap::new();
        for (i, url) in &before {
            if url == gone {
                *moved_to.entry(after[i].clone()).or_default() += 1;
            } else {
                assert_eq!(
                    &after[i], url,
                    "client-{i} moved though its broadcaster stayed"
                );
            }
        }
        let moved: usize = moved_to.values().sum();
        assert_eq!(moved, per[gone]);
        assert_eq!(moved_to.len(), 5);
        for (url, &n) in &moved_to {
            let share = n as f64 / moved as f64;
            assert!((share - 0.2).abs() < 0.03, "{url} took {n} of {moved}");
        }
    }

    #[test]
    fn a_full_broadcaster_gets_no_more_clients_until_it_has_room() {
        let registry = Registry::default();
        let with_capacity = |id, connections| Heartbeat {
            capacity: 100,
            ..beat(id, 1, connections)
        };
        registry.heard(with_capacity("full", 100));
        registry.heard(with_capacity("room", 95));
        let sent: Vec<String> = (0..20)
            .map(|i| registry.choose(&format!("c{i}")).unwrap().1)
            .collect();
        assert!(
            sent[..5].iter().all(|u| u.contains("room")),
            "the first five to the one with room: {sent:?}"
        );
        // Both full now, as far as this one counted: clients go by their own order, and
        // the one announcing fewer clients gets them again.
        assert!(sent.iter().any(|u| u.contains("full")), "{sent:?}");
        registry.heard(with_capacity("full", 40));
        let again: Vec<String> = (0..20)
            .map(|i| registry.choose(&format!("d{i}")).unwrap().1)
            .collect();
        assert!(again.iter().all(|u| u.contains("full")), "{again:?}");
    }

    #[test]
    fn clients_spread_over_clusters_and_stay_put() {
        let registry = Registry::default();
        for c in 1..=3 {
            registry.heard(beat(&format!("b{c}"), c, 0));
        }
        let clusters: std::collections::BTreeSet<u32> = (0..60)
            .filter_map(|i| registry.choose(&format!("c{i}")))
            .map(|(c, _)| c)
            .collect();
        assert_eq!(clusters.len(), 3);
        assert_eq!(
            registry.choose("same").map(|c| c.0),
            registry.choose("same").map(|c| c.0)
        );
        assert!(Registry::default().choose("x").is_none());
    }
}
