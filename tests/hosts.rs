//! The system across hosts. Network namespaces joined by a bridge make seven hosts on this
//! machine: the broker (tansu requiring a SASL SCRAM login, behind nginx terminating TLS, so
//! every Kafka client speaks `SASL_SSL`), the ingest, the dataflow as two timely processes
//! (`-n 2 --hostfile` with the hosts' own addresses), two broadcasters of one cluster, the
//! viewers, and an edge proxy (nginx terminating TLS for `https://` and `wss://`). Viewers
//! register, connect and tap through the edge only. Then the faults, in order: one dataflow
//! host's link cut mid-stream (both processes stop with an error naming the other; both
//! restarted resume from the checkpoints); the broker's host cut off for 10 s (every service
//! not ready within 5 s and ready again after; the ingest answers 503 to acknowledged taps
//! and heals); a dataflow process killed (the other stops, naming it; both restarted). At the
//! end, every event in the events topic is there once and every one answered 201 or 202 is
//! there, no tap is late, the windows account for every event and each equals the
//! reference, and the viewers saw the final of every window.
//!
//! It needs root (namespaces, links) and nginx; not root, it says so and returns.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::kafka::{
    Pipeline, count_by_user, event_of, late_offsets, now_ms, read_from, use_settings_for,
    windows_counting,
};
use common::service::Service;
use common::tls::TestCa;
use common::{expected_csv_of, path, readiness, wait_for, windows_csv};
use futures_util::StreamExt;
use model::WindowSize;
use model::report::{WindowMessage, WindowState};

const PASSWORD: &str = "hosts-Pa55-of-the-test";
const SECRET: &str = "hosts-token-secret";

/// The hosts, in the order of their addresses (10.77.0.1 on).
const HOSTS: [&str; 7] = ["broker", "ingest", "df1", "df2", "bcast", "viewers", "edge"];
/// The bridge's own address: the test's host, which reads the topics.
const BRIDGE: &str = "10.77.0.254";

/// The address of `host`.
fn ip(host: &str) -> String {
    let i = HOSTS.iter().position(|h| *h == host).expect("a host");
    format!("10.77.0.{}", i + 1)
}

/// The network namespaces and their links; removed (with their processes) when dropped.
struct Network;

impl Network {
    fn namespace(host: &str) -> String {
        format!("es-{host}")
    }

    fn link(host: &str) -> String {
        format!("esv-{host}")
    }

    /// Builds the network, after removing what an earlier run may have left.
    fn build() -> Self {
        Network::remove();
        run("ip", &["link", "add", "esbr0", "type", "bridge"]);
        run(
            "ip",
            &["addr", "add", &format!("{BRIDGE}/24"), "dev", "esbr0"],
        );
        run("ip", &["link", "set", "esbr0", "up"]);
        for host in HOSTS {
            let (ns, link) = (Network::namespace(host), Network::link(host));
            run("ip", &["netns", "add", &ns]);
            run(
                "ip",
                &[
                    "link", "add", &link, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ],
            );
            run("ip", &["link", "set", &link, "master", "esbr0", "up"]);
            let inside = |args: &[&str]| {
                let mut all = vec!["-n", ns.as_str()];
                all.extend(args);
                run("ip", &all);
            };
            inside(&["addr", "add", &format!("{}/24", ip(host)), "dev", "eth0"]);
            inside(&["link", "set", "eth0", "up"]);
            inside(&["link", "set", "lo", "up"]);
        }
        Network
    }

    /// Takes `host` off the network (its link down: nothing answers, nothing is refused).
    fn cut(&self, host: &str) {
        run("ip", &["link", "set", &Network::link(host), "down"]);
    }

    /// Puts `host` back on the network.
    fn mend(&self, host: &str) {
        run("ip", &["link", "set", &Network::link(host), "up"]);
    }

