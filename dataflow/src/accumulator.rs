//! Exact per-window counting over one shard of the users: the hot path of the dataflow.

use compact_str::CompactString;
use foldhash::HashMap;

use crate::record::{EmojiPartial, PartialWindow};

/// Counts of one open window: events, distinct users, and per emoji the count and the
/// users who sent it. Users are numbered in the order they first appear in the window, so
/// each emoji keeps a list of 4-byte numbers that is sorted and deduplicated once, when the
/// window closes.
#[derive(Debug, Default)]
pub struct WindowAccumulator {
    events: u64,
    users: HashMap<CompactString, u32>,
    emojis: HashMap<CompactString, EmojiUsers>,
}

#[derive(Debug, Default)]
struct EmojiUsers {
    count: u64,
    users: Vec<u32>,
}

impl WindowAccumulator {
    /// An accumulator sized for `(users, emojis)`, typically the [`size_hint`](Self::size_hint)
    /// of the previous window, so that its tables rarely grow.
    pub fn with_capacity((users, emojis): (usize, usize)) -> Self {
        WindowAccumulator {
            events: 0,
            users: HashMap::with_capacity_and_hasher(users, Default::default()),
            emojis: HashMap::with_capacity_and_hasher(emojis, Default::default()),
        }
    }

    /// Distinct users and emojis so far.
    pub fn size_hint(&self) -> (usize, usize) {
        (self.users.len(), self.emojis.len())
    }

    /// Adds one event.
    #[inline]
    pub fn add(&mut self, user: CompactString, emoji: CompactString) {
        self.events += 1;
        let next = self.users.len() as u32;
        let user = *self.users.entry(user).or_insert(next);
        let acc = match self.emojis.get_mut(emoji.as_str()) {
            Some(acc) => acc,
            None => self.emojis.entry(emoji).or_default(),
        };
        acc.count += 1;
        acc.users.push(user);
    }

    /// Events added so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The exact totals of the events added so far, as `worker`'s snapshot of an open window.
    /// Deduplicates each emoji's users in place, so the next snapshot sorts less.
    pub fn snapshot(&mut self, window_start: i64, worker: u32) -> PartialWindow {
        let emojis = self
            .emojis
            .iter_mut()
            .map(|(emoji, acc)| {
                acc.users.sort_unstable();
                acc.users.dedup();
                EmojiPartial {
                    emoji: emoji.clone(),
                    count: acc.count,
                    unique_users: acc.users.len() as u64,
                }
            })
            .collect();
        PartialWindow {
            window_start,
            events: self.events,
            unique_users: self.users.len() as u64,
            emojis,
            snapshot_of: Some(worker),
        }
    }

    /// The exact totals of the window.
    pub fn finish(mut self, window_start: i64) -> PartialWindow {
        PartialWindow {
            snapshot_of: None,
            ..self.snapshot(window_start, 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn matches_naive_sets() {
        let mut acc = WindowAccumulator::default();
        let mut naive: BTreeMap<String, (u64, BTreeSet<String>)> = BTreeMap::new();
        let mut all_users = BTreeSet::new();
        let mut x = 12345u64;
        for _ in 0..5000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let user = format!("u{}", (x >> 33) % 300);
            let emoji = ["🔥", "😂", "👏"][((x >> 20) % 3) as usize].to_string();
            acc.add(user.as_str().into(), emoji.as_str().into());
            let e = naive.entry(emoji).or_default();
            e.0 += 1;
            e.1.insert(user.clone());
            all_users.insert(user);
        }
        let mut partial = acc.finish(0);
        partial.emojis.sort_by(|a, b| a.emoji.cmp(&b.emoji));
        assert_eq!(partial.events, 5000);
        assert_eq!(partial.unique_users, all_users.len() as u64);
        let got: Vec<_> = partial
            .emojis
            .iter()
            .map(|e| (e.emoji.to_string(), e.count, e.unique_users))
            .collect();
        let want: Vec<_> = naive
            .into_iter()
            .map(|(k, (c, u))| (k, c, u.len() as u64))
            .collect();
        assert_eq!(got, want);
    }
}
