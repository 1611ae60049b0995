//! Kafka-to-Kafka dataflow throughput next to a consume-only baseline on the same broker in
//! the same run. Preloads N JSON events into a fresh topic, then measures, from the first
//! message consumed to the last: a plain consumer that only reads, and `emostream dataflow`
//! with 1 and 2 workers (which also decodes, counts windows and publishes them).
//!
//! `cargo bench --bench kafka_dataflow -- EVENTS OUT_DIR` with EMOSTREAM_BROKERS set.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const PARTITIONS: i32 = 4;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let events: u64 = args
        .next()
        .context("usage: kafka_dataflow EVENTS OUT_DIR")?
        .parse()?;
    let out = std::path::PathBuf::from(
        args.next()
            .context("usage: kafka_dataflow EVENTS OUT_DIR")?,
    );
    let brokers =
        std::env::var("EMOSTREAM_BROKERS").context("EMOSTREAM_BROKERS must name the broker")?;
    let run = format!("bench-{}", std::process::id());
    let topic = format!("{run}-events");
    create_topic(&brokers, &topic)?;
    let produced = preload(&brokers, &topic, events)?;
    eprintln!(
        "preloaded {events} events in {produced:.2} s ({:.0}/s)",
        events as f64 / produced
    );
    let mut lines = vec![format!(
        "{{\"variant\":\"produce\",\"events\":{events},\"seconds\":{produced:.3},\"events_per_second\":{:.0}}}",
        events as f64 / produced
    )];
    let baseline = consume_only(&brokers, &topic, events)?;
    lines.push(format!(
        "{{\"variant\":\"consume-only\",\"workers\":1,\"events\":{events},\"seconds\":{baseline:.3},\"events_per_second\":{:.0}}}",
        events as f64 / baseline
    ));
    for workers in [1, 2] {
        let seconds = dataflow(&brokers, &topic, &run, workers, events)?;
        lines.push(format!(
            "{{\"variant\":\"dataflow\",\"workers\":{workers},\"events\":{events},\"seconds\":{seconds:.3},\"events_per_second\":{:.0}}}",
            events as f64 / seconds
        ));
    }
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("kafka_dataflow.jsonl"), lines.join("\n") + "\n")?;
    println!("{}", lines.join("\n"));
    Ok(())
}

fn create_topic(brokers: &str, topic: &str) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let spec = service::kafka::TopicSpec {
        name: topic.to_owned(),
        partitions: PARTITIONS,
    };
    runtime.block_on(service::kafka::ensure_topics(brokers, &[spec], 1))?;
    Ok(())
}

/// Writes `n` events stamped over the past hour; returns the seconds it took.
fn preload(brokers: &str, topic: &str, n: u64) -> Result<f64> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .set("compression.type", "lz4")
        .create()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let start = now - 3_600_000;
    let emojis = ["🔥", "😂", "👏", "❤️", "🎉"];
    let began = Instant::now();
    for i in 0..n {
        let user = format!("user{:06}", (i * 7919) % 100_000);
        let ts = start + (i as i64 * 3_000_000 / n as i64);
        let payload = format!(
            r#"{{"user_id":"{user}","emoji_type":"{}","timestamp":{ts}}}"#,
            emojis[(i % 5) as usize]
        );
        let record = BaseRecord::to(topic)
            .key(user.as_str())
            .payload(payload.as_str());
        let serve = || producer.poll(Duration::from_millis(1));
        service::kafka::send_waiting(|r| producer.send(r), serve, record)
            .map_err(|(error, _)| error)?;
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(began.elapsed().as_secs_f64())
}

/// Reads every message once, in one thread; seconds from the first to the last.
fn consume_only(brokers: &str, topic: &str, n: u64) -> Result<f64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-baseline"))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut seen = 0u64;
    let mut first = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while seen < n && Instant::now() < deadline {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            first.get_or_insert_with(Instant::now);
            seen += 1;
        }
    }
    anyhow::ensure!(seen == n, "the baseline read {seen} of {n} messages");
    Ok(first.map_or(0.0, |f| f.elapsed().as_secs_f64()))
}

/// Runs `emostream dataflow` on the topic; seconds from its first to its last message,
/// read off its metrics.
// Long: one benchmark run: produce, consume, time.
fn dataflow(brokers: &str, topic: &str, run: &str, workers: usize, n: u64) -> Result<f64> {
    let prefix = format!("{run}-w{workers}");
    let dir = tempfile::tempdir()?;
    let ready_file = dir.path().join("ready.json");
    let mut child = Command::new("target/release/emostream")
        .args([
            "dataflow",
            "--start",
            "earliest",
            "--metrics-listen",
            "127.0.0.1:0",
            "-w",
            &workers.to_string(),
        ])
        .args([
            "--events-topic",
            topic,
            "--group",
            &format!("{prefix}-group"),
        ])
        .args([
            "--windows-topic",
            &format!("{prefix}-windows"),
            "--late-topic",
            &format!("{prefix}-late"),
        ])
        .args(["--cluster-prefix", &format!("{prefix}-cluster")])
        .env("EMOSTREAM_BROKERS", brokers)
        .env("EMOSTREAM_READY_FILE", &ready_file)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("start target/release/emostream (build it first)")?;
    let url = format!("http://{}/metrics", ready_address(&ready_file, "dataflow")?);
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    let consumed = || -> u64 {
        let text = agent
            .get(&url)
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with("dataflow_events_consumed_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first = None;
    let mut last = 0;
    while Instant::now() < deadline {
        last = consumed();
        if last > 0 {
            first.get_or_insert_with(Instant::now);
        }
        if last >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let seconds = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    anyhow::ensure!(
        last >= n,
        "the dataflow with {workers} workers read {last} of {n} messages"
    );
    Ok(seconds)
}

/// The address of `part` (`ingest`, `dataflow`) in the ready file a service writes once it
/// is up; waits for it at most 60 s.
fn ready_address(file: &Path, part: &str) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(file) {
            let ready: serde_json::Value = serde_json::from_str(&text)?;
            return ready[part]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("no {part} address in {text}"));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} was never written",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