    /// The command prefix that runs a program on `host`.
    fn on(host: &str) -> Vec<String> {
        ["ip", "netns", "exec", &Network::namespace(host)]
            .map(str::to_owned)
            .to_vec()
    }

    fn remove() {
        for host in HOSTS {
            let ns = Network::namespace(host);
            if let Ok(out) = Command::new("ip").args(["netns", "pids", &ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
            let _ = Command::new("ip")
                .args(["link", "del", &Network::link(host)])
                .output();
        }
        let _ = Command::new("ip").args(["link", "del", "esbr0"]).output();
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        Network::remove();
    }
}

/// Runs `program args`, asserting it succeeded.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs `scripts/broker.sh ARGS` on the broker's host (tansu on sqlite storage, with `env`).
fn broker(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut env = env.to_vec();
    env.extend([
        ("EMOSTREAM_BROKER_KIND", "tansu"),
        ("EMOSTREAM_BROKER_STORAGE", "sqlite://tansu.db"),
    ]);
    let wrapper = Network::on("broker");
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    common::script_through(&wrapper, "broker.sh", args, &env)
}

/// nginx on `host` with the configuration `config` (its `DIR` the directory it runs in),
/// killed when dropped.
struct Nginx(std::process::Child);

impl Nginx {
    fn start(host: &str, dir: &Path, config: &str) -> Self {
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let file = dir.join("nginx.conf");
        let config = format!(
            "daemon off;\nworker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log info;\n{config}",
            dir = path(dir),
            config = config.replace("DIR", path(dir))
        );
        std::fs::write(&file, config).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &Network::namespace(host), "nginx", "-c"])
            .arg(&file)
            .spawn()
            .expect("start nginx (Debian's nginx-core)");
        Nginx(child)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The http part of an nginx configuration with its temporary files under `DIR`.
fn http_block(servers: &str) -> String {
    format!(
        "http {{\n  access_log DIR/access.log;\n  client_body_temp_path DIR/tmp;\n  proxy_temp_path DIR/tmp;\n  fastcgi_temp_path DIR/tmp;\n  uwsgi_temp_path DIR/tmp;\n  scgi_temp_path DIR/tmp;\n  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}\n{servers}\n}}\n"
    )
}

/// Waits until `host:port` accepts connections, from the test's host.
fn wait_listening(what: &str, addr: &str) {
    wait_for(Duration::from_secs(20), what, || {
        std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_millis(200))
            .is_ok()
    });
}

/// The Kafka client settings of every client: SASL SCRAM over TLS, trusting the test's CA.
fn kafka_settings(ca: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("security.protocol", "SASL_SSL".to_owned()),
        ("sasl.mechanism", "SCRAM-SHA-512".to_owned()),
        ("sasl.username", "app".to_owned()),
        ("sasl.password", PASSWORD.to_owned()),
        ("ssl.ca.location", path(ca).to_owned()),
    ]
}

/// The deployment: every service on its host, started by the test.
struct Deployment {
    dir: PathBuf,
    brokers: String,
    pipeline: Pipeline,
    env: Vec<(String, String)>,
}

