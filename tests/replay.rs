//! The replay dataflow compared record for record with the plain reference aggregator.

use crate::common;

use std::time::Duration;

use common::*;
use dataflow::{Engine, ReplayConfig};
use model::{ReportConfig, WindowSize, WindowSpec};

#[test]
fn disordered_logs_match_the_reference_for_1_2_and_4_workers() {
    let dir = tempfile::tempdir().unwrap();
    // Two files, so partitions come from several files and several blocks of each.
    let logs = vec![
        generated_log(dir.path(), "a.csv", disordered(12_000, 700, 900, 1)),
        generated_log(dir.path(), "b.csv", disordered(8_000, 300, 400, 2)),
    ];
    let lateness = Duration::from_secs(2); // more than the disorder: nothing is late
    let want = reference(
        &logs,
        WindowSize::default(),
        lateness,
        &ReportConfig::default(),
    );
    assert!(want.late.is_empty() && want.reports.len() > 4);
    let want_csv = reference_csv(&want);
    for engine in [Engine::Timely, Engine::Differential] {
        for workers in [1, 2, 4] {
            let tag = format!("{engine:?}-{workers}");
            let config = replay_config(dir.path(), &logs, workers, engine, &tag);
            let (summary, got) = replay(ReplayConfig {
                windows: WindowSpec::default().with_lateness(lateness).unwrap(),
                ..config
            });
            assert_same_windows(&got, &want_csv, &tag);
            assert_eq!(summary.sources.rows, 20_000, "{tag}");
            assert_eq!(summary.events_in_windows, 20_000, "{tag}");
            assert_eq!(summary.windows, want.reports.len() as u64, "{tag}");
        }
    }
}

#[test]
fn scale_and_min_count_shape_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let logs = vec![generated_log(
        dir.path(),
        "a.csv",
        disordered(30_000, 2_000, 300, 3),
    )];
    let report = ReportConfig {
        scale: 100.try_into().unwrap(),
        min_count: 20,
    };
    let lateness = Duration::from_secs(1);
    let window = WindowSize::from_millis(5_000).unwrap();
    let want = reference(&logs, window, lateness, &report);
    // Some emojis are left out by min_count, some scale to more than one.
    let rows: Vec<_> = want.reports.iter().flat_map(|r| &r.emojis).collect();
    assert!(rows.iter().any(|e| e.scaled_count > 1));
    assert!(rows.iter().all(|e| e.count >= 20));
    for workers in [1, 2] {
        let config = replay_config(
            dir.path(),
            &logs,
            workers,
            Engine::Timely,
            &workers.to_string(),
        );
        let (_, got) = replay(ReplayConfig {
            windows: WindowSpec::new(vec![window], lateness).unwrap(),
            report,
            ..config
        });
        assert_same_windows(&got, &reference_csv(&want), &format!("{workers} workers"));
    }
}

