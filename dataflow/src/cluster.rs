//! How many timely workers run where: threads per process, processes, and their addresses.

use std::path::Path;

/// Timely's standard layout options (`-w`, `-n`, `-p`, `-h`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Worker threads per process.
    pub workers: usize,
    /// Number of processes.
    pub processes: usize,
    /// This process's index, `0..processes`.
    pub process: usize,
    /// `host:port` of every process, in process order.
    pub addresses: Vec<String>,
}

/// A cluster layout that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A count is out of range.
    #[error("{0}")]
    Invalid(String),
    /// The hostfile cannot be read.
    #[error("cannot read hostfile {path}")]
    Hostfile {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            workers: 1,
            processes: 1,
            process: 0,
            addresses: Vec::new(),
        }
    }
}

impl ClusterConfig {
    /// Checks the counts and reads the hostfile (lines `host:port`; without one, process
    /// `i` listens on `localhost:2101+i`, as timely does).
    pub fn new(
        workers: usize,
        processes: usize,
        process: usize,
        hostfile: Option<&Path>,
    ) -> Result<Self, ClusterError> {
        if workers == 0 {
            return Err(ClusterError::Invalid(
                "workers (-w) must be at least 1".into(),
            ));
        }
        if processes == 0 {
            return Err(ClusterError::Invalid(
                "processes (-n) must be at least 1".into(),
            ));
        }
        if process >= processes {
            return Err(ClusterError::Invalid(format!(
                "process index (-p) {process} must be below the number of processes (-n) {processes}"
            )));
        }
        let addresses = match hostfile {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ClusterError::Hostfile {
                        path: path.display().to_string(),
                        source,
                    })?;
                let hosts: Vec<String> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned)
                    .collect();
                if hosts.len() < processes {
                    return Err(ClusterError::Invalid(format!(
                        "hostfile {} names {} processes, -n asks for {processes}",
                        path.display(),
                        hosts.len()
                    )));
                }
                hosts
            }
            None => (0..processes)
                .map(|i| format!("localhost:{}", 2101 + i))
                .collect(),
        };
        Ok(ClusterConfig {
            workers,
            processes,
            process,
            addresses,
        })
    }

    /// The timely configuration of this layout.
    pub fn timely(&self) -> timely::Config {
        if self.processes == 1 {
            return timely::Config::process(self.workers);
        }
        timely::Config {
            communication: timely::CommunicationConfig::Cluster {
                threads: self.workers,
                process: self.process,
                addresses: self.addresses[..self.processes].to_vec(),
                report: false,
                zerocopy: false,
            },
            worker: timely::WorkerConfig::default(),
        }
    }

    /// Total workers over all processes.
    pub fn peers(&self) -> usize {
        self.workers * self.processes
    }
}

/// The first failure of a connection to another process, as timely's network threads
/// (`timely:send-I`, `timely:recv-I`, I the other process) reported it in their panic.
static PEER_LOST: std::sync::OnceLock<(usize, String)> = std::sync::OnceLock::new();

/// Keeps what timely's network threads report when the connection to another process fails
/// (from then on, for the whole process): timely has no worker fault tolerance, so that is
/// why the run stops, and [`peer_lost`] tells it.
pub fn watch_peers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let earlier = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            let peer = thread.name().and_then(|name| {
                let index = name
                    .strip_prefix("timely:recv-")
                    .or_else(|| name.strip_prefix("timely:send-"))?;
                index.parse::<usize>().ok()
            });
            if let Some(peer) = peer {
                let message = info
                    .payload()
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| {
                        info.payload()
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_owned())
                    })
                    .unwrap_or_default();
                let _ = PEER_LOST.set((peer, message));
            }
            earlier(info);
        }));
    });
}

/// The other process whose connection failed first, and what timely said, if one did.
pub fn peer_lost() -> Option<(usize, String)> {
    PEER_LOST.get().cloned()
}