impl Deployment {
    fn env(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    fn start(&self, host: &str, name: &str, args: &[String]) -> Service {
        let wrapper = Network::on(host);
        let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
        Service::start_through(
            &wrapper,
            &self.brokers,
            args,
            &self.env(),
            &self.dir.join(format!("{name}.log")),
        )
    }

    fn ingest(&self) -> Service {
        let mut args: Vec<String> = [
            "ingest",
            "--listen",
            &format!("{}:5000", ip("ingest")),
            "--public-url",
            &format!("https://{}:8443/ingest", ip("edge")),
            "--trusted-proxies",
            &ip("edge"),
            "--user-rate-limit",
            "0",
            "--linger",
            "5ms",
            "--ack-timeout",
            "3s",
            "--events-topic",
        ]
        .map(str::to_owned)
        .to_vec();
        args.push(self.pipeline.events.clone());
        self.start("ingest", "ingest", &args)
    }

    /// The two dataflow processes, started together (each waits for the other).
    fn dataflow(&self, run: usize) -> (Service, Service) {
        let hostfile = self.dir.join("hosts.txt");
        std::fs::write(
            &hostfile,
            format!("{}:2101\n{}:2101\n", ip("df1"), ip("df2")),
        )
        .unwrap();
        let args = |process: usize| -> Vec<String> {
            let host = ["df1", "df2"][process];
            let mut args: Vec<String> = [
                "dataflow",
                "-w",
                "1",
                "-n",
                "2",
                "-p",
                &process.to_string(),
                "--hostfile",
                path(&hostfile),
                "--metrics-listen",
                &format!("{}:9100", ip(host)),
            ]
            .map(str::to_owned)
            .to_vec();
            args.extend(self.pipeline.dataflow_args());
            args
        };
        std::thread::scope(|s| {
            let first = s.spawn(|| self.start("df1", &format!("df1-run{run}"), &args(0)));
            let second = s.spawn(|| self.start("df2", &format!("df2-run{run}"), &args(1)));
            (first.join().unwrap(), second.join().unwrap())
        })
    }

    fn broadcaster(&self, n: u16) -> Service {
        let mut args: Vec<String> = [
            "broadcast",
            "--listen",
            &format!("{}:{}", ip("bcast"), 8764 + n),
            "--cluster",
            "1",
            "--token-secret",
            SECRET,
            "--public-url",
            &format!("https://{}:8443/b{n}", ip("edge")),
            "--trusted-proxies",
            &ip("edge"),
            "--ingest-url",
            &format!("https://{}:8443/ingest", ip("edge")),
            "--registry-topic",
            &format!("{}-registry", self.pipeline.events),
            "--cluster-prefix",
        ]
        .map(str::to_owned)
        .to_vec();
        args.push(self.pipeline.cluster_prefix.clone());
        self.start("bcast", &format!("broadcaster{n}"), &args)
    }
}

/// Asserts that the dataflow process logging into `log` stopped saying it lost `peer`, the
/// process on `host`, and what to do.
fn assert_lost(log: &Path, peer: usize, host: &str) {
    let said = std::fs::read_to_string(log).unwrap();
    assert!(
        said.contains(&format!(
            "error: lost process {peer} of this dataflow ({}:2101)",
            ip(host)
        )) && said.contains("start every process of the dataflow again"),
        "{}: the process says why it stops:\n{said}",
        log.display()
    );
}

/// Runs `work` on a thread of its own whose sockets are on `host`'s network.
fn on_host<T: Send + 'static>(
    host: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let ns = format!("/var/run/netns/{}", Network::namespace(host));
    std::thread::spawn(move || {
        let file = std::fs::File::open(&ns).unwrap_or_else(|e| panic!("open {ns}: {e}"));
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns {ns}: {e}"));
        work()
    })
}

/// An HTTPS client that trusts only the test's CA.
fn https_agent(ca: &Path) -> ureq::Agent {
    use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
    let pem = std::fs::read(ca).unwrap();
    let cert = Certificate::from_pem(&pem).unwrap();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .tls_config(
            TlsConfig::builder()
                .provider(TlsProvider::NativeTls)
                .root_certs(RootCerts::new_with_certs(&[cert]))
                .build(),
        )
        .build()
        .into()
}

/// What the tapping viewer sent: the ids of events answered 201 or 202, and the statuses.
#[derive(Debug, Default)]
struct Taps {
    accepted: Vec<String>,
    /// The ids of events answered 201 (stored by the broker), and when each answer came.
    acknowledged: Vec<String>,
    acknowledged_at: Vec<Instant>,
    statuses: BTreeMap<u16, usize>,
    /// 503 answers with a Retry-After header, and without.
    unavailable_with_retry_after: usize,
    unavailable_without: usize,
}