#[test]
// Long: one scenario with 1, 2 and 4 workers.
fn late_events_with_a_small_lateness() {
    let dir = tempfile::tempdir().unwrap();
    let workload = loadgen::generator::Workload {
        late_fraction: 0.01,
        late_delay_ms: 3_000,
        ..disordered(10_000, 500, 600, 4)
    };
    let logs = vec![generated_log(dir.path(), "a.csv", workload)];
    let lateness = Duration::from_millis(200);
    let want = reference(
        &logs,
        WindowSize::default(),
        lateness,
        &ReportConfig::default(),
    );
    assert!(
        want.late.len() > 100,
        "the log has late events: {}",
        want.late.len()
    );

    // One worker reads the file as one partition, exactly as the reference does.
    let config = replay_config(dir.path(), &logs, 1, Engine::Timely, "w1");
    let late_path = config.late_out.clone().unwrap();
    // No allowed lateness: what misses its window is late.
    let windows = WindowSpec::new(vec![WindowSize::default()], lateness).unwrap();
    let (summary, got) = replay(ReplayConfig {
        windows: windows.clone(),
        ..config
    });
    assert_same_windows(&got, &reference_csv(&want), "1 worker");
    assert_eq!(summary.sources.late, want.late.len() as u64);
    let late = std::fs::read_to_string(late_path).unwrap();
    assert_eq!(late.lines().next(), Some("user_id,emoji_type,timestamp"));
    let late_rows: Vec<&str> = late.lines().skip(1).collect();
    let want_late: Vec<String> = want
        .late
        .iter()
        .map(|(u, e, t)| format!("{u},{e},{}", model::format_rfc3339_millis(*t)))
        .collect();
    assert_eq!(late_rows, want_late);

    // With more workers partitions differ, so which events are late may differ: every row
    // is still accounted for, and the windows are exactly those of the on-time events.
    for workers in [2, 4] {
        let tag = format!("w{workers}");
        let config = replay_config(dir.path(), &logs, workers, Engine::Timely, &tag);
        let late_path = config.late_out.clone().unwrap();
        let (summary, got) = replay(ReplayConfig {
            windows: windows.clone(),
            ..config
        });
        assert_eq!(summary.sources.rows, 10_000);
        assert_eq!(
            summary.events_in_windows + summary.sources.late,
            10_000,
            "{tag}"
        );
        assert!(summary.sources.late > 0, "{tag}");
        let on_time = on_time_log(dir.path(), &logs[0], &late_path, &tag);
        let want = reference(
            &[on_time],
            WindowSize::default(),
            Duration::from_secs(3600),
            &ReportConfig::default(),
        );
        assert_same_windows(&got, &reference_csv(&want), &tag);
    }
}

#[test]
// Long: one scenario over both engines, 1, 2 and 4 workers, and two allowed latenesses.
fn allowed_late_events_amend_their_windows_alike_for_every_worker_count_and_engine() {
    let dir = tempfile::tempdir().unwrap();
    // 2% of the events 3 s behind: past the 200 ms lateness, within 10 s.
    let workload = loadgen::generator::Workload {
        late_fraction: 0.02,
        late_delay_ms: 3_000,
        ..disordered(12_000, 500, 600, 21)
    };
    let logs = vec![generated_log(dir.path(), "a.csv", workload)];
    let lateness = Duration::from_millis(200);
    let allowing = |allowed| {
        WindowSpec::new(vec![WindowSize::default()], lateness)
            .unwrap()
            .with_allowed_lateness(allowed)
            .unwrap()
    };
    let report = ReportConfig::default();
    let size = WindowSize::default();
    let missed = reference(&logs, size, lateness, &report);
    assert!(missed.late.len() > 100, "{} late", missed.late.len());
    let want = reference_allowing(&logs, size, lateness, Duration::from_secs(10), &report);
    assert!(want.late.is_empty());
    let want_csv = reference_csv(&want);
    for engine in [Engine::Timely, Engine::Differential] {
        for workers in [1, 2, 4] {
            let tag = format!("amended-{engine:?}-{workers}");
            let config = replay_config(dir.path(), &logs, workers, engine, &tag);
            let revisions_path = dir.path().join(format!("revisions-{tag}.csv"));
            let (summary, got) = replay(ReplayConfig {
                windows: allowing(Duration::from_secs(10)),
                revisions_out: Some(revisions_path.clone()),
                ..config
            });
            // Byte for byte the reference, so the same for every worker count and engine.
            assert_eq!(got, want_csv, "{tag}");
            let sources = summary.sources;
            assert_eq!(
                (sources.rows, sources.late, sources.rejected),
                (12_000, 0, 0)
            );
            assert_eq!(sources.on_time + sources.amends, 12_000, "{tag}");
            assert_eq!(summary.events_in_windows, 12_000, "{tag}");
            // One worker reads the file as one partition: an event past its watermark finds
            // its window final. With more, it may find it still open elsewhere and count in
            // its final; either way the last revision is the same.
            if workers == 1 {
                assert!(summary.events_in_corrections > 0, "{tag}: {summary:?}");
                assert!(summary.revisions > 0, "{tag}: {summary:?}");
            }
            assert_last_revisions_are_the_windows(&revisions_path, &got, summary.revisions, &tag);
        }
    }
    // With 1 s allowed, the events 3 s behind are late records, exactly as the reference has
    // them (one worker reads the file as one partition).
    let want = reference_allowing(&logs, size, lateness, Duration::from_secs(1), &report);
    assert!(!want.late.is_empty() && want.late.len() < missed.late.len());
    let config = replay_config(dir.path(), &logs, 1, Engine::Timely, "allowed-1s");
    let (summary, got) = replay(ReplayConfig {
        windows: allowing(Duration::from_secs(1)),
        ..config
    });
    assert_eq!(got, reference_csv(&want));
    assert_eq!(summary.sources.late, want.late.len() as u64);
    assert_eq!(
        summary.events_in_windows + summary.sources.late,
        12_000,
        "rows read = events in windows + late + rejected"
    );
}

