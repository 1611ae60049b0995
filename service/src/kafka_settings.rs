//! Kafka client settings a deployment gives every Kafka client EmoStream makes (TLS, SASL,
//! timeouts, ...): a properties file in the format Kafka's own tools and the managed services
//! hand out (`--kafka-config`, `EMOSTREAM_KAFKA_CONFIG`), and single settings
//! (`--kafka-option key=value`) that override it. They are checked once, at start, against
//! librdkafka's own list; a setting EmoStream must own is refused by name with the reason;
//! the values of secrets (passwords, keys) are never printed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rdkafka::ClientConfig;

use crate::secret::Secret;

/// Why the settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file cannot be read.
    #[error("cannot read the Kafka client settings {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A setting is malformed, unknown or EmoStream's own.
    #[error("{origin}: {problem}")]
    Invalid {
        /// Where it was given: the file and line, or `--kafka-option`.
        origin: String,
        /// What is wrong.
        problem: String,
    },
}

/// Settings EmoStream sets itself, each with the one value it accepts (a properties file
/// handed out for Java clients may repeat it) and why it owns it.
const OWNED: &[(&str, Option<&str>, &str)] = &[
    ("bootstrap.servers", None, "give the brokers with --brokers"),
    (
        "metadata.broker.list",
        None,
        "give the brokers with --brokers",
    ),
    ("group.id", None, "the dataflow names its group (--group)"),
    (
        "enable.auto.commit",
        Some("false"),
        "the dataflow commits its offsets behind what it published",
    ),
    (
        "enable.auto.offset.store",
        Some("false"),
        "the dataflow commits its offsets behind what it published",
    ),
    (
        "auto.offset.reset",
        None,
        "the dataflow decides where to start (--start)",
    ),
    (
        "enable.partition.eof",
        None,
        "the dataflow needs to know where a partition ends",
    ),
    (
        "enable.idempotence",
        Some("true"),
        "the ingest's producer is idempotent, so no event is written twice",
    ),
    (
        "acks",
        Some("all"),
        "an event is acknowledged only once every in-sync replica has it",
    ),
    (
        "transactional.id",
        None,
        "EmoStream does not use Kafka transactions",
    ),
    (
        "max.in.flight.requests.per.connection",
        None,
        "the checkpoints are written one round at a time, in order",
    ),
    (
        "linger.ms",
        None,
        "EmoStream sets it per client (the ingest's batches, the dataflow's publications)",
    ),
    ("compression.type", None, "EmoStream sets it per producer"),
    (
        "queue.buffering.max.messages",
        None,
        "the ingest bounds its queue itself (--queue-capacity)",
    ),
    (
        "queue.buffering.max.kbytes",
        None,
        "the ingest bounds its queue itself (--queue-capacity)",
    ),
    (
        "fetch.wait.max.ms",
        None,
        "the dataflow's windows close no later than a fetch answers",
    ),
    (
        "statistics.interval.ms",
        None,
        "the dataflow's lag metrics read the client's statistics",
    ),
    (
        "topic.metadata.refresh.interval.ms",
        None,
        "EmoStream watches the events topic's partitions itself",
    ),
];

/// Java client settings with no librdkafka equivalent that managed services put in the
/// files they hand out: read and left out (serializers, the schema registry, DNS lookup).
const JAVA_ONLY: &[&str] = &[
    "key.serializer",
    "value.serializer",
    "key.deserializer",
    "value.deserializer",
    "client.dns.lookup",
    "schema.registry.url",
    "basic.auth.credentials.source",
    "basic.auth.user.info",
    "ssl.truststore.type",
];

/// Whether the value of `key` is a secret, never to be printed.
pub fn is_secret(key: &str) -> bool {
    [
        "password",
        "passphrase",
        "secret",
        "jaas",
        "token",
        "private.key",
        "key.pem",
    ]
    .iter()
    .any(|word| key.contains(word))
        || key == "sasl.oauthbearer.config"
}

/// Kafka client settings: `(key, value)` in the order given, the later winning.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientSettings {
    entries: Vec<(String, Secret)>,
    /// Java-only settings read and left out.
    left_out: Vec<String>,
}

