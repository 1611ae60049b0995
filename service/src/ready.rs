//! Readiness: whether a service can do its work now (`GET /ready`), apart from whether it is
//! alive (`GET /health`). A load balancer routes only to a ready service; one that is not
//! says why.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::Shutdown;
use crate::kafka::Reacher;

/// How often the brokers are asked whether they answer.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long one ask waits for an answer: an outage is told within this and [`CHECK_EVERY`].
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What stands in the way of a service's work, by part (empty: ready).
#[derive(Debug, Default)]
pub struct Readiness {
    problems: Mutex<BTreeMap<&'static str, String>>,
}

impl Readiness {
    /// A service not ready until the brokers answered once ([`watch_brokers`] tells).
    pub fn starting() -> Arc<Self> {
        let ready = Readiness::default();
        ready.starts_with("broker", "not asked yet");
        Arc::new(ready)
    }

    /// Records what `part` waits for at the start (not logged: the first change is).
    pub fn starts_with(&self, part: &'static str, problem: &str) {
        let mut problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        problems.insert(part, problem.to_owned());
    }

    /// Records that `part` has `problem`, or none; a change is logged.
    pub fn set(&self, part: &'static str, problem: Option<String>) {
        let mut problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        match problem {
            Some(problem) => {
                if problems.get(part) != Some(&problem) {
                    tracing::warn!(part, %problem, "Not ready.");
                    problems.insert(part, problem);
                }
            }
            None => {
                if problems.remove(part).is_some() && problems.is_empty() {
                    tracing::info!("Ready.");
                }
            }
        }
    }

    /// Why the service is not ready, one line per part (empty: ready).
    pub fn problems(&self) -> Vec<String> {
        let problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        problems
            .iter()
            .map(|(part, p)| format!("{part}: {p}"))
            .collect()
    }

    /// The body of `/ready`.
    pub fn body(&self) -> serde_json::Value {
        let reasons = self.problems();
        serde_json::json!({ "ready": reasons.is_empty(), "reasons": reasons })
    }
}

/// Asks `brokers` every [`CHECK_EVERY`] whether they answer, with the client settings in use,
/// and keeps the answer as the part `broker` of `ready`; from the shutdown on, the part
/// `shutdown` says the service is stopping. Must run inside a tokio runtime.
pub fn watch_brokers(ready: Arc<Readiness>, brokers: String, mut shutdown: Shutdown) {
    tokio::spawn(async move {
        let mut reacher: Option<Arc<Reacher>> = None;
        loop {
            let (brokers, held) = (brokers.clone(), reacher.clone());
            // The client is made once (and again only if making it failed).
            let answer = tokio::task::spawn_blocking(move || {
                let reacher = match held {
                    Some(reacher) => reacher,
                    None => Arc::new(Reacher::new(&brokers)?),
                };
                let checked = reacher.check(CHECK_TIMEOUT);
                Ok::<_, crate::kafka::ReachError>((reacher, checked))
            })
            .await;
            let problem = match answer {
                Ok(Ok((made, checked))) => {
                    reacher = Some(made);
                    checked.err().map(|e| e.to_string())
                }
                Ok(Err(error)) => Some(error.to_string()),
                Err(error) => Some(error.to_string()),
            };
            ready.set("broker", problem);
            tokio::select! {
                () = shutdown.wait() => break,
                () = tokio::time::sleep(CHECK_EVERY) => {}
            }
        }
        ready.set("shutdown", Some("the service is stopping".to_owned()));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_with_problems_is_not_ready_and_says_which() {
        let ready = Readiness::default();
        assert_eq!(ready.body()["ready"], true);
        ready.set("broker", Some("no answer".into()));
        ready.set("shutdown", Some("stopping".into()));
        assert_eq!(
            ready.body(),
            serde_json::json!({"ready": false, "reasons": ["broker: no answer", "shutdown: stopping"]})
        );
        ready.set("broker", None);
        ready.set("shutdown", None);
        assert_eq!(ready.body()["ready"], true);
    }
}
