//! How many timely workers run where: threads per process, processes, and their addresses.

use std::path::Path;
use std::time::Duration;

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

    /// Starts the workers of this process running `func`, as `timely::execute` does, with the
    /// connections to the other processes made to notice a peer that stops answering: data
    /// unacknowledged for [`PEER_TIMEOUT`], or no answer to keepalive probes sent after a
    /// second of quiet, ends the connection (timely's own sockets would wait for the
    /// system's retransmissions, a quarter of an hour, while the run stalls).
    pub fn execute<T, F>(&self, func: F) -> Result<timely::communication::WorkerGuards<T>, String>
    where
        T: Send + 'static,
        F: Fn(&mut timely::worker::Worker) -> T + Send + Sync + 'static,
    {
        use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
        use timely::communication::allocator::{AllocatorBuilder, ProcessBuilder};
        if self.processes == 1 {
            return timely::execute(self.timely(), func);
        }
        let addresses = self.addresses[..self.processes].to_vec();
        let sockets =
            timely::communication::networking::create_sockets(addresses, self.process, false)
                .map_err(|e| format!("cannot connect the processes: {e}"))?;
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(1))
            .with_interval(Duration::from_secs(1));
        for socket in sockets.iter().flatten() {
            let socket = socket2::SockRef::from(socket);
            socket
                .set_tcp_keepalive(&keepalive)
                .map_err(|e| format!("cannot set the keepalive of a process's connection: {e}"))?;
            // Elsewhere the keepalive probes alone tell (after the system's count of them).
            #[cfg(target_os = "linux")]
            socket
                .set_tcp_user_timeout(Some(PEER_TIMEOUT))
                .map_err(|e| format!("cannot set the timeout of a process's connection: {e}"))?;
        }
        let hooks = timely::communication::Hooks::default();
        let local = ProcessBuilder::new_typed_vector(
            self.workers,
            hooks.refill.clone(),
            hooks.spill.clone(),
        );
        let (builders, guard) =
            initialize_networking_from_sockets(local, sockets, self.process, self.workers, hooks)
                .map_err(|e| format!("cannot start the network threads: {e}"))?;
        timely::execute::execute_from(
            builders.into_iter().map(AllocatorBuilder::Tcp).collect(),
            Box::new(guard),
            timely::WorkerConfig::default(),
            func,
        )
    }
}

/// How long a connection to another process may leave data unacknowledged, or keepalive
/// probes unanswered, before it counts as lost (and the run stops, naming that process).
pub const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// The first failure of a connection to another process, as timely's network threads
/// (`timely:send-I`, `timely:recv-I`, I the other process) reported it in their panic.
static PEER_LOST: std::sync::OnceLock<(usize, String)> = std::sync::OnceLock::new();

/// Keeps what timely's network threads report when the connection to another process fails
/// (from then on, for the whole process): timely has no worker fault tolerance, so that is
/// why the run stops, and [`ClusterConfig::peer_lost`] tells it.
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
            // Only timely's own report of a failed connection: a network thread that panics
            // because a local worker did (a poisoned queue) is not a lost peer.
            if let Some(peer) = peer.filter(|_| message.starts_with("timely communication error:"))
            {
                let _ = PEER_LOST.set((peer, message));
            }
            // Once a peer is lost, the panics that follow (the other network threads, the
            // workers) are its consequences: the run's error tells it in one line.
            if PEER_LOST.get().is_some() {
                tracing::debug!(thread = thread.name(), %info, "After the loss of a process.");
            } else {
                earlier(info);
            }
        }));
    });
}

/// The connection to another process of the cluster failed (it stopped, or the network
/// between them did).
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "lost process {peer} of this dataflow ({address}): {detail}; timely has no worker fault tolerance, so this process stops too: start every process of the dataflow again (-n/-p/--hostfile as before), and they resume from the checkpoints"
)]
pub struct PeerLost {
    /// The other process's index.
    pub peer: usize,
    /// Its address.
    pub address: String,
    /// What timely said.
    pub detail: String,
}

impl ClusterConfig {
    /// The other process of this cluster whose connection failed first, if one did.
    pub fn peer_lost(&self) -> Option<PeerLost> {
        PEER_LOST.get().map(|(peer, detail)| PeerLost {
            peer: *peer,
            address: self.addresses.get(*peer).cloned().unwrap_or_default(),
            detail: detail.clone(),
        })
    }
}