/// Asserts that the revisions file holds each window's final first, revisions increasing,
/// and that the newest revision of every window is the window's row in `out`.
fn assert_last_revisions_are_the_windows(
    revisions: &std::path::Path,
    out: &str,
    revised_windows: u64,
    tag: &str,
) {
    let text = std::fs::read_to_string(revisions).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("window_start,window_end,state,revision,emoji,count,unique_users,scaled_count,share")
    );
    // Per window: its newest revision and that revision's rows.
    let mut newest: std::collections::BTreeMap<String, (u64, Vec<String>)> = Default::default();
    let mut revised = std::collections::BTreeSet::new();
    for line in lines {
        let fields: Vec<&str> = line.splitn(5, ',').collect();
        let (start, end, state, revision) = (fields[0], fields[1], fields[2], fields[3]);
        let revision: u64 = revision.parse().unwrap();
        assert!(state == "final" || state == "revised", "{tag}: {line}");
        if state == "revised" {
            revised.insert((start.to_owned(), revision));
        }
        let row = format!("{start},{end},{}", fields[4]);
        let entry = newest
            .entry(start.to_owned())
            .or_insert((revision, Vec::new()));
        assert!(revision >= entry.0, "{tag}: revisions of {start} increase");
        if revision > entry.0 {
            *entry = (revision, Vec::new());
        }
        entry.1.push(row);
    }
    assert_eq!(
        revised.len() as u64,
        revised_windows,
        "{tag}: every revision is written"
    );
    let mut want: Vec<String> = newest.into_values().flat_map(|(_, rows)| rows).collect();
    let mut got: Vec<String> = out.lines().skip(1).map(str::to_owned).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "{tag}: the newest revisions are the windows");
}

/// Writes the events of `log` minus those in `late` (a multiset) as a new log.
fn on_time_log(
    dir: &std::path::Path,
    log: &std::path::Path,
    late: &std::path::Path,
    tag: &str,
) -> std::path::PathBuf {
    let mut late_rows: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for row in std::fs::read_to_string(late).unwrap().lines().skip(1) {
        *late_rows.entry(row.to_owned()).or_default() += 1;
    }
    let mut kept = String::from("user_id,emoji_type,timestamp\n");
    for row in std::fs::read_to_string(log).unwrap().lines().skip(1) {
        match late_rows.get_mut(row) {
            Some(n) if *n > 0 => *n -= 1,
            _ => {
                kept.push_str(row);
                kept.push('\n');
            }
        }
    }
    assert!(
        late_rows.values().all(|&n| n == 0),
        "every late event is in the log"
    );
    let path = dir.join(format!("on-time-{tag}.csv"));
    std::fs::write(&path, kept).unwrap();
    path
}

