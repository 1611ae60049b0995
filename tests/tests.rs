//! The integration tests, one binary of modules so that a change relinks once. The suites
//! that need a Kafka-protocol broker (named by `EMOSTREAM_BROKERS`) are built with the
//! `broker-tests` feature, which `make test` turns on.

mod common;

mod cli;
mod deploy;
mod replay;
mod simulate;

#[cfg(feature = "broker-tests")]
mod abuse;
#[cfg(feature = "broker-tests")]
mod broadcast;
#[cfg(feature = "broker-tests")]
mod hosts;
#[cfg(feature = "broker-tests")]
mod kafka_security;
#[cfg(feature = "broker-tests")]
mod live_ingest_api;
#[cfg(feature = "broker-tests")]
mod live_restarts;
#[cfg(feature = "broker-tests")]
mod live_viewers;
#[cfg(feature = "broker-tests")]
mod live_windows;
#[cfg(feature = "broker-tests")]
mod locust;
#[cfg(feature = "broker-tests")]
mod outage;
#[cfg(feature = "broker-tests")]
mod recording;
