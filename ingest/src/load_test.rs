//! `POST /load-test` and `GET /load-test`: a traffic simulator inside the service, offering
//! its open-loop traffic to this very ingest API over HTTP, like `emostream simulate`. The
//! service holds the endpoint only: the simulator comes from the tools crate through a
//! [`LoadDriver`] the command line hands in, and without one (the default, since it lets a
//! caller generate load) the endpoint answers 403. One load test runs at a time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

/// Runs the traffic of a load test: the simulator, provided by the tools crate.
pub trait LoadDriver: Send + Sync + std::fmt::Debug {
    /// Starts offering `request`'s traffic to the ingest API at `target` (`host:port`) on the
    /// current runtime.
    fn start(&self, target: &str, request: &LoadTestRequest) -> LoadRun;
}

/// A load test under way, as its driver reports it.
pub struct LoadRun {
    /// The counters so far, as JSON.
    pub progress: Box<dyn Fn() -> Value + Send + Sync>,
    /// Ends with the summary, as JSON.
    pub task: tokio::task::JoinHandle<Value>,
}

/// The longest load test.
const MAX_DURATION: Duration = Duration::from_secs(3600);
/// The highest rate, events per second.
const MAX_RATE: f64 = 1_000_000.0;
/// The largest audience.
const MAX_USERS: u64 = 10_000_000;

/// Why a load test was refused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refusal {
    /// HTTP status.
    #[serde(skip)]
    pub status: u16,
    /// What was wrong.
    pub error: String,
    /// The field at fault, if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
}

impl Refusal {
    fn field(field: &'static str, error: String) -> Self {
        Refusal {
            status: 400,
            error,
            field: Some(field),
        }
    }
}

/// What a load test was asked for.
#[derive(Debug, Clone, Serialize)]
pub struct LoadTestRequest {
    /// Seconds.
    pub duration_seconds: f64,
    /// Events per second.
    pub rate: f64,
    /// Audience size.
    pub users: u64,
    /// `steady` or `match`.
    pub profile: &'static str,
    /// Events per request.
    pub batch: usize,
}

impl LoadTestRequest {
    /// Reads `{"duration": "60s", "rate": "5000/s", "users": 10000, "profile": "match",
    /// "batch": 1}`: duration and rate are required.
    // Long: every field of the request checked in turn, each with its own error.
    pub fn parse(body: &[u8], max_batch: usize) -> Result<Self, Refusal> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| Refusal::field("body", format!("malformed JSON: {e}")))?;
        let object = value
            .as_object()
            .ok_or_else(|| Refusal::field("body", "expected a JSON object".into()))?;
        for key in object.keys() {
            if !["duration", "rate", "users", "profile", "batch"].contains(&key.as_str()) {
                return Err(Refusal::field(
                    "body",
                    format!("unknown field {key:?}: use duration, rate, users, profile, batch"),
                ));
            }
        }
        let text = |field: &'static str| -> Result<Option<String>, Refusal> {
            match object.get(field) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(other) => Err(Refusal::field(
                    field,
                    format!("expected a string, found {other}"),
                )),
            }
        };
        let number = |field: &'static str, default: u64, max: u64| -> Result<u64, Refusal> {
            match object.get(field) {
                None => Ok(default),
                Some(v) => v.as_u64().filter(|n| (1..=max).contains(n)).ok_or_else(|| {
                    Refusal::field(
                        field,
                        format!("expected a whole number from 1 to {max}, found {v}"),
                    )
                }),
            }
        };
        let duration = text("duration")?.ok_or_else(|| {
            Refusal::field("duration", "missing field duration, like \"60s\"".into())
        })?;
        let duration = model::duration::parse_duration(&duration)
            .map_err(|e| Refusal::field("duration", e.to_string()))?;
        if duration.is_zero() || duration > MAX_DURATION {
            return Err(Refusal::field(
                "duration",
                format!(
                    "duration must be above 0 and at most {}s",
                    MAX_DURATION.as_secs()
                ),
            ));
        }
        let rate = text("rate")?
            .ok_or_else(|| Refusal::field("rate", "missing field rate, like \"5000/s\"".into()))?;
        let rate = model::duration::parse_rate(&rate)
            .map_err(|e| Refusal::field("rate", e.to_string()))?;
        if rate > MAX_RATE {
            return Err(Refusal::field(
                "rate",
                format!("rate must be at most {MAX_RATE}/s"),
            ));
        }
        let profile = match text("profile")?.as_deref() {
            None | Some("steady") => "steady",
            Some("match") => "match",
            Some(other) => {
                return Err(Refusal::field(
                    "profile",
                    format!("unknown profile {other:?}: use steady or match"),
                ));
            }
        };
        Ok(LoadTestRequest {
            duration_seconds: duration.as_secs_f64(),
            rate,
            users: number("users", 100_000, MAX_USERS)?,
            profile,
            batch: number("batch", 1, max_batch as u64)? as usize,
        })
    }
}

/// The state of the load tests, for `GET /load-test`.
#[derive(Debug, Clone, Serialize)]
pub struct LoadTestStatus {
    /// `idle` (none run yet), `running` or `done`.
    pub state: &'static str,
    /// What the current or last one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<LoadTestRequest>,
    /// Seconds since it started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elapsed_seconds: Option<f64>,
    /// How far it got.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Value>,
    /// Its summary, once done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<Value>,
}

