//! The simulator behind the ingest's `POST /load-test`: it offers the requested traffic to
//! the ingest's own API over HTTP, like `emostream simulate`.

use std::sync::Arc;
use std::time::Duration;

use ingest::load_test::{LoadDriver, LoadRun, LoadTestRequest};

use crate::generator::Profile;
use crate::simulate::{SimulateConfig, Tally, Target, run_simulation_counted};

/// Runs load tests with [`run_simulation_counted`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SimulatorDriver;

impl LoadDriver for SimulatorDriver {
    fn start(&self, target: &str, request: &LoadTestRequest) -> LoadRun {
        let config = SimulateConfig {
            target: Target::Http {
                addr: target.to_owned(),
                ack: false,
            },
            users: request.users,
            rate: request.rate,
            duration: Duration::from_secs_f64(request.duration_seconds),
            profile: if request.profile == "match" {
                Profile::Match
            } else {
                Profile::Steady
            },
            batch: request.batch,
            ..SimulateConfig::default()
        };
        let tally = Arc::new(Tally::default());
        let counted = Arc::clone(&tally);
        let task = tokio::spawn(async move {
            let report = run_simulation_counted(config, counted).await;
            serde_json::to_value(report).unwrap_or_default()
        });
        LoadRun {
            progress: Box::new(move || serde_json::to_value(tally.progress()).unwrap_or_default()),
            task,
        }
    }
}
