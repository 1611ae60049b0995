//! AFL++ target: `model::checks::event_json` on every input.

fn main() {
    afl::fuzz!(|data: &[u8]| model::checks::event_json(data));
}
