//! The plain single-threaded loop the replay benchmark compares the dataflow with: read the
//! log sequentially, decode each row, keep one watermark, count each window with the same
//! exact accumulator, write the same CSV. No framework, no threads, no exchange.
//!
//! `cargo bench --bench replay_baseline -- LOG [--lateness-ms 1000] [--out FILE] [--summary-json FILE]`

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use compact_str::CompactString;
use dataflow::accumulator::WindowAccumulator;
use dataflow::sink::WindowCsvWriter;
use model::log::LogColumns;
use model::report::EmojiTotals;
use model::{ReportConfig, WindowReport, WindowSize};

#[path = "../src/peak_memory.rs"]
mod peak_memory;

struct Args {
    log: String,
    lateness_ms: i64,
    out: Option<String>,
    summary_json: Option<String>,
}

fn parse_args() -> Result<Args> {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let mut parsed = Args {
        log: String::new(),
        lateness_ms: model::WindowSpec::default().lateness_ms(),
        out: None,
        summary_json: None,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--lateness-ms" => {
                parsed.lateness_ms = args
                    .next()
                    .context("--lateness-ms needs a value")?
                    .parse()?
            }
            "--out" => parsed.out = args.next(),
            "--summary-json" => parsed.summary_json = args.next(),
            _ if parsed.log.is_empty() => parsed.log = arg,
            _ => bail!("unexpected argument {arg:?}"),
        }
    }
    if parsed.log.is_empty() {
        bail!("usage: replay_baseline LOG [--lateness-ms N] [--out FILE] [--summary-json FILE]");
    }
    Ok(parsed)
}

// Long: the whole baseline in one place, so the loop it measures is plain to read.
fn main() -> Result<()> {
    let args = parse_args()?;
    let start = Instant::now();
    let size = WindowSize::default();
    let config = ReportConfig::default();
    let mut file = File::open(&args.log).with_context(|| format!("cannot open {}", args.log))?;
    let out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(BufWriter::new(File::create(path)?)),
        None => Box::new(std::io::sink()),
    };
    let mut writer = WindowCsvWriter::new(out)?;
    let mut open: Vec<(i64, WindowAccumulator)> = Vec::new();
    let (mut rows, mut late, mut rejected, mut windows) = (0u64, 0u64, 0u64, 0u64);
    let mut max_seen = i64::MIN;
    let mut batch = Vec::new();
    let mut hint = (0, 0);
    let mut columns: Option<LogColumns> = None;
    let mut buf = vec![0u8; 1 << 20];
    let mut filled = 0;
    loop {
        let n = file.read(&mut buf[filled..])?;
        let at_eof = n == 0;
        filled += n;
        let mut consumed = 0;
        while let Some(len) =
            memchr::memchr(b'\n', &buf[consumed..filled]).or(if at_eof && consumed < filled {
                Some(filled - consumed)
            } else {
                None
            })
        {
            let line = &buf[consumed..consumed + len];
            consumed = (consumed + len + 1).min(filled);
            let Some(cols) = &columns else {
                columns = Some(LogColumns::from_header(line)?);
                continue;
            };
            if line.is_empty() || line == b"\r" {
                continue;
            }
            rows += 1;
            let decoded = cols.decode(line, |u, e, t| {
                (CompactString::new(u), CompactString::new(e), t)
            });
            let Ok((user, emoji, ts)) = decoded else {
                rejected += 1;
                continue;
            };
            max_seen = max_seen.max(ts);
            let watermark = max_seen - args.lateness_ms;
            let window = size.start_of(ts);
            if size.end_of(window) <= watermark {
                late += 1;
                continue;
            }
            batch.push((window, user, emoji));
        }
        // Count the buffer's on-time events, then close the windows the watermark passed:
        // two tight loops rather than one, as the dataflow's source and operator do.
        // Grouped by window (a stable sort), each window's tables stay in cache.
        batch.sort_by_key(|(window, _, _)| *window);
        for (window, user, emoji) in batch.drain(..) {
            // Few windows are open at once: a vector searched from the newest is cheapest.
            match open.iter_mut().rev().find(|(s, _)| *s == window) {
                Some((_, acc)) => acc.add(user, emoji),
                None => {
                    let mut acc = WindowAccumulator::with_capacity(hint);
                    acc.add(user, emoji);
                    let at = open.partition_point(|(s, _)| *s < window);
                    open.insert(at, (window, acc));
                }
            }
        }
        let watermark = max_seen.saturating_sub(args.lateness_ms);
        let closed = open.partition_point(|(s, _)| size.end_of(*s) <= watermark);
        for (start, acc) in open.drain(..closed) {
            hint = acc.size_hint();
            writer.write(&report(start, acc, size, &config))?;
            windows += 1;
        }
        buf.copy_within(consumed..filled, 0);
        filled -= consumed;
        if at_eof {
            break;
        }
        if filled == buf.len() {
            bail!("a line is longer than the read buffer");
        }
    }
    for (start, acc) in std::mem::take(&mut open) {
        writer.write(&report(start, acc, size, &config))?;
        windows += 1;
    }
    writer.flush()?;
    let seconds = start.elapsed().as_secs_f64();
    let peak = peak_memory::peak_resident_bytes().unwrap_or(0);
    eprintln!(
        "baseline: rows read {rows} = late {late} + rejected {rejected} + in windows; windows {windows}, \
         {seconds:.2} s: {:.0} events/s, peak memory {} MiB",
        rows as f64 / seconds,
        peak / (1 << 20)
    );
    if let Some(path) = &args.summary_json {
        std::fs::write(
            path,
            format!(
                "{{\"rows\":{rows},\"late\":{late},\"rejected\":{rejected},\"windows\":{windows},\"seconds\":{seconds:.6},\
                 \"events_per_second\":{:.0},\"peak_memory_bytes\":{peak},\"workers\":1,\"processes\":1,\"engine\":\"Baseline\"}}\n",
                rows as f64 / seconds
            ),
        )?;
    }
    Ok(())
}

fn report(
    start: i64,
    acc: WindowAccumulator,
    size: WindowSize,
    config: &ReportConfig,
) -> WindowReport {
    let partial = acc.finish(start);
    let totals = partial.emojis.into_iter().map(|e| EmojiTotals {
        emoji: e.emoji.into(),
        count: e.count,
        unique_users: e.unique_users,
    });
    WindowReport::build(
        start,
        size.end_of(start),
        partial.events,
        partial.unique_users,
        totals,
        config,
    )
}