struct Run {
    request: LoadTestRequest,
    started: Instant,
    progress: Box<dyn Fn() -> Value + Send + Sync>,
    summary: Arc<Mutex<Option<Value>>>,
    /// Waits for the driver's task and keeps its summary.
    task: tokio::task::JoinHandle<()>,
    /// The driver's task itself.
    traffic: tokio::task::AbortHandle,
}

/// The load tests of one ingest service.
pub struct LoadTests {
    driver: Option<Arc<dyn LoadDriver>>,
    target: String,
    current: Mutex<Option<Run>>,
}

impl LoadTests {
    /// Load tests against the ingest API at `target` (`host:port`), run by `driver`; none
    /// are allowed without one.
    pub fn new(driver: Option<Arc<dyn LoadDriver>>, target: String) -> Self {
        LoadTests {
            driver,
            target,
            current: Mutex::new(None),
        }
    }

    /// Refuses (403) unless load tests are enabled.
    pub fn check_enabled(&self) -> Result<(), Refusal> {
        self.driver().map(|_| ())
    }

    fn driver(&self) -> Result<&Arc<dyn LoadDriver>, Refusal> {
        self.driver.as_ref().ok_or_else(|| Refusal {
            status: 403,
            error: "load tests are disabled: start the service with --enable-load-test".into(),
            field: None,
        })
    }

    /// Starts a load test, unless one is running.
    pub fn start(&self, request: LoadTestRequest) -> Result<LoadTestStatus, Refusal> {
        let driver = self.driver()?;
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_some_and(|run| !run.task.is_finished()) {
            return Err(Refusal {
                status: 409,
                error: "a load test is running: GET /load-test for its progress".into(),
                field: None,
            });
        }
        let LoadRun { progress, task } = driver.start(&self.target, &request);
        let summary = Arc::new(Mutex::new(None));
        let traffic = task.abort_handle();
        let task = {
            let summary = Arc::clone(&summary);
            tokio::spawn(async move {
                let Ok(report) = task.await else { return };
                tracing::info!(
                    accepted = %report["events_accepted"],
                    offered = %report["events_offered"],
                    "Load test done."
                );
                *summary.lock().unwrap_or_else(|e| e.into_inner()) = Some(report);
            })
        };
        tracing::info!(?request, "Load test started.");
        *current = Some(Run {
            request,
            started: Instant::now(),
            progress,
            summary,
            task,
            traffic,
        });
        drop(current);
        self.status()
    }

    /// The current or last load test.
    pub fn status(&self) -> Result<LoadTestStatus, Refusal> {
        self.driver()?;
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let Some(run) = current.as_ref() else {
            return Ok(LoadTestStatus {
                state: "idle",
                request: None,
                elapsed_seconds: None,
                progress: None,
                summary: None,
            });
        };
        let summary = run
            .summary
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok(LoadTestStatus {
            state: if summary.is_some() { "done" } else { "running" },
            request: Some(run.request.clone()),
            elapsed_seconds: Some(run.started.elapsed().as_secs_f64()),
            progress: Some((run.progress)()),
            summary,
        })
    }

    /// Stops a running load test (the service is shutting down).
    pub fn abort(&self) {
        if let Some(run) = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            run.traffic.abort();
            run.task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_with_defaults_and_limits() {
        let r = LoadTestRequest::parse(
            br#"{"duration": "60s", "rate": "5000/s", "users": 10000}"#,
            100,
        )
        .unwrap();
        assert_eq!(
            (r.duration_seconds, r.rate, r.users, r.profile, r.batch),
            (60.0, 5000.0, 10000, "steady", 1)
        );
        let r = LoadTestRequest::parse(
            br#"{"duration": "2s", "rate": 300, "profile": "match", "batch": 10}"#,
            100,
        )
        .unwrap();
        assert_eq!(
            (r.rate, r.profile, r.batch, r.users),
            (300.0, "match", 10, 100_000)
        );
        for (body, field) in [
            (&br#"{"rate": "5/s"}"#[..], "duration"),
            (br#"{"duration": "5s"}"#, "rate"),
            (br#"{"duration": "5 parsecs", "rate": "5/s"}"#, "duration"),
            (br#"{"duration": "2h", "rate": "5/s"}"#, "duration"),
            (br#"{"duration": "5s", "rate": "-5/s"}"#, "rate"),
            (br#"{"duration": "5s", "rate": "5/s", "users": 0}"#, "users"),
            (
                br#"{"duration": "5s", "rate": "5/s", "batch": 101}"#,
                "batch",
            ),
            (
                br#"{"duration": "5s", "rate": "5/s", "profile": "final"}"#,
                "profile",
            ),
            (br#"{"duration": "5s", "rate": "5/s", "speed": 2}"#, "body"),
            (br#"[1, 2]"#, "body"),
            (br#"{"duration": "5s""#, "body"),
        ] {
            let refusal = LoadTestRequest::parse(body, 100).unwrap_err();
            assert_eq!(
                (refusal.status, refusal.field),
                (400, Some(field)),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn disabled_load_tests_are_refused() {
        let tests = LoadTests::new(None, "127.0.0.1:1".into());
        assert_eq!(tests.status().unwrap_err().status, 403);
        let request = LoadTestRequest::parse(br#"{"duration": "1s", "rate": "1/s"}"#, 1).unwrap();
        assert_eq!(tests.start(request).unwrap_err().status, 403);
    }
}
