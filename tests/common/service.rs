//! An `emostream` service process for the tests: started with a ready file, so its bound
//! addresses come from what it wrote, not from what it printed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::kafka::brokers;

/// How long a service may take to start (the broker may be slow to create topics).
const START: Duration = Duration::from_secs(60);

/// The addresses a service wrote to its ready file.
#[derive(Debug, Default, Deserialize)]
pub struct Ready {
    pub ingest: Option<String>,
    pub dataflow: Option<String>,
    #[serde(default)]
    pub broadcast: Vec<String>,
}

/// A service process, killed when dropped. Its stderr goes to the test's stderr.
pub struct Service {
    pub child: Child,
    /// Its bound addresses.
    pub ready: Ready,
    _dir: tempfile::TempDir,
}

impl Service {
    pub fn start(args: &[String]) -> Self {
        Service::start_on(&brokers(), args)
    }

    /// Starts a service of the brokers `brokers` and waits until it is up.
    pub fn start_on(brokers: &str, args: &[String]) -> Self {
        Service::launch(&[], brokers, args, &[], "warn", Stdio::inherit())
    }

    /// Starts a service with the environment variables `env` set as well.
    pub fn start_with_env(args: &[String], env: &[(&str, &str)]) -> Self {
        Service::launch(&[], &brokers(), args, env, "warn", Stdio::inherit())
    }

    /// Starts a service logging at `level` into the file `log`.
    pub fn start_logged(args: &[String], level: &str, log: &std::path::Path) -> Self {
        let log = std::fs::File::create(log).expect("create the log file");
        Service::launch(&[], &brokers(), args, &[], level, Stdio::from(log))
    }

    /// Starts a service of the brokers `brokers` logging at `level` into the file `log`.
    pub fn start_logged_on(
        brokers: &str,
        args: &[String],
        level: &str,
        log: &std::path::Path,
    ) -> Self {
        let log = std::fs::File::create(log).expect("create the log file");
        Service::launch(&[], brokers, args, &[], level, Stdio::from(log))
    }

    /// Starts a service through the command `wrapper` (like `ip netns exec HOST`) with `env`
    /// set as well, logging at info into the file `log`.
    pub fn start_through(
        wrapper: &[&str],
        brokers: &str,
        args: &[String],
        env: &[(&str, &str)],
        log: &std::path::Path,
    ) -> Self {
        let log = std::fs::File::create(log).expect("create the log file");
        Service::launch(wrapper, brokers, args, env, "info", Stdio::from(log))
    }

    fn launch(
        wrapper: &[&str],
        brokers: &str,
        args: &[String],
        env: &[(&str, &str)],
        level: &str,
        stderr: Stdio,
    ) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ready_file = dir.path().join("ready.json");
        let mut child = super::command_through(wrapper, env!("CARGO_BIN_EXE_emostream"))
            .args(args)
            .env("EMOSTREAM_BROKERS", brokers)
            .env("EMOSTREAM_READY_FILE", &ready_file)
            .envs(env.iter().copied())
            .env(
                "RUST_LOG",
                std::env::var("EMOSTREAM_TEST_LOG").unwrap_or(level.to_owned()),
            )
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start emostream");
        // Keep reading stdout so the service never writes into a closed pipe.
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || for _ in BufReader::new(stdout).lines() {});
        let deadline = Instant::now() + START;
        let ready = loop {
            if let Ok(text) = std::fs::read_to_string(&ready_file) {
                break serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{args:?}: unreadable ready file {text:?}: {e}"));
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{args:?} exited before it was up: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "{args:?} was not up within {START:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Service {
            child,
            ready,
            _dir: dir,
        }
    }

    /// `http://host:port` of the service: the ingest, the dataflow's admin server or the
    /// first broadcaster.
    pub fn url(&self) -> String {
        let addr = (self.ready.ingest.as_ref())
            .or(self.ready.dataflow.as_ref())
            .or(self.ready.broadcast.first())
            .expect("a service writes its address");
        format!("http://{addr}")
    }

    /// The WebSocket URL of its first broadcaster.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.ready.broadcast[0])
    }

    /// Sends SIGTERM and waits at most `limit` for the exit; the status, or `None` if the
    /// service was still running then (it is killed).
    pub fn terminate(mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Waits at most `limit` for the service to end by itself; its status.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        self.exit_within(limit)
            .unwrap_or_else(|| panic!("still running after {limit:?}"))
    }

    /// Its exit status once it exits, or `None` if it still runs after `limit`.
    pub fn exit_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGKILL and waits.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
