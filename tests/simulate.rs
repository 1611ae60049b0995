//! The traffic simulator against real HTTP servers: its schedule is open loop.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use loadgen::generator::Profile;
use loadgen::simulate::{SimulateConfig, Target, run_simulation};
use warp::Filter;
use warp::http::StatusCode;

/// A server that answers `202` only after `delay`, recording when each request came.
async fn slow_server(delay: Duration) -> (String, Arc<Mutex<Vec<Instant>>>) {
    let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let log = Arc::clone(&arrivals);
    let route = warp::post().and(warp::body::bytes()).then(move |_| {
        log.lock().unwrap().push(Instant::now());
        async move {
            tokio::time::sleep(delay).await;
            warp::reply::with_status("{\"accepted\":1}", StatusCode::ACCEPTED)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(route).incoming(listener).run());
    (addr.to_string(), arrivals)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_server_does_not_lower_the_offered_rate() {
    // Each answer takes 400 ms: a closed-loop client on a few connections would manage a
    // few dozen requests a second. 500 events/s must still go out at 500/s.
    let (addr, arrivals) = slow_server(Duration::from_millis(400)).await;
    let started = Instant::now();
    let report = run_simulation(SimulateConfig {
        target: Target::Http { addr, ack: false },
        users: 1000,
        rate: 500.0,
        duration: Duration::from_secs(2),
        profile: Profile::Steady,
        ..SimulateConfig::default()
    })
    .await;
    assert!(
        (850..=1150).contains(&report.events_offered),
        "offered {}",
        report.events_offered
    );
    assert_eq!(report.sent, report.events_offered, "{report:?}");
    assert_eq!(report.overloaded, 0);
    assert_eq!(
        report.events_accepted, report.events_offered,
        "every request answered"
    );
    // The requests reached the server at the offered pace, not at the server's.
    let arrivals = arrivals.lock().unwrap();
    let on_time = arrivals
        .iter()
        .filter(|t| t.duration_since(started) <= Duration::from_millis(2_300))
        .count() as u64;
    assert!(
        on_time * 100 >= report.events_offered * 95,
        "{on_time} of {} requests arrived within the 2 s schedule",
        report.events_offered
    );
    // The slowness shows as latency and as connections in use.
    assert!(report.p50_ms >= 400.0, "{report:?}");
    assert!(report.connections >= 100, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_in_flight_limit_requests_are_counted_not_queued() {
    let (addr, _) = slow_server(Duration::from_millis(1500)).await;
    let report = run_simulation(SimulateConfig {
        target: Target::Http { addr, ack: false },
        users: 1000,
        rate: 200.0,
        duration: Duration::from_secs(1),
        max_in_flight: 50,
        ..SimulateConfig::default()
    })
    .await;
    assert_eq!(report.sent, 50, "{report:?}");
    assert_eq!(report.overloaded, report.events_offered - 50, "{report:?}");
}

#[tokio::test]
async fn an_unreachable_target_is_counted_as_errors() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let report = run_simulation(SimulateConfig {
        target: Target::Http { addr, ack: false },
        rate: 100.0,
        duration: Duration::from_millis(500),
        ..SimulateConfig::default()
    })
    .await;
    assert!(report.sent > 0);
    assert_eq!(report.errors, report.sent, "{report:?}");
    assert_eq!(report.events_accepted, 0);
}