impl fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string())
    }
}

/// `key=value, ...`, secrets' values as `<redacted>`.
impl fmt::Display for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (key, value)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if is_secret(key) {
                write!(f, "{key}=<redacted>")?;
            } else {
                write!(f, "{key}={}", value.expose())?;
            }
        }
        Ok(())
    }
}

impl ClientSettings {
    /// The settings of the properties file `file` (if any), then `options` (`key=value`),
    /// each checked.
    pub fn load(file: Option<&Path>, options: &[String]) -> Result<Self, SettingsError> {
        let mut settings = ClientSettings::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
                path: path.to_owned(),
                source,
            })?;
            for (line, key, value) in properties(&text) {
                let origin = format!("{} line {line}", path.display());
                settings.add(&origin, key, value)?;
            }
        }
        for option in options {
            let origin = "--kafka-option".to_owned();
            let Some((key, value)) = option.split_once('=') else {
                return Err(SettingsError::Invalid {
                    origin,
                    problem: format!(
                        "{:?} is not KEY=VALUE",
                        if is_secret(option) {
                            "<redacted>"
                        } else {
                            option
                        }
                    ),
                });
            };
            settings.add(&origin, key.trim().to_owned(), value.trim().to_owned())?;
        }
        settings.check()?;
        Ok(settings)
    }

    /// Checks the settings together as a client takes them (a SASL mechanism librdkafka does
    /// not have, a CA file it cannot read, ...): a client is made with them, connecting to
    /// nothing.
    fn check(&self) -> Result<(), SettingsError> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let mut config = ClientConfig::new();
        self.apply(&mut config);
        config.set_log_level(rdkafka::config::RDKafkaLogLevel::Emerg);
        match config.create::<rdkafka::producer::BaseProducer>() {
            Ok(_) => Ok(()),
            Err(error) => {
                // librdkafka names the setting, not always its value: the value too (never a
                // secret's).
                let message = error.to_string();
                let named: Vec<String> = self
                    .entries
                    .iter()
                    .filter(|(k, _)| message.contains(k.as_str()) && !is_secret(k))
                    .map(|(k, v)| format!("{k}={}", v.expose()))
                    .collect();
                let problem = if named.is_empty() {
                    message
                } else {
                    format!("{message} ({})", named.join(", "))
                };
                Err(SettingsError::Invalid {
                    origin: "the Kafka client settings".to_owned(),
                    problem,
                })
            }
        }
    }

    /// Adds a setting given at `origin`, checked.
    fn add(&mut self, origin: &str, key: String, value: String) -> Result<(), SettingsError> {
        let invalid = |problem: String| SettingsError::Invalid {
            origin: origin.to_owned(),
            problem,
        };
        if JAVA_ONLY.contains(&key.as_str()) {
            self.left_out.push(key);
            return Ok(());
        }
        if key == "sasl.jaas.config" {
            // Java's login module line: its user name and password are librdkafka's.
            let (username, password) = jaas_credentials(&value).ok_or_else(|| {
                invalid(
                    "sasl.jaas.config holds no username and password (a PLAIN or SCRAM login module): give sasl.username and sasl.password, or the sasl.oauthbearer.* settings".to_owned(),
                )
            })?;
            self.add(origin, "sasl.username".into(), username)?;
            return self.add(origin, "sasl.password".into(), password);
        }
        if let Some((_, accepted, why)) = OWNED.iter().find(|(owned, _, _)| *owned == key) {
            if accepted.is_some_and(|v| v.eq_ignore_ascii_case(&value)) {
                return Ok(());
            }
            return Err(invalid(format!(
                "{key} is EmoStream's own setting and cannot be given: {why}"
            )));
        }
        // librdkafka knows the setting and takes its value (checked on a configuration of
        // its own, so a client that does not use it warns instead of failing later).
        let mut probe = ClientConfig::new();
        probe.set(&key, &value);
        if let Err(error) = probe.create_native_config() {
            let problem = if is_secret(&key) {
                format!("{key}: librdkafka refuses it (the value is not shown)")
            } else {
                error.to_string()
            };
            return Err(invalid(problem));
        }
        self.entries.retain(|(k, _)| *k != key);
        self.entries.push((key, Secret::new(value)));
        Ok(())
    }

    /// The Java-only settings read and left out.
    pub fn left_out(&self) -> &[String] {
        &self.left_out
    }

    /// Whether no setting was given.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sets every setting on `config`.
    pub fn apply(&self, config: &mut ClientConfig) {
        for (key, value) in &self.entries {
            config.set(key, value.expose());
        }
    }

    /// The value given for `key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.expose())
    }

    /// What an error talking to the brokers should name: the security protocol and the SASL
    /// mechanism given, if any (`security.protocol=SASL_SSL, sasl.mechanism=SCRAM-SHA-512`).
    pub fn describe_security(&self) -> String {
        let protocol = self.get("security.protocol").unwrap_or("plaintext");
        match self
            .get("sasl.mechanisms")
            .or_else(|| self.get("sasl.mechanism"))
        {
            Some(mechanism) => format!("{protocol}, SASL {mechanism}"),
            None => protocol.to_owned(),
        }
    }
}