/// Taps through the edge from the viewers' host: batches of 20 events of distinct users
/// every 50 ms, every other one waiting for the broker's acknowledgement (`?ack=true`),
/// until `stop`.
fn tap(ca: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Taps> {
    on_host("viewers", move || {
        let agent = https_agent(&ca);
        let url = format!("https://{}:8443/ingest/emoji", ip("edge"));
        let emojis = ["🔥", "😂", "👏", "❤️", "😮"];
        let mut taps = Taps::default();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let now = now_ms();
            let batch: Vec<(String, serde_json::Value)> = (0..20)
                .map(|_| {
                    n += 1;
                    let user = format!("viewer-{n}");
                    let event = serde_json::json!({
                        "user_id": user,
                        "emoji_type": emojis[(n % 5) as usize],
                        "timestamp": model::format_rfc3339_millis(now),
                    });
                    (user, event)
                })
                .collect();
            let body = serde_json::Value::Array(batch.iter().map(|(_, e)| e.clone()).collect());
            let url = if n.is_multiple_of(40) {
                format!("{url}?ack=true")
            } else {
                url.clone()
            };
            let status = match agent.post(&url).send_json(&body) {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if status == 503 {
                        if response.headers().contains_key("retry-after") {
                            taps.unavailable_with_retry_after += 1;
                        } else {
                            taps.unavailable_without += 1;
                        }
                    }
                    status
                }
                Err(_) => 0,
            };
            *taps.statuses.entry(status).or_default() += 1;
            if status == 201 {
                taps.acknowledged
                    .extend(batch.iter().map(|(u, _)| u.clone()));
                taps.acknowledged_at.push(Instant::now());
            }
            if status == 202 || status == 201 {
                taps.accepted.extend(batch.into_iter().map(|(u, _)| u));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        taps
    })
}

/// A TLS client that trusts only the test's CA.
fn tls_connector(ca: &Path) -> native_tls::TlsConnector {
    let pem = std::fs::read(ca).unwrap();
    native_tls::TlsConnector::builder()
        .add_root_certificate(native_tls::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap()
}

/// Opens the WebSocket at the `wss://` URL `url`.
async fn open(
    url: &str,
    connector: native_tls::TlsConnector,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tokio_tungstenite::tungstenite::Error,
> {
    let connector = tokio_tungstenite::Connector::NativeTls(connector);
    tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector))
        .await
        .map(|(socket, _)| socket)
}

/// What a viewer saw: the newest message of each window, and how it connected.
#[derive(Debug, Default)]
struct Seen {
    windows: BTreeMap<i64, WindowMessage>,
    urls: Vec<String>,
}

/// A viewer on the viewers' host: registers through the edge, connects to the `wss://` URL
/// it is given (again, registering anew, when the connection ends), and keeps the newest
/// revision of each window until `stop`.
fn viewer(
    ca: PathBuf,
    id: usize,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Seen>>, std::thread::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let watching = Arc::clone(&seen);
    let thread = on_host("viewers", move || {
        let seen = watching;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let agent = https_agent(&ca);
        let connector = tls_connector(&ca);
        let register = format!("https://{}:8443/b1/register", ip("edge"));
        while !stop.load(Ordering::Relaxed) {
            let body = serde_json::json!({ "client_id": format!("viewer-{id}") });
            let Ok(mut answer) = agent.post(&register).send_json(&body) else {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            };
            if answer.status() != 200 {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            let answer: serde_json::Value = answer.body_mut().read_json().unwrap();
            let url = answer["ws_url"].as_str().unwrap().to_owned();
            seen.lock().unwrap().urls.push(url.clone());
            let (seen, stop, connector) = (Arc::clone(&seen), Arc::clone(&stop), connector.clone());
            runtime.block_on(async move {
                let Ok(mut socket) = open(&url, connector).await else {
                    return;
                };
                while !stop.load(Ordering::Relaxed) {
                    let next =
                        tokio::time::timeout(Duration::from_millis(500), socket.next()).await;
                    let message = match next {
                        Err(_) => continue,
                        Ok(Some(Ok(message))) => message,
                        Ok(_) => return,
                    };
                    let Ok(text) = message.to_text() else {
                        continue;
                    };
                    let Ok(frame) = serde_json::from_str::<serde_json::Value>(text) else {
                        continue;
                    };
                    if frame["type"] != "window" {
                        continue;
                    }
                    let window: WindowMessage = serde_json::from_value(frame).unwrap();
                    let mut seen = seen.lock().unwrap();
                    let start = window.report.window_start;
                    if seen
                        .windows
                        .get(&start)
                        .is_none_or(|held| held.revision < window.revision)
                    {
                        seen.windows.insert(start, window);
                    }
                }
            });
        }
    });
    (seen, thread)
}

#[test]
// Long: one deployment from start to end: the network, the services, the faults, the accounting.
fn taps_through_a_tls_proxy_are_counted_exactly_across_hosts_and_faults() {
    if !common::is_root() {
        eprintln!("skipped: building network namespaces and links needs root");
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let network = Network::build();

    // The CA, and the certificates of the broker's TLS proxy and the edge.
    let ca = TestCa::new(&dir.path().join("tls"), "hosts");
    let (broker_cert, broker_key) = ca.issue("broker", &ip("broker"));
    let (edge_cert, edge_key) = ca.issue("edge", &ip("edge"));

    // The broker: tansu on its host's loopback with the user `app`, behind nginx
    // terminating TLS at the address every client is told (SASL_SSL end to end).
    let broker_dir = dir.path().join("broker");
    std::fs::create_dir_all(&broker_dir).unwrap();
    let local = broker(&["start", path(&broker_dir), "127.0.0.1:9092"], &[]);
    broker(&["user", path(&broker_dir), "app", PASSWORD], &[]);
    broker(&["stop", path(&broker_dir)], &[]);
    let advertised = format!("{}:9093", ip("broker"));
    let again = broker(
        &["restart", path(&broker_dir)],
        &[
            ("EMOSTREAM_BROKER_AUTH", "1"),
            ("EMOSTREAM_BROKER_ADVERTISED", &advertised),
        ],
    );
    assert_eq!(again, local);
    let _broker_tls = Nginx::start(
        "broker",
        &dir.path().join("broker-tls"),
        &format!(
            "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\nevents {{}}\nstream {{\n  server {{\n    listen {}:9093 ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    proxy_pass {local};\n  }}\n}}\n",
            ip("broker"),
            path(&broker_cert),
            path(&broker_key)
        ),
    );
    let brokers = advertised;
    wait_listening("the broker's TLS proxy", &brokers);
    let settings = kafka_settings(&ca.cert());
    let properties = dir.path().join("client.properties");
    std::fs::write(
        &properties,
        settings
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect::<String>(),
    )
    .unwrap();
    use_settings_for(
        &brokers,
        &settings
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect::<Vec<_>>(),
    );

    // The edge: https and wss for the two broadcasters and the ingest.
    let location = |path: &str, upstream: String| {
        format!(
            "    location {path} {{\n      proxy_pass http://{upstream}/;\n      proxy_http_version 1.1;\n      proxy_set_header Upgrade $http_upgrade;\n      proxy_set_header Connection $connection_upgrade;\n      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n      proxy_read_timeout 1h;\n    }}\n"
        )
    };
    let _edge = Nginx::start(
        "edge",
        &dir.path().join("edge"),
        &format!(
            "events {{}}\n{}",
            http_block(&format!(
                "  server {{\n    listen {}:8443 ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};\n{}{}{}  }}",
                ip("edge"),
                path(&edge_cert),
                path(&edge_key),
                location("/b1/", format!("{}:8765", ip("bcast"))),
                location("/b2/", format!("{}:8766", ip("bcast"))),
                location("/ingest/", format!("{}:5000", ip("ingest"))),
            ))
        ),
    );
    wait_listening("the edge", &format!("{}:8443", ip("edge")));

    let deployment = Deployment {
        dir: dir.path().to_owned(),
        brokers: brokers.clone(),
        pipeline: Pipeline {
            clusters: 1,
            ..Pipeline::new("hosts")
        },
        env: vec![(
            "EMOSTREAM_KAFKA_CONFIG".to_owned(),
            path(&properties).to_owned(),
        )],
    };
    let pipeline = &deployment.pipeline;
    let ingest = deployment.ingest();
    let (df1, df2) = deployment.dataflow(1);
    let b1 = deployment.broadcaster(1);
    let b2 = deployment.broadcaster(2);
    let set_up = started.elapsed();

    // The page and its settings come through the edge, naming the edge's addresses.
    let page = on_host("viewers", {
        let ca = ca.cert();
        move || {
            let agent = https_agent(&ca);
            let get = |p: &str| {
                let mut r = agent
                    .get(&format!("https://{}:8443{p}", ip("edge")))
                    .call()
                    .unwrap();
                r.body_mut().read_to_string().unwrap()
            };
            // A token from one broadcaster opens a WebSocket at either, through its path.
            let mut answer = agent
                .post(&format!("https://{}:8443/b2/register", ip("edge")))
                .send_json(serde_json::json!({ "client_id": "prober" }))
                .unwrap();
            let answer: serde_json::Value = answer.body_mut().read_json().unwrap();
            let url = answer["ws_url"].as_str().unwrap().to_owned();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let hellos: Vec<String> = ["/b1/ws", "/b2/ws"]
                .iter()
                .map(|path| {
                    let url = url.replace("/b1/ws", path).replace("/b2/ws", path);
                    runtime.block_on(async {
                        let mut socket = open(&url, tls_connector(&ca))
                            .await
                            .unwrap_or_else(|e| panic!("{url}: {e}"));
                        let hello = socket.next().await.unwrap().unwrap();
                        hello.to_text().unwrap().to_owned()
                    })
                })
                .collect();
            (get("/b1/"), get("/b2/config.js"), url, hellos)
        }
    })
    .join()
    .unwrap();
    assert!(
        page.2.starts_with(&format!("wss://{}:8443/b", ip("edge"))),
        "registration hands out the edge's wss:// address: {}",
        page.2
    );
    for hello in &page.3 {
        assert!(hello.contains(r#""type":"hello""#), "{hello}");
    }
    assert!(page.0.contains("<title>EmoStream"), "{}", page.0);
    assert!(
        page.1
            .contains(&format!("https://{}:8443/ingest", ip("edge"))),
        "{}",
        page.1
    );

    let (stop, stop_taps) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let viewers: Vec<_> = (0..4)
        .map(|i| viewer(ca.cert(), i, Arc::clone(&stop)))
        .collect();
    let taps = tap(ca.cert(), Arc::clone(&stop_taps));
    std::thread::sleep(Duration::from_secs(6));

    // Fault 1: the second dataflow host's link cut mid-stream: nothing closes the processes'
    // connection, yet each stops within the peer timeout, naming the other.
    let cut_at = Instant::now();
    network.cut("df2");
    let (mut df1, mut df2) = (df1, df2);
    for (process, service) in [(&"df1", &mut df1), (&"df2", &mut df2)] {
        let left = Duration::from_secs(40).saturating_sub(cut_at.elapsed());
        let Some(status) = service.exit_within(left) else {
            let log = std::fs::read_to_string(dir.path().join(format!("{process}-run1.log")))
                .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "{process} still running 40 s after the link was cut; its log ends:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        };
        assert!(!status.success(), "{process} fails: {status}");
    }
    let link_cut_stopped = cut_at.elapsed();
    assert_lost(&dir.path().join("df1-run1.log"), 1, "df2");
    assert_lost(&dir.path().join("df2-run1.log"), 0, "df1");
    network.mend("df2");
    let (df1, df2) = deployment.dataflow(2);
    std::thread::sleep(Duration::from_secs(4));
    // The restarted processes resume from the checkpoints: they know what was published.
    for log in ["df1-run2.log", "df2-run2.log"] {
        let said = std::fs::read_to_string(dir.path().join(log)).unwrap();
        let reading: Vec<&str> = said
            .lines()
            .filter(|l| l.contains("Reading the events topic"))
            .collect();
        assert!(
            !reading.is_empty()
                && reading
                    .iter()
                    .all(|l| !l.contains("published_before=\"none\"")),
            "{log} resumes from the checkpoints: {reading:?}"
        );
    }

    // Fault 2: the broker's host off the network for 10 s.
    let services = [
        ("ingest", ingest.url()),
        ("dataflow 1", df1.url()),
        ("dataflow 2", df2.url()),
        ("broadcaster 1", b1.url()),
        ("broadcaster 2", b2.url()),
    ];
    for (name, url) in &services {
        wait_for(Duration::from_secs(10), &format!("{name} ready"), || {
            readiness(url).0 == 200
        });
    }
    let cut_at = Instant::now();
    network.cut("broker");
    let mut unready = BTreeMap::new();
    for (name, url) in &services {
        wait_for(
            Duration::from_secs(5).saturating_sub(cut_at.elapsed()),
            &format!("{name} not ready within 5 s of the broker's host cut off"),
            || readiness(url).0 == 503,
        );
        unready.insert(*name, cut_at.elapsed());
        let reasons = readiness(url).1["reasons"].to_string();
        assert!(reasons.contains(&brokers), "{name}: {reasons}");
    }
    std::thread::sleep(Duration::from_secs(10).saturating_sub(cut_at.elapsed()));
    network.mend("broker");
    let mended_at = Instant::now();
    let mut ready_again = BTreeMap::new();
    for (name, url) in &services {
        wait_for(
            Duration::from_secs(30),
            &format!("{name} ready after the broker's host is back"),
            || readiness(url).0 == 200,
        );
        ready_again.insert(*name, mended_at.elapsed());
    }
    std::thread::sleep(Duration::from_secs(2));

    // Fault 3: the first dataflow process killed; the second stops at once, naming it.
    let killed_at = Instant::now();
    df1.kill();
    let mut df2 = df2;
    let status = df2.wait_exit(Duration::from_secs(30));
    let kill_stopped = killed_at.elapsed();
    assert!(!status.success(), "the surviving process fails: {status}");
    assert_lost(&dir.path().join("df2-run2.log"), 0, "df1");
    let (df1, df2) = deployment.dataflow(3);
    std::thread::sleep(Duration::from_secs(4));
    stop_taps.store(true, Ordering::Relaxed);
    let taps = taps.join().unwrap();
    eprintln!(
        "set up in {set_up:?}; both dataflow processes stopped {link_cut_stopped:?} after the link was cut, the second {kill_stopped:?} after the first was killed; not ready after the cut: {unready:?}; ready after the mend: {ready_again:?}; taps: {:?}, 503 with Retry-After {}, without {}",
        taps.statuses, taps.unavailable_with_retry_after, taps.unavailable_without
    );
    assert!(
        taps.statuses.get(&202).copied().unwrap_or(0) > 100
            && taps.statuses.get(&201).copied().unwrap_or(0) > 100,
        "{:?}",
        taps.statuses
    );
    assert!(
        taps.statuses.contains_key(&503),
        "the ingest answers 503 to acknowledged taps while the broker is away: {:?}",
        taps.statuses
    );
    assert_eq!(taps.unavailable_without, 0, "every 503 carries Retry-After");
    assert!(
        taps.acknowledged_at.iter().any(|at| *at > mended_at),
        "the ingest acknowledges taps again after the broker's host is back"
    );

    // Every event answered 202 is in the topic once; windows and late records account for
    // every event there; the windows are the reference's.
    wait_for(
        Duration::from_secs(60),
        "the ingest's queue to drain",
        || common::metric(&ingest.url(), "ingest_queue_depth") == 0.0,
    );
    let topic = read_from(&brokers, &pipeline.events, Duration::from_secs(30), |r| {
        r.len() >= taps.accepted.len()
    });
    let in_topic = count_by_user(&topic);
    for user in &taps.accepted {
        assert!(
            in_topic.contains_key(user),
            "{user}, accepted, is in the topic"
        );
    }
    // Every event has a user of its own: none is in the topic twice, accepted or not.
    let twice: Vec<_> = in_topic.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "events in the topic twice: {twice:?}");
    let late_at = late_offsets(&brokers, &pipeline.late);
    let on_time: Vec<(String, String, i64)> = topic
        .iter()
        .filter(|r| !late_at.contains(&(r.partition, r.offset)))
        .map(event_of)
        .collect();
    let windows = windows_counting(&brokers, &pipeline.windows, on_time.len() as u64);
    // Every tap is stamped as it is sent: none is late, whatever the faults held up.
    let late_taps: Vec<_> = topic
        .iter()
        .filter(|r| late_at.contains(&(r.partition, r.offset)))
        .map(event_of)
        .take(5)
        .collect();
    assert!(
        late_at.is_empty(),
        "{} taps reported late, like {late_taps:?}",
        late_at.len()
    );
    eprintln!(
        "{} events in the topic, {} reported late, {} acknowledged",
        topic.len(),
        late_at.len(),
        taps.acknowledged.len()
    );
    let counted: u64 = windows.values().map(|w| w.report.events).sum();
    assert_eq!(
        counted as usize + late_at.len(),
        topic.len(),
        "windows + late = events in the topic"
    );
    assert_eq!(
        windows_csv(&windows),
        expected_csv_of(
            dir.path(),
            &on_time,
            Duration::from_secs(3600),
            WindowSize::default()
        ),
        "every window equals the reference"
    );

    // The viewers, through the edge only, get every window's final as published.
    let has_every_final = |seen: &Seen| {
        windows.iter().all(|(start, published)| {
            seen.windows
                .get(start)
                .is_some_and(|w| w.state != WindowState::Open && w.report == published.report)
        })
    };
    let waited = Instant::now();
    wait_for(
        Duration::from_secs(30),
        "the viewers to get every final",
        || {
            viewers
                .iter()
                .all(|(seen, _)| has_every_final(&seen.lock().unwrap()))
        },
    );
    eprintln!(
        "{} windows, every final at every viewer {:?} after the last was read from the topic",
        windows.len(),
        waited.elapsed()
    );
    stop.store(true, Ordering::Relaxed);
    for (i, (seen, thread)) in viewers.into_iter().enumerate() {
        thread.join().unwrap();
        let seen = seen.lock().unwrap();
        assert!(
            seen.urls
                .iter()
                .all(|u| u.starts_with(&format!("wss://{}:8443/b", ip("edge")))),
            "viewer {i} was handed the edge's wss:// addresses: {:?}",
            seen.urls
        );
    }
    // The password is in no log line of any service and on no /metrics page.
    let mut pages = vec![common::metrics_text(&ingest.url())];
    pages.extend([&df1, &df2, &b1, &b2].map(|d| common::metrics_text(&d.url())));
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let file = entry.unwrap().path();
        if file.extension().is_some_and(|e| e == "log") {
            pages.push(std::fs::read_to_string(&file).unwrap());
        }
    }
    assert_eq!(
        pages.len(),
        14,
        "the logs of every service and run were read"
    );
    for text in &pages {
        assert!(!text.contains(PASSWORD), "the password printed:\n{text}");
    }
    eprintln!("the whole scenario took {:?}", started.elapsed());
    drop((df1, df2, ingest));
}
