//! AFL++ target: `model::checks::client_message` on every input.

fn main() {
    afl::fuzz!(|data: &[u8]| model::checks::client_message(data));
}