/// The settings every client takes, set once at start.
static SETTINGS: OnceLock<ClientSettings> = OnceLock::new();

/// Gives every Kafka client made from now on `settings` (once per process; later calls are
/// ignored and return false).
pub fn use_settings(settings: ClientSettings) -> bool {
    SETTINGS.set(settings).is_ok()
}

/// The settings every client takes (none unless [`use_settings`] was called).
pub fn settings() -> &'static ClientSettings {
    static NONE: OnceLock<ClientSettings> = OnceLock::new();
    SETTINGS
        .get()
        .unwrap_or_else(|| NONE.get_or_init(ClientSettings::default))
}

/// The `(line, key, value)` of a Java properties text: `key=value`, `key: value` or `key
/// value`, `#` and `!` comments, a line ending in `\` continued on the next.
fn properties(text: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        let (start, mut logical) = match pending.take() {
            Some((start, so_far)) => (start, so_far),
            None => {
                if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                    continue;
                }
                (i + 1, String::new())
            }
        };
        let continued = line.ends_with('\\') && !line.ends_with("\\\\");
        logical.push_str(
            line.strip_suffix('\\')
                .filter(|_| continued)
                .unwrap_or(line),
        );
        if continued {
            pending = Some((start, logical));
            continue;
        }
        let split = logical
            .find(['=', ':'])
            .into_iter()
            .chain(logical.find(char::is_whitespace))
            .min();
        let (key, value) = match split {
            Some(at) => {
                let value = logical[at..].trim_start();
                let value = value
                    .strip_prefix(['=', ':'])
                    .map_or(value, str::trim_start);
                (logical[..at].trim(), value.trim_end())
            }
            None => (logical.trim(), ""),
        };
        out.push((start, key.to_owned(), value.to_owned()));
    }
    if let Some((start, logical)) = pending {
        out.push((start, logical.trim().to_owned(), String::new()));
    }
    out
}

