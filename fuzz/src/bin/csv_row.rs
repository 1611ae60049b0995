//! AFL++ target: `model::checks::csv_row` on every input.

fn main() {
    afl::fuzz!(|data: &[u8]| model::checks::csv_row(data));
}
