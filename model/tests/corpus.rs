//! Every input the fuzzer kept (`fuzz/corpus/<target>/`: its minimized corpus and the seeds)
//! and every input that once failed (`fuzz/crashes/<target>/`), run through the same checks
//! as the AFL++ targets: regression tests that need no fuzzer.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut inputs = 0;
    for dir in ["corpus", "crashes"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&bytes));
            assert!(
                outcome.is_ok(),
                "{} fails the {target} check",
                path.display()
            );
            inputs += 1;
        }
    }
    assert!(
        inputs > 0,
        "no corpus for {target} under {}",
        root.display()
    );
}

#[test]
fn event_json_corpus() {
    replay("event_json", model::checks::event_json);
}

#[test]
fn csv_row_corpus() {
    replay("csv_row", model::checks::csv_row);
}

#[test]
fn timestamp_corpus() {
    replay("timestamp", model::checks::timestamp);
}

#[test]
fn client_message_corpus() {
    replay("client_message", model::checks::client_message);
}
