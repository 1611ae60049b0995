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
