//! The deployment files under `deploy/` as an operator uses them: the systemd units parse and
//! each `ExecStart` names a command and flags `emostream` has; the Prometheus alert rules pass
//! `promtool check rules`; the rules and the Grafana dashboard name only metrics the services
//! export.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use service::admin::RenderMetrics;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

/// A unit file's sections and their settings, continuation lines joined; an error names
/// the line that is neither.
fn parse_unit(text: &str) -> Result<BTreeMap<String, BTreeMap<String, String>>, String> {
    let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section: Option<String> = None;
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let mut line = line.trim().to_owned();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        while let Some(head) = line.strip_suffix('\\') {
            let (_, next) = lines
                .next()
                .ok_or(format!("line {}: continued past the end", n + 1))?;
            line = format!("{} {}", head.trim_end(), next.trim());
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.to_owned());
            sections.entry(name.to_owned()).or_default();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or(format!("line {}: not a setting: {line}", n + 1))?;
        let section = section
            .as_ref()
            .ok_or(format!("line {}: a setting before any section", n + 1))?;
        sections
            .get_mut(section)
            .unwrap()
            .insert(key.trim().to_owned(), value.trim().to_owned());
    }
    Ok(sections)
}

#[test]
fn a_unit_file_that_does_not_parse_is_told_by_line() {
    assert_eq!(
        parse_unit("[Service]\nExecStart=/bin/x \\\n  --a 1\n").unwrap()["Service"]["ExecStart"],
        "/bin/x --a 1"
    );
    assert_eq!(
        parse_unit("[Unit]\nDescription x\n").unwrap_err(),
        "line 2: not a setting: Description x"
    );
    assert_eq!(
        parse_unit("User=x\n").unwrap_err(),
        "line 1: a setting before any section"
    );
}

#[test]
fn every_systemd_unit_parses_and_starts_a_command_emostream_has() {
    let mut services = 0;
    for entry in std::fs::read_dir(deploy("systemd")).unwrap() {
        let file = entry.unwrap().path();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let unit = parse_unit(&std::fs::read_to_string(&file).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(unit["Unit"].contains_key("Description"), "{name}");
        assert!(unit.contains_key("Install"), "{name}: no [Install]");
        if !name.ends_with(".service") {
            continue;
        }
        services += 1;
        let exec = unit["Service"]["ExecStart"].replace("%i", "1");
        let words: Vec<&str> = exec.split_whitespace().collect();
        assert_eq!(words[0], "/usr/local/bin/emostream", "{name}");
        let help = Command::new(env!("CARGO_BIN_EXE_emostream"))
            .args([words[1], "--help"])
            .output()
            .unwrap();
        assert!(
            help.status.success(),
            "{name}: emostream {} --help",
            words[1]
        );
        // The options the command has: the lines of its help that start with one.
        let help = String::from_utf8(help.stdout).unwrap();
        let options: Vec<&str> = help
            .lines()
            .map(str::trim_start)
            .filter(|l| l.starts_with('-'))
            .flat_map(|l| {
                l.split([',', ' '])
                    .take_while(|w| w.starts_with('-') || w.is_empty())
            })
            .filter(|w| !w.is_empty())
            .collect();
        assert!(options.contains(&"--kafka-config"), "{name}: {options:?}");
        for flag in words.iter().filter(|w| w.starts_with('-')) {
            assert!(
                options.contains(flag),
                "{name}: emostream {} has no {flag}",
                words[1]
            );
        }
    }
    assert_eq!(services, 3, "the ingest, dataflow and broadcast units");
}

#[test]
fn the_alert_rules_pass_promtool() {
    let rules = deploy("prometheus/emostream-alerts.yml");
    let run = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output();
    let root = crate::common::is_root();
    let out = match run {
        Ok(out) => out,
        // As root `make test` installs it (scripts/test-deps.sh); elsewhere it may be absent.
        Err(_) if !root => {
            eprintln!(
                "skipped: no promtool (Debian's prometheus package), and not root to install it"
            );
            return;
        }
        Err(e) => {
            panic!("promtool (Debian's prometheus package; scripts/test-deps.sh installs it): {e}")
        }
    };
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_alert_rules_and_the_dashboard_name_only_metrics_the_services_export() {
    let exported = [
        ingest::metrics::IngestMetrics::default().render(),
        dataflow::metrics::DataflowMetrics::new(2, &["2s".to_owned()]).render(),
        broadcast::metrics::BroadcastMetrics::default().render(),
    ]
    .join("\n");
    let families: Vec<&str> = exported
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/emostream.json")).unwrap())
            .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 12, "{} panels", panels.len());
    let mut named = 0;
    for (what, text) in [
        (
            "alert rules",
            std::fs::read_to_string(deploy("prometheus/emostream-alerts.yml")).unwrap(),
        ),
        ("dashboard", dashboard.to_string()),
    ] {
        let words = text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
        for metric in words.filter(|w| {
            ["ingest_", "dataflow_", "broadcast_"]
                .iter()
                .any(|p| w.starts_with(p))
        }) {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| metric.strip_suffix(s))
                .unwrap_or(metric);
            assert!(
                families.contains(&family),
                "the {what} name {metric}, which no service exports"
            );
            named += 1;
        }
    }
    assert!(named > 20, "{named} metric names checked");
}
