//! The `emostream replay` command as a user runs it: processes, bad input, edge cases.

use crate::common;

use std::net::TcpListener;
use std::process::Command;

use common::*;

#[test]
// Long: one scenario: two processes started, awaited, and their output compared byte for byte.
fn two_processes_write_what_one_worker_writes_amendments_included() {
    let dir = tempfile::tempdir().unwrap();
    // Some events 4 s behind the others: past the 2 s lateness, within the allowed 10 s.
    let workload = loadgen::generator::Workload {
        late_fraction: 0.02,
        late_delay_ms: 4_000,
        ..disordered(15_000, 900, 700, 11)
    };
    let log = generated_log(dir.path(), "a.csv", workload);
    let single = dir.path().join("single.csv");
    let out = emostream(&[
        "replay",
        path(&log),
        "--lateness",
        "2s",
        "--out",
        path(&single),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Two free ports for the two processes.
    let ports: Vec<u16> = (0..2)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect::<Vec<_>>()
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    let hostfile = dir.path().join("hosts.txt");
    std::fs::write(
        &hostfile,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", ports[0], ports[1]),
    )
    .unwrap();
    let cluster_out = dir.path().join("cluster.csv");
    let spawn = |process: &str| {
        Command::new(env!("CARGO_BIN_EXE_emostream"))
            .args([
                "replay",
                path(&log),
                "--lateness",
                "2s",
                "--block-bytes",
                "8192",
            ])
            .args([
                "-n",
                "2",
                "-p",
                process,
                "--hostfile",
                path(&hostfile),
                "--out",
                path(&cluster_out),
            ])
            .env("RUST_LOG", "warn")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (p0, p1) = (spawn("0"), spawn("1"));
    let (o0, o1) = (
        p0.wait_with_output().unwrap(),
        p1.wait_with_output().unwrap(),
    );
    assert!(o0.status.success(), "process 0: {}", stderr(&o0));
    assert!(o1.status.success(), "process 1: {}", stderr(&o1));
    assert!(
        stderr(&o0).contains("rows read 15000 = events in windows 15000 + late 0 + rejected 0")
    );
    assert_eq!(
        std::fs::read(&cluster_out).unwrap(),
        std::fs::read(&single).unwrap(),
        "2 processes x 1 worker and 1 worker write the same bytes"
    );
    // And both are, record for record, what the single-threaded reference aggregator makes
    // of every event, the amendments included.
    let reference_with = |allowed| {
        reference_allowing(
            std::slice::from_ref(&log),
            model::WindowSize::default(),
            std::time::Duration::from_secs(2),
            std::time::Duration::from_secs(allowed),
            &model::ReportConfig::default(),
        )
    };
    assert!(
        !reference_with(0).late.is_empty(),
        "some events are past the lateness"
    );
    let want = reference_with(10);
    assert!(want.late.is_empty(), "none past the allowed lateness");
    assert_same_windows(
        &std::fs::read_to_string(&cluster_out).unwrap(),
        &reference_csv(&want),
        "2 processes x 1 worker",
    );
}

#[test]
// Long: one table of bad rows, each with its expected reason.
fn bad_rows_are_rejected_with_line_and_reason_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("bad.csv");
    let mut content = b"timestamp,user_id,emoji_type\n".to_vec();
    content.extend(b"2026-11-22T10:00:00Z,u1,\xF0\x9F\x94\xA5\n"); // line 2: ok
    content.extend(b"2026-11-22T10:00:61Z,u2,a\n"); // 3: bad timestamp
    content.extend(b"2026-11-22T10:00:01Z,u3\n"); // 4: missing field
    content.extend(b"2026-11-22T10:00:01Z,,a\n"); // 5: empty user
    content.extend(b"2026-11-22T10:00:01Z,u4,\xF0\x9F\n"); // 6: invalid UTF-8
    content.extend(b"2026-11-22T10:00:01Z,\"u5,a\n"); // 7: open quote
    content.extend(b"2026-11-22T10:00:01Z,u\x01,a\n"); // 8: control character
    content.extend(b"\n"); // 9: blank, not a row
    content.extend(b"1763805601,u6,b,extra\n"); // 10: too many fields
    content.extend(b"1795341601500,u7,b\r\n"); // 11: ok, epoch millis with CRLF
    content.extend(std::iter::repeat_n(b'x', 70_000)); // 12: too long
    content.extend(b"\n");
    std::fs::write(&log, &content).unwrap();
    let rejects = dir.path().join("rejects.csv");
    let windows = dir.path().join("windows.csv");
    let out = emostream(&[
        "replay",
        path(&log),
        "--emojis",
        "🔥,a,b,c,x",
        "--out",
        path(&windows),
        "--rejects-out",
        path(&rejects),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("rows read 10 = events in windows 2 + late 0 + rejected 8"),
        "{}",
        stderr(&out)
    );
    let summary = stderr(&out);
    let line = summary
        .lines()
        .find(|l| l.starts_with("windows "))
        .unwrap_or_else(|| panic!("a summary line of windows and rate: {summary}"));
    assert!(
        line.starts_with("windows 1, ") && line.contains(" events/s, peak memory "),
        "{line}"
    );
    let text = std::fs::read_to_string(&rejects).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(reader.headers().unwrap(), vec!["line", "reason", "raw"]);
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let rows: Vec<(String, String)> = records
        .iter()
        .map(|r| (r[0].to_owned(), r[1].to_owned()))
        .collect();
    // The row as read (invalid UTF-8 replaced, long lines cut to 1 KiB).
    assert_eq!(&records[0][2], "2026-11-22T10:00:61Z,u2,a");
    assert_eq!(&records[3][2], "2026-11-22T10:00:01Z,u4,\u{FFFD}");
    assert_eq!(records[7][2].len(), 1024);
    let want = [
        (
            "3",
            "invalid timestamp \"2026-11-22T10:00:61Z\": second out of range",
        ),
        ("4", "wrong number of fields: expected 3, found 2"),
        ("5", "empty user_id"),
        ("6", "invalid UTF-8 at byte 25"),
        ("7", "malformed quoted field 2"),
        ("8", "control character in user_id \"u\\u{1}\""),
        ("10", "wrong number of fields: expected 3, found 4"),
        ("12", "line longer than 65536 bytes"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(l, r)| (l.to_string(), r.to_string()))
        .collect();
    assert_eq!(rows, want);
    let windows = std::fs::read_to_string(&windows).unwrap();
    assert!(windows.contains("2026-11-22T10:00:00.000Z,2026-11-22T10:00:02.000Z,b,1,1,1,0.500000"));
    assert!(
        windows.contains("2026-11-22T10:00:00.000Z,2026-11-22T10:00:02.000Z,🔥,1,1,1,0.500000")
    );
}

#[test]
fn strict_stops_at_the_first_rejected_row_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("bad.csv");
    std::fs::write(
        &log,
        "user_id,emoji_type,timestamp\nu1,a,0\nu2,b,12:61\nu3,c,1\n",
    )
    .unwrap();
    let out = emostream(&[
        "replay",
        path(&log),
        "--emojis",
        "a,b,c",
        "--strict",
        "--out",
        path(&dir.path().join("w.csv")),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.contains(":3: invalid timestamp \"12:61\""),
        "{message}"
    );
    // Stopped there: the window of the rows around it is not written.
    let windows = std::fs::read_to_string(dir.path().join("w.csv")).unwrap_or_default();
    assert!(windows.lines().count() <= 1, "{windows}");
}

/// Replay decides like the live dataflow: a row whose emoji `--emojis` does not name is
/// rejected with the reason, not counted.
#[test]
fn replay_rejects_the_emojis_the_deployment_does_not_accept() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("spam.csv");
    std::fs::write(&log, "user_id,emoji_type,timestamp\nu1,🔥,0\nu2,XX,1\n").unwrap();
    let rejects = dir.path().join("rejects.csv");
    let out = emostream(&["replay", path(&log), "--rejects-out", path(&rejects)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let windows = String::from_utf8_lossy(&out.stdout);
    assert!(windows.contains(",🔥,1,1,1,1.000000"), "{windows}");
    assert!(!windows.contains("XX"), "{windows}");
    let text = std::fs::read_to_string(&rejects).unwrap();
    assert!(text.contains("3,emoji not allowed,\"u2,XX,1\""), "{text}");
    let out = emostream(&["replay", path(&log), "--emojis", "🔥,XX"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(",XX,1,1,1,0.500000"));
}

#[test]
fn empty_and_header_only_logs_give_no_windows() {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in [
        ("empty.csv", ""),
        ("header.csv", "user_id,emoji_type,timestamp\n"),
    ] {
        let log = dir.path().join(name);
        std::fs::write(&log, content).unwrap();
        for workers in ["1", "2"] {
            let out = emostream(&["replay", path(&log), "-w", workers]);
            assert!(out.status.success(), "{name}: {}", stderr(&out));
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                "window_start,window_end,emoji,count,unique_users,scaled_count,share\n"
            );
            assert!(
                stderr(&out).contains("rows read 0 = events in windows 0 + late 0 + rejected 0")
            );
        }
    }
}

#[test]
fn one_event_before_1970_makes_one_window() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("one.csv");
    std::fs::write(
        &log,
        "emoji_type,user_id,timestamp\n🔥,u1,1969-12-31T23:59:59.999Z\n",
    )
    .unwrap();
    for workers in ["1", "4"] {
        let out = emostream(&["replay", path(&log), "-w", workers]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "window_start,window_end,emoji,count,unique_users,scaled_count,share\n\
             1969-12-31T23:59:58.000Z,1970-01-01T00:00:00.000Z,🔥,1,1,1,1.000000\n"
        );
    }
}

#[test]
fn a_directory_is_read_as_its_csv_files() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::write(logs.join("1.csv"), "user_id,emoji_type,timestamp\nu1,a,0\n").unwrap();
    std::fs::write(logs.join("2.csv"), "user_id,emoji_type,timestamp\nu2,a,1\n").unwrap();
    std::fs::write(logs.join("notes.txt"), "not a log").unwrap();
    let out = emostream(&["replay", path(&logs), "--emojis", "a"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(",a,2,2,1,1.000000"));
}

#[test]
fn unusable_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("no-ts.csv");
    std::fs::write(&log, "user_id,emoji_type\nu1,a\n").unwrap();
    let out = emostream(&["replay", path(&log)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no-ts.csv: header has no column \"timestamp\""),
        "{}",
        stderr(&out)
    );

    let out = emostream(&["replay", path(&dir.path().join("missing.csv"))]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));
    // Each cause of the chain once.
    assert_eq!(
        stderr(&out).matches("No such file or directory").count(),
        1,
        "{}",
        stderr(&out)
    );

    let out = emostream(&["replay", path(&log), "--window", "2 parsecs"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid duration \"2 parsecs\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn several_window_sizes_write_one_file_each() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("a.csv");
    std::fs::write(
        &log,
        "user_id,emoji_type,timestamp\nu1,a,1970-01-01T00:00:01Z\nu2,a,1970-01-01T00:00:03Z\nu1,b,1970-01-01T00:01:01Z\n",
    )
    .unwrap();
    let out = dir.path().join("windows.csv");
    let run = emostream(&[
        "replay",
        path(&log),
        "--emojis",
        "🔥,a,b,c,x",
        "--window",
        "2s,60s",
        "--out",
        path(&out),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("60s windows: 2, events in them 3"),
        "{}",
        stderr(&run)
    );
    let two = std::fs::read_to_string(dir.path().join("windows-2s.csv")).unwrap();
    let sixty = std::fs::read_to_string(dir.path().join("windows-60s.csv")).unwrap();
    assert_eq!(two.lines().count(), 1 + 3, "{two}");
    assert!(
        sixty.contains("1970-01-01T00:00:00.000Z,1970-01-01T00:01:00.000Z,a,2,2,"),
        "{sixty}"
    );
    assert!(!out.exists());

    let run = emostream(&["replay", path(&log), "--window", "2s,60s"]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        stderr(&run).contains("several window sizes need --out"),
        "{}",
        stderr(&run)
    );
    let run = emostream(&[
        "replay",
        path(&log),
        "--window",
        "2s,2000ms",
        "--out",
        path(&out),
    ]);
    assert!(
        stderr(&run).contains("--window: window size 2s named twice"),
        "{}",
        stderr(&run)
    );
}

#[test]
fn with_several_files_a_rejected_row_names_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::write(
        logs.join("a.csv"),
        "user_id,emoji_type,timestamp\nu1,x,1763805600\n",
    )
    .unwrap();
    std::fs::write(
        logs.join("b.csv"),
        "user_id,emoji_type,timestamp\nu2,x,never\n",
    )
    .unwrap();
    let rejects = dir.path().join("rejects.csv");
    let out = emostream(&[
        "replay",
        path(&logs),
        "--emojis",
        "x",
        "--rejects-out",
        path(&rejects),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&rejects).unwrap();
    let b = logs.join("b.csv");
    assert_eq!(
        text,
        format!(
            "line,reason,raw\n2,\"invalid timestamp \"\"never\"\": {} (in {})\",\"u2,x,never\"\n",
            "not a date-time or an epoch number",
            b.display()
        )
    );
}

/// Every subcommand.
const SUBCOMMANDS: [&str; 9] = [
    "replay",
    "generate",
    "record",
    "ingest",
    "dataflow",
    "up",
    "simulate",
    "broadcast",
    "wsload",
];

#[test]
fn h_is_help_everywhere_and_counts_of_zero_are_refused_by_name() {
    for command in SUBCOMMANDS {
        let out = emostream(&[command, "-h"]);
        assert_eq!(out.status.code(), Some(0), "{command} -h: {}", stderr(&out));
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("Usage: emostream"), "{command} -h: {help}");
    }
    // `up` runs one process: it offers no layout of several.
    let up = String::from_utf8_lossy(&emostream(&["up", "--help"]).stdout).into_owned();
    assert!(
        !up.contains("--hostfile") && !up.contains("--processes"),
        "{up}"
    );
    for args in [["-w", "0"], ["--scale", "0"]] {
        let out = emostream(&["replay", args[0], args[1], "x.csv"]);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            stderr(&out).contains("expected a whole number, at least 1"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn the_summary_points_to_what_was_left_out_and_where_each_size_went() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("a.csv");
    // An event at 10 s, one at 0 s (late with no lateness), and a row without an emoji.
    std::fs::write(
        &log,
        "timestamp,user_id,emoji_type\n10,u1,a\n0,u2,b\n5,u3\n",
    )
    .unwrap();
    let out = dir.path().join("w.csv");
    let run = emostream(&[
        "replay",
        path(&log),
        "--emojis",
        "🔥,a,b,c,x",
        "--window",
        "2s,60s",
        "--lateness",
        "0s",
        "--allowed-lateness",
        "0s",
        "--out",
        path(&out),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let text = stderr(&run);
    assert!(text.contains("late 1 + rejected 1"), "{text}");
    assert!(text.contains("--late-out FILE"), "{text}");
    assert!(text.contains("--rejects-out FILE"), "{text}");
    for size in ["2s", "60s"] {
        let file = dir.path().join(format!("w-{size}.csv"));
        assert!(file.exists(), "{size}");
        assert!(
            text.contains(&format!("{size} windows: {}", file.display())),
            "{text}"
        );
    }
}

#[test]
fn simulate_against_nothing_listening_fails_and_says_why() {
    let port = closed_port();
    let target = format!("http://127.0.0.1:{port}");
    let run = emostream(&[
        "simulate",
        "--target",
        &target,
        "--duration",
        "1s",
        "--rate",
        "20/s",
    ]);
    assert!(!run.status.success(), "{}", stderr(&run));
    let text = stderr(&run);
    assert!(text.contains("no event was accepted"), "{text}");
    assert!(
        text.contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{text}"
    );
}

/// Every `--flag` the README names is a flag of some subcommand (or of a tool the README
/// shows beside ours), so the two cannot drift apart.
#[test]
fn every_flag_the_readme_names_exists() {
    let mut known = std::collections::BTreeSet::new();
    for subcommand in SUBCOMMANDS {
        let help = emostream(&[subcommand, "--help"]);
        assert!(help.status.success(), "{subcommand} --help");
        known.extend(flags_in(&String::from_utf8_lossy(&help.stdout)));
    }
    // Flags of other programs the README shows (cargo, node, curl, tansu).
    let others = [
        "--release",
        "--features",
        "--bin",
        "--test",
        "--lib",
        "--workspace",
        "--data",
        "--header",
        // Locust's.
        "--headless",
        "--host",
        // tansu's.
        "--cert",
        "--key",
    ];
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let unknown: Vec<String> = flags_in(&readme)
        .into_iter()
        .filter(|f| !known.contains(f) && !others.contains(&f.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "the README names flags no subcommand has: {unknown:?}"
    );
}

/// The `--long-flags` in `text`.
fn flags_in(text: &str) -> std::collections::BTreeSet<String> {
    let mut flags = std::collections::BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("--") {
        let start = i + at;
        let mut end = start + 2;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end] == b'-'
                || bytes[end].is_ascii_digit())
        {
            end += 1;
        }
        let before_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'-');
        let flag = &text[start..end];
        if before_ok
            && flag.len() > 3
            && bytes[start + 2].is_ascii_lowercase()
            && !flag.ends_with('-')
        {
            flags.insert(flag.to_owned());
        }
        i = end.max(start + 2);
    }
    flags
}

#[test]
fn a_wrong_broker_address_is_named_within_seconds() {
    let port = closed_port();
    let brokers = format!("127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let run = emostream(&["up", "--brokers", &brokers, "--listen", "127.0.0.1:0"]);
    let took = started.elapsed();
    assert!(!run.status.success(), "{}", stderr(&run));
    let text = stderr(&run);
    assert!(
        text.contains(&format!(
            "cannot reach a Kafka broker at {brokers} within 5 s"
        )),
        "{text}"
    );
    assert!(text.contains("make up"), "{text}");
    assert_eq!(
        run.status.code(),
        Some(3),
        "a broker away: running again may succeed"
    );
    assert!(
        took < std::time::Duration::from_secs(10),
        "{took:?}: {text}"
    );
}

/// `record`, `replay --to-kafka` and `simulate --brokers` fail on a wrong broker within 10 s,
/// in one line naming it: a name that does not resolve is no use trying again (exit 1), a
/// broker away may be back (exit 3).
#[test]
fn the_tools_name_a_wrong_broker_in_one_line_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("match.csv");
    let away = format!("127.0.0.1:{}", closed_port());
    for (brokers, code, says) in [
        (
            "no-such-host.invalid:9092",
            1,
            "cannot resolve the broker address no-such-host.invalid:9092",
        ),
        (away.as_str(), 3, "cannot reach a Kafka broker at"),
    ] {
        let runs: [Vec<&str>; 5] = [
            vec!["record", "--brokers", brokers, "--out", path(&out)],
            vec!["windows", "--brokers", brokers],
            vec![
                "replay",
                "data/sample.csv",
                "--to-kafka",
                "--brokers",
                brokers,
            ],
            vec!["simulate", "--brokers", brokers, "--duration", "1s"],
            vec![
                "wsload",
                "--register",
                "http://127.0.0.1:9",
                "--feed-topic",
                "windows",
                "--brokers",
                brokers,
            ],
        ];
        for args in runs {
            let started = std::time::Instant::now();
            let run = emostream(&args);
            let took = started.elapsed();
            let text = stderr(&run);
            assert_eq!(run.status.code(), Some(code), "{args:?}: {text}");
            assert!(
                text.contains(says) && text.contains(brokers),
                "{args:?}: {text}"
            );
            let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error:")).collect();
            assert_eq!(errors.len(), 1, "{args:?}: one error line: {text}");
            // The same line says whether running it again can help.
            assert_eq!(
                errors[0].contains("running it again may succeed"),
                code == 3,
                "{args:?}: {text}"
            );
            assert!(
                took < std::time::Duration::from_secs(10),
                "{args:?}: {took:?}"
            );
        }
    }
}

#[test]
fn a_negative_duration_is_refused_by_name() {
    let run = emostream(&["replay", "data/sample.csv", "--lateness", "-1s"]);
    let text = stderr(&run);
    assert_eq!(run.status.code(), Some(2), "{text}");
    assert!(text.contains("'-1s' for '--lateness"), "{text}");
    assert!(text.contains("cannot be negative"), "{text}");
    assert!(
        !text.contains("-- -1"),
        "no hint to pass it after `--`: {text}"
    );
}

#[test]
fn up_without_a_broker_says_how_to_get_one() {
    let run = Command::new(env!("CARGO_BIN_EXE_emostream"))
        .args(["up", "--listen", "127.0.0.1:0"])
        .env_remove("EMOSTREAM_BROKERS")
        .output()
        .unwrap();
    let text = stderr(&run);
    assert_eq!(run.status.code(), Some(2), "{text}");
    assert!(text.contains("--brokers"), "{text}");
    assert!(text.contains("`make up` starts one"), "{text}");
    assert!(text.contains("EMOSTREAM_BROKERS"), "{text}");
    // Another missing argument of a command that has its broker says nothing of brokers.
    let run = Command::new(env!("CARGO_BIN_EXE_emostream"))
        .args(["record", "--topic", "t"])
        .env("EMOSTREAM_BROKERS", "127.0.0.1:9")
        .output()
        .unwrap();
    let text = stderr(&run);
    assert!(text.contains("--out"), "{text}");
    assert!(!text.contains("No Kafka broker named"), "{text}");
}

#[test]
fn the_bundled_sample_is_what_the_readme_command_makes() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let command = readme
        .split('`')
        .find(|c| c.starts_with("emostream generate") && c.contains("data/sample.csv"))
        .expect("the README names the command that made data/sample.csv");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sample.csv");
    let args: Vec<&str> = command
        .split_whitespace()
        .skip(1)
        .map(|a| {
            if a == "data/sample.csv" {
                path(&out)
            } else {
                a
            }
        })
        .collect();
    run_ok(&args);
    let made = std::fs::read(&out).unwrap();
    let bundled = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/data/sample.csv")).unwrap();
    assert!(
        made == bundled,
        "`{command}` no longer makes data/sample.csv"
    );
}

/// A port nothing listens on: bound, then closed.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every command that talks to Kafka takes the Kafka client settings, and refuses a bad one
/// by name, before it does anything, without printing a secret.
#[test]
fn every_kafka_command_takes_client_settings_and_refuses_bad_ones_by_name() {
    for subcommand in SUBCOMMANDS.iter().filter(|s| **s != "generate") {
        let help = String::from_utf8_lossy(&emostream(&[subcommand, "--help"]).stdout).into_owned();
        for flag in ["--kafka-config", "--kafka-option"] {
            assert!(help.contains(flag), "{subcommand} --help lacks {flag}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let refused = |extra: &[&str]| {
        let mut args = vec![
            "ingest",
            "--brokers",
            "127.0.0.1:9",
            "--listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let out = emostream(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(!err.contains("hunter2"), "a secret printed: {err}");
        err
    };
    let secret = ["--kafka-option", "sasl.password=hunter2"];
    let err = refused(&[&secret[..], &["--kafka-option", "enable.auto.commit=true"]].concat());
    assert!(
        err.contains("--kafka-option: enable.auto.commit is EmoStream's own setting"),
        "{err}"
    );
    let err = refused(
        &[
            &secret[..],
            &["--kafka-option", "security.protocol=SASL_SSL"],
            &["--kafka-option", "sasl.mechanisms=NO-SUCH"],
        ]
        .concat(),
    );
    assert!(err.contains("NO-SUCH"), "{err}");
    let err = refused(&["--kafka-option", "sasl.password"]);
    assert!(err.contains("not KEY=VALUE"), "{err}");
    // A properties file: its line named.
    let file = dir.path().join("client.properties");
    std::fs::write(
        &file,
        "security.protocol=SASL_SSL\nsasl.password=hunter2\nno.such.setting=1\n",
    )
    .unwrap();
    let err = refused(&["--kafka-config", path(&file)]);
    assert!(
        err.contains("client.properties line 3") && err.contains("no.such.setting"),
        "{err}"
    );
    let err = refused(&[
        "--kafka-config",
        path(&dir.path().join("missing.properties")),
    ]);
    assert!(err.contains("missing.properties"), "{err}");
}
