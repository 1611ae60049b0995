//! AFL++ target: `model::checks::timestamp` on every input.

fn main() {
    afl::fuzz!(|data: &[u8]| model::checks::timestamp(data));
}
