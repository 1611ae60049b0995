//! Starting and stopping the live dataflow: its workers on threads of their own, its admin
//! server (`/health`, `/ready`, `/metrics`), and the stop protocol (publish what is closed, commit).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use service::Shutdown;

use crate::control::RunControl;
use crate::failure::Failure;
use crate::live::{LiveConfig, LiveError, prepare, run_live};
use crate::metrics::DataflowMetrics;

/// How long a stop may take to publish what is closed before it gives up on that (a
/// publisher notices within a second, so the process ends within 10 s of the signal).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(7);

/// A running live dataflow.
pub struct RunningDataflow {
    /// Where `/health` and `/metrics` are served.
    pub addr: SocketAddr,
    /// Its metrics.
    pub metrics: Arc<DataflowMetrics>,
    control: Arc<RunControl>,
    cluster: crate::ClusterConfig,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<Result<(), LiveError>>,
}

/// Prepares the topics, serves the admin routes and starts the workers of `config`, which
/// run until `shutdown` (or a failure).
pub async fn start(config: LiveConfig, shutdown: Shutdown) -> Result<RunningDataflow, LiveError> {
    let prepared = prepare(&config).await?;
    let sizes: Vec<String> = config.windows.sizes().iter().map(|s| s.label()).collect();
    let metrics = Arc::new(DataflowMetrics::new(prepared.partitions, &sizes));
    let listen = config
        .metrics_listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let ready = service::ready::Readiness::starting();
    ready.starts_with(
        "workers",
        "starting: connecting the processes of the cluster",
    );
    service::ready::watch_brokers(Arc::clone(&ready), config.brokers.clone(), shutdown.clone());
    let addr = service::admin::serve(
        listen,
        Arc::clone(&metrics),
        Arc::clone(&ready),
        shutdown.clone(),
    )
    .await?;
    let control = Arc::new(RunControl::new(false));
    let cluster = config.cluster.clone();
    let task = {
        let (control, metrics) = (Arc::clone(&control), Arc::clone(&metrics));
        tokio::task::spawn_blocking(move || run_live(config, prepared, control, metrics, ready))
    };
    tracing::info!(%addr, "Dataflow running.");
    Ok(RunningDataflow {
        addr,
        metrics,
        control,
        cluster,
        shutdown,
        task,
    })
}

impl RunningDataflow {
    /// Waits for the shutdown signal, then stops the workers cleanly: closed windows
    /// published, offsets committed. A dataflow that stops by itself before is a failure.
    pub async fn stopped(mut self) -> Result<(), LiveError> {
        tokio::select! {
            () = self.shutdown.wait() => {}
            result = &mut self.task => {
                return match result {
                    Ok(Ok(())) => Err(LiveError::StoppedByItself),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(LiveError::of_panic(e.to_string(), &self.cluster)),
                };
            }
        }
        self.control.request_stop();
        // Draining waits for the broker to take what is closed; a broker away must not keep
        // the process from stopping. What is committed is behind what is published either
        // way, so a restart reads again what the stop left.
        let ended = match tokio::time::timeout(STOP_TIMEOUT, &mut self.task).await {
            Ok(ended) => ended,
            Err(_) => {
                self.control.fail(Failure::StopTimeout(STOP_TIMEOUT));
                // The workers notice within a second; one stuck in a blocking call is left
                // behind (the process ends).
                match tokio::time::timeout(Duration::from_secs(2), &mut self.task).await {
                    Ok(ended) => ended,
                    Err(_) => Ok(Err(LiveError::Failed(Failure::StopTimeout(STOP_TIMEOUT)))),
                }
            }
        };
        ended.map_err(|e| LiveError::of_panic(e.to_string(), &self.cluster))??;
        tracing::info!("Dataflow stopped: closed windows published, offsets committed.");
        Ok(())
    }
}
