//! `emostream generate`: writes a generated event log.

use std::fs::File;
use std::io::{BufWriter, Write};

use anyhow::{Context, Result};
use loadgen::generator::{Profile, Workload, write_log};

use crate::args::{GenerateArgs, ProfileArg};

/// Runs `emostream generate`.
pub fn run(args: GenerateArgs) -> Result<()> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.late_fraction),
        "--late-fraction must be between 0 and 1, got {}",
        args.late_fraction
    );
    let workload = Workload {
        events: args.events,
        users: args.users.get(),
        rate: args.rate,
        profile: match args.profile {
            ProfileArg::Steady => Profile::Steady,
            ProfileArg::Match => Profile::Match,
        },
        start_ms: args.start,
        disorder_ms: args.disorder.as_millis() as i64,
        late_fraction: args.late_fraction,
        late_delay_ms: args.late_delay.as_millis() as i64,
        seed: args.seed,
    };
    let written = match &args.out {
        Some(path) => {
            let file =
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            let mut out = BufWriter::with_capacity(1 << 20, file);
            let n = write_log(workload, &mut out)?;
            out.flush()?;
            n
        }
        None => {
            let mut out = BufWriter::new(std::io::stdout().lock());
            let n = write_log(workload, &mut out)?;
            out.flush()?;
            n
        }
    };
    tracing::info!(events = written, "Generated the log.");
    Ok(())
}