#[test]
fn several_window_sizes_give_what_each_size_gives_alone() {
    let dir = tempfile::tempdir().unwrap();
    let workload = loadgen::generator::Workload {
        late_fraction: 0.01,
        late_delay_ms: 3_000,
        ..disordered(30_000, 800, 600, 9)
    };
    let logs = vec![generated_log(dir.path(), "a.csv", workload)];
    let lateness = Duration::from_millis(200);
    let size = |ms| WindowSize::from_millis(ms).unwrap();
    for workers in [1, 2] {
        let base = ReplayConfig {
            windows: WindowSpec::default().with_lateness(lateness).unwrap(),
            ..replay_config(
                dir.path(),
                &logs,
                workers,
                Engine::Timely,
                &format!("several-w{workers}"),
            )
        };
        let out = base.out.clone().unwrap();
        let (summary, _) = replay(ReplayConfig {
            windows: WindowSpec::new(vec![size(2_000), size(10_000), size(60_000)], lateness)
                .unwrap(),
            ..base.clone()
        });
        assert_eq!(summary.more.len(), 2);
        for window in [2_000, 10_000, 60_000] {
            let alone = replay(ReplayConfig {
                windows: WindowSpec::new(vec![size(window)], lateness).unwrap(),
                out: Some(dir.path().join(format!("alone-{window}-w{workers}.csv"))),
                ..base.clone()
            })
            .1;
            let together = std::fs::read_to_string(size(window).labelled_path(&out)).unwrap();
            assert_eq!(together, alone, "{window} ms windows, {workers} workers");
        }
        // Late for 2 s windows is not always late for 60 s ones: the sizes differ in what
        // they count, each exactly as alone.
        assert!(
            summary.more[1].events_in_windows > summary.events_in_windows,
            "{summary:?}"
        );
    }
}

/// With several window sizes, each size's late events go to a file of their own, exactly the
/// reference's late events of that size, and the summary counts them per size.
#[test]
fn each_window_size_writes_its_own_late_events() {
    let dir = tempfile::tempdir().unwrap();
    // 30 s of events, 3% of them 12 s behind: late for the 2 s windows, and for some of the
    // 10 s ones.
    let workload = loadgen::generator::Workload {
        late_fraction: 0.03,
        late_delay_ms: 12_000,
        ..disordered(24_000, 300, 300, 33)
    };
    let logs = vec![generated_log(dir.path(), "a.csv", workload)];
    let lateness = Duration::from_millis(200);
    let (two, ten) = (
        WindowSize::default(),
        WindowSize::from_millis(10_000).unwrap(),
    );
    let report = ReportConfig::default();
    let config = replay_config(dir.path(), &logs, 1, Engine::Timely, "sizes");
    let late_out = config.late_out.clone().unwrap();
    let windows = WindowSpec::new(vec![two, ten], lateness).unwrap();
    let config = ReplayConfig { windows, ..config };
    assert_eq!(
        config.late_out_for(ten),
        Some(dir.path().join("late-sizes-10s.csv"))
    );
    let (summary, _) = replay(config.clone());
    let late_of = |size: WindowSize| {
        let want = reference(&logs, size, lateness, &report).late;
        let text = std::fs::read_to_string(config.late_out_for(size).unwrap()).unwrap();
        let rows: Vec<String> = text.lines().skip(1).map(str::to_owned).collect();
        let want_rows: Vec<String> = want
            .iter()
            .map(|(u, e, t)| format!("{u},{e},{}", model::format_rfc3339_millis(*t)))
            .collect();
        assert_eq!(rows, want_rows, "{}", size.label());
        want.len() as u64
    };
    let (late_two, late_ten) = (late_of(two), late_of(ten));
    assert!(late_ten > 0 && late_ten < late_two, "{late_two} {late_ten}");
    assert_eq!(summary.sources.late, late_two);
    assert_eq!(summary.more[0].late, late_ten);
    assert_eq!(
        summary.more[0].events_in_windows + late_ten,
        24_000,
        "every row in a 10 s window or late for it"
    );
    assert!(!late_out.exists(), "no file without a size in its name");
}