/// The `username` and `password` of a JAAS login module line (`... required
/// username="u" password="p";`), quoted with `"` or `'`.
fn jaas_credentials(text: &str) -> Option<(String, String)> {
    let field = |name: &str| {
        let at = text.find(&format!("{name}="))? + name.len() + 1;
        let rest = &text[at..];
        let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let end = rest[1..].find(quote)?;
        Some(rest[1..1 + end].to_owned())
    };
    Some((field("username")?, field("password")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_that_holds_a_secret_is_one() {
        for key in [
            "sasl.password",
            "sasl.jaas.config",
            "ssl.key.password",
            "ssl.keystore.password",
            "ssl.key.pem",
            "sasl.oauthbearer.config",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.assertion.private.key.passphrase",
            "sasl.oauthbearer.assertion.private.key.pem",
        ] {
            assert!(is_secret(key), "{key}");
        }
        for key in ["sasl.username", "ssl.ca.location", "security.protocol"] {
            assert!(!is_secret(key), "{key}");
        }
    }

    fn load(text: &str, options: &[&str]) -> Result<ClientSettings, SettingsError> {
        let dir = std::env::temp_dir().join(format!("emostream-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{:x}.properties", text.len() * 31 + options.len()));
        std::fs::write(&path, text).unwrap();
        let options: Vec<String> = options.iter().map(|o| (*o).to_owned()).collect();
        ClientSettings::load(Some(&path), &options)
    }

    #[test]
    fn a_managed_services_file_is_read_as_librdkafka_settings() {
        // As Confluent Cloud hands it out, with comments and a continued line.
        let text = "# Required connection configs for Kafka producer, consumer, and admin\n\
            bootstrap.servers=pkc-1.example.cloud:9092\n\
            security.protocol=SASL_SSL\n\
            sasl.mechanisms=PLAIN\n\
            sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule \\\n\
            \x20   required username='KEY' password='S3CR3T';\n\
            ! Best practice for higher availability in Apache Kafka clients\n\
            client.dns.lookup=use_all_dns_ips\n\
            session.timeout.ms: 45000\n\
            acks=all\n";
        let err = load(text, &[]).unwrap_err().to_string();
        assert!(
            err.contains("line 2")
                && err.contains("bootstrap.servers")
                && err.contains("--brokers"),
            "{err}"
        );
        let text = text.replace("bootstrap.servers=pkc-1.example.cloud:9092\n", "");
        let settings = load(&text, &["session.timeout.ms=30000"]).unwrap();
        assert_eq!(settings.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(settings.get("sasl.username"), Some("KEY"));
        assert_eq!(settings.get("sasl.password"), Some("S3CR3T"));
        // The option overrides the file.
        assert_eq!(settings.get("session.timeout.ms"), Some("30000"));
        assert_eq!(settings.left_out(), ["client.dns.lookup"]);
        assert_eq!(settings.describe_security(), "SASL_SSL, SASL PLAIN");
        let shown = format!("{settings} {settings:?}");
        assert!(!shown.contains("S3CR3T"), "{shown}");
        assert!(shown.contains("sasl.password=<redacted>"), "{shown}");
    }

    #[test]
    fn owned_unknown_and_malformed_settings_are_refused_by_name() {
        let refused = |options: &[&str]| load("", options).unwrap_err().to_string();
        let err = refused(&["enable.auto.commit=true"]);
        assert!(
            err.starts_with("--kafka-option: enable.auto.commit is EmoStream's own"),
            "{err}"
        );
        assert!(refused(&["acks=1"]).contains("every in-sync replica"));
        assert!(load("", &["acks=all"]).unwrap().is_empty());
        let err = refused(&["no.such.setting=1"]);
        assert!(err.contains("no.such.setting"), "{err}");
        let err = refused(&["security.protocol=CARRIER_PIGEON"]);
        assert!(err.contains("security.protocol"), "{err}");
        // Taken alone but not together with the others.
        let err = refused(&["security.protocol=SASL_SSL", "sasl.mechanisms=NO-SUCH"]);
        assert!(err.contains("NO-SUCH"), "{err}");
        let err = refused(&["security.protocol=SSL", "ssl.ca.location=/no/such/ca.pem"]);
        assert!(err.contains("/no/such/ca.pem"), "{err}");
        let err = refused(&["sasl.password"]);
        assert!(
            err.contains("not KEY=VALUE") && !err.contains("sasl.password\""),
            "{err}"
        );
        let err = load("sasl.jaas.config=OAuthBearerLoginModule required;\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 1") && err.contains("sasl.oauthbearer"),
            "{err}"
        );
    }

    #[test]
    fn properties_lines_split_as_java_reads_them() {
        let read = properties("a=1\n  b : 2 \nc 3\n#x=y\n\nd=x\\\n   y\ne\n");
        let got: Vec<(usize, &str, &str)> = read
            .iter()
            .map(|(l, k, v)| (*l, k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (1, "a", "1"),
                (2, "b", "2"),
                (3, "c", "3"),
                (6, "d", "xy"),
                (8, "e", "")
            ]
        );
    }
}
