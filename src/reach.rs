//! What a command that talks to Kafka does first: reach the brokers, or say within seconds
//! which broker it could not reach and why (no answer, a name that does not resolve, a
//! refused login or certificate), in one line.

use std::time::Duration;

use anyhow::Result;

/// How long a command waits for the brokers to answer before it says it cannot reach them.
pub const REACH_TIMEOUT: Duration = Duration::from_secs(5);

/// Fails within [`REACH_TIMEOUT`], naming the brokers and what to check, when no broker
/// answers at `brokers`.
pub fn reach_brokers(brokers: &str) -> Result<()> {
    match service::kafka::reach(brokers, REACH_TIMEOUT) {
        Ok(()) => Ok(()),
        // A name that does not resolve, a refused login or certificate says what to check.
        Err(error) if !error.is_retryable() => Err(error.into()),
        Err(error) => Err(anyhow::Error::new(error).context(format!(
            "cannot reach a Kafka broker at {brokers} within {} s: is one running there? \
             `make up` starts one on this machine; --brokers (EMOSTREAM_BROKERS) names another",
            REACH_TIMEOUT.as_secs()
        ))),
    }
}
