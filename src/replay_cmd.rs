//! `emostream replay`: runs the replay with a progress bar and prints the summary.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dataflow::{ReplaySummary, RunControl, run_replay};

use crate::args::ReplayArgs;
use crate::peak_memory::peak_resident_bytes;

/// Runs `emostream replay`.
pub fn run(args: ReplayArgs) -> Result<()> {
    if args.to_kafka {
        return crate::record_cmd::to_kafka(&args);
    }
    let config = args.config()?;
    let control = Arc::new(RunControl::new(config.strict));
    let total_bytes: u64 = config
        .paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum::<u64>()
        / config.cluster.processes as u64;
    let done = Arc::new(AtomicBool::new(false));
    let progress = std::io::stderr()
        .is_terminal()
        .then(|| spawn_progress(Arc::clone(&control), Arc::clone(&done), total_bytes));
    let start = Instant::now();
    let result = run_replay(config, control);
    done.store(true, Ordering::Relaxed);
    if let Some(handle) = progress {
        let _ = handle.join();
    }
    let elapsed = start.elapsed().as_secs_f64().max(1e-6);
    let Some(summary) = result? else {
        tracing::info!(process = args.cluster.process, "Replay done.");
        return Ok(());
    };
    let peak = peak_resident_bytes();
    eprint!("{}", summary_text(&summary, elapsed, peak));
    eprint!("{}", hints(&summary, &args));
    if let Some(path) = &args.summary_json {
        std::fs::write(path, summary_json(&summary, elapsed, peak, &args))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn spawn_progress(
    control: Arc<RunControl>,
    done: Arc<AtomicBool>,
    total: u64,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        while !done.load(Ordering::Relaxed) {
            bar.set_position(control.bytes_read());
            std::thread::sleep(Duration::from_millis(100));
        }
        bar.finish_and_clear();
    })
}

fn summary_text(s: &ReplaySummary, elapsed: f64, peak: Option<u64>) -> String {
    let src = &s.sources;
    let peak = peak.map_or("unknown".to_owned(), |b| {
        format!("{:.0} MiB", b as f64 / (1 << 20) as f64)
    });
    let mut text = format!(
        "rows read {} = events in windows {} + late {} + rejected {}\n\
         of the events in windows, {} through corrections ({} revisions of final windows)\n\
         windows {}, {:.1} MB in {:.2} s: {:.0} events/s, peak memory {}\n",
        src.rows,
        s.events_in_windows,
        src.late,
        src.rejected,
        s.events_in_corrections,
        s.revisions,
        s.windows,
        s.bytes as f64 / 1e6,
        elapsed,
        src.rows as f64 / elapsed,
        peak
    );
    for more in &s.more {
        text += &format!(
            "{} windows: {}, events in them {} (late for this size {})\n",
            more.window.label(),
            more.windows,
            more.events_in_windows,
            more.late
        );
    }
    text
}

/// Where the outputs went when that is not obvious, and how to see what was left out.
fn hints(s: &ReplaySummary, args: &ReplayArgs) -> String {
    let mut text = String::new();
    let late = s.sources.late + s.more.iter().map(|m| m.late).sum::<u64>();
    if late > 0 && args.late_out.is_none() {
        text += "late events are not written: --late-out FILE writes them (a replayable log)\n";
    }
    if s.sources.rejected > 0 && args.rejects_out.is_none() {
        text += "rejected rows are not written: --rejects-out FILE writes each with its line and reason\n";
    }
    if let (Ok(config), Some(_)) = (args.config(), &args.out)
        && config.windows.is_several()
    {
        for &size in config.windows.sizes() {
            if let Some(path) = config.out_for(size) {
                text += &format!("{} windows: {}\n", size.label(), path.display());
            }
        }
    }
    if let (Ok(config), Some(_)) = (args.config(), &args.late_out)
        && config.windows.is_several()
    {
        for &size in config.windows.sizes() {
            if let Some(path) = config.late_out_for(size) {
                text += &format!("{} late events: {}\n", size.label(), path.display());
            }
        }
    }
    text
}

fn summary_json(s: &ReplaySummary, elapsed: f64, peak: Option<u64>, args: &ReplayArgs) -> String {
    let more: Vec<String> = s
        .more
        .iter()
        .map(|m| {
            format!(
                "{{\"window\":\"{}\",\"windows\":{},\"events_in_windows\":{},\"late\":{}}}",
                m.window.label(),
                m.windows,
                m.events_in_windows,
                m.late
            )
        })
        .collect();
    format!(
        "{{\"rows\":{},\"events_in_windows\":{},\"events_in_corrections\":{},\"revisions\":{},\"late\":{},\"rejected\":{},\"windows\":{},\"bytes\":{},\
         \"seconds\":{:.6},\"events_per_second\":{:.0},\"peak_memory_bytes\":{},\"workers\":{},\"processes\":{},\"engine\":\"{:?}\",\
         \"more_windows\":[{}]}}\n",
        s.sources.rows,
        s.events_in_windows,
        s.events_in_corrections,
        s.revisions,
        s.sources.late,
        s.sources.rejected,
        s.windows,
        s.bytes,
        elapsed,
        s.sources.rows as f64 / elapsed,
        peak.map_or("null".to_owned(), |b| b.to_string()),
        args.cluster.workers.workers,
        args.cluster.processes,
        args.windows.engine,
        more.join(","),
    )
}
