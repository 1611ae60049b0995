//! The hub of a broadcaster: a ring of recent windows (the latest message of each) for the
//! snapshot and resuming clients; and, when a longer window size is served too, the last of
//! those windows (the per-minute timeline). The fan-out ([`crate::fanout`]) sends what it
//! takes in to every connection.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::frame::WindowFrame;

/// The latest message of each recent window, in `seq` order, and the order of the last
/// message taken in.
#[derive(Debug, Default)]
struct Ring {
    frames: VecDeque<Arc<WindowFrame>>,
    last_order: u64,
}

/// What a connection is sent from the ring (the snapshot, a resume): the latest message of
/// each window asked for, and the order of the last message the hub had taken in then, which
/// these cover.
#[derive(Debug)]
pub struct Held {
    /// The windows, in `seq` order.
    pub frames: Vec<Arc<WindowFrame>>,
    /// Every message of these windows up to this order is one of `frames` or older.
    pub upto: u64,
}

/// Shared by the consumers and every shard.
#[derive(Debug)]
pub struct Hub {
    ring_millis: i64,
    recent: Mutex<Ring>,
    summary_count: usize,
    summaries: Mutex<BTreeMap<i64, Arc<WindowFrame>>>,
}

impl Hub {
    /// A hub keeping `ring_millis` of windows.
    pub fn new(ring_millis: i64) -> Self {
        Hub {
            ring_millis,
            recent: Mutex::new(Ring::default()),
            summary_count: 60,
            summaries: Mutex::new(BTreeMap::new()),
        }
    }

    /// Takes in a window of the longer size: keeps the last 60 by `seq`; the frame to send
    /// to every connection, or `None` for one already held or older than all of them.
    pub fn publish_summary(&self, frame: WindowFrame) -> Option<Arc<WindowFrame>> {
        let frame = Arc::new(frame);
        let mut held = self.summaries.lock().unwrap_or_else(|e| e.into_inner());
        let full = held.len() >= self.summary_count;
        if held.contains_key(&frame.seq)
            || (full && held.keys().next().is_some_and(|&first| frame.seq < first))
        {
            return None;
        }
        held.insert(frame.seq, Arc::clone(&frame));
        while held.len() > self.summary_count {
            held.pop_first();
        }
        Some(frame)
    }

    /// The windows of the longer size held, oldest first.
    pub fn summaries(&self) -> Vec<Arc<WindowFrame>> {
        self.summaries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Takes in a window message: the ring keeps the latest revision of each window, in
    /// `seq` order; a message newer than the one held is returned, numbered with the next
    /// `order`, to send to every connection. One held already (the same `seq`, no higher
    /// revision: a republished window) or older than the ring is dropped (`None`). With open
    /// updates, a window's final may follow a newer window's update, so any window of the
    /// ring may be replaced.
    pub fn publish(&self, mut frame: WindowFrame) -> Option<Arc<WindowFrame>> {
        let mut ring = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let recent = &mut ring.frames;
        let at = match recent.binary_search_by_key(&frame.seq, |held| held.seq) {
            Ok(i) if recent[i].revision >= frame.revision => return None,
            Ok(i) => Ok(i),
            Err(i) => {
                let newest_end = recent.back().map_or(i64::MIN, |last| last.window_end);
                if i == 0 && frame.window_end < newest_end.saturating_sub(self.ring_millis) {
                    return None;
                }
                Err(i)
            }
        };
        ring.last_order += 1;
        frame.order = ring.last_order;
        let frame = Arc::new(frame);
        let recent = &mut ring.frames;
        match at {
            Ok(i) => recent[i] = Arc::clone(&frame),
            Err(i) => recent.insert(i, Arc::clone(&frame)),
        }
        let newest_end = recent.back().map_or(i64::MIN, |last| last.window_end);
        while recent
            .front()
            .is_some_and(|first| first.window_end < newest_end - self.ring_millis)
        {
            recent.pop_front();
        }
        Some(frame)
    }

    /// The windows after `last_seq` still in the ring, the latest message of each, in `seq`
    /// order (`i64::MIN`: the whole ring, the snapshot a new connection gets).
    pub fn since(&self, last_seq: i64) -> Held {
        let ring = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        Held {
            frames: ring
                .frames
                .iter()
                .filter(|f| f.seq > last_seq)
                .cloned()
                .collect(),
            upto: ring.last_order,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::report::WindowMessage;
    use model::{ReportConfig, WindowReport};

    fn frame(seq: i64) -> WindowFrame {
        let report = WindowReport::build(
            seq * 2000,
            seq * 2000 + 2000,
            0,
            0,
            [],
            &ReportConfig::default(),
        );
        WindowFrame::new(&WindowMessage::final_of(report, seq), None)
    }

    #[test]
    fn ring_keeps_the_last_minute_and_drops_repeats() {
        let hub = Hub::new(60_000);
        for seq in 0..100 {
            assert!(hub.publish_is_new(frame(seq)));
        }
        assert!(
            !hub.publish_is_new(frame(99)),
            "a republished window is dropped"
        );
        assert_eq!(hub.since(i64::MIN).frames.last().unwrap().seq, 99);
        let since: Vec<i64> = hub.since(95).frames.iter().map(|f| f.seq).collect();
        assert_eq!(since, [96, 97, 98, 99]);
        assert_eq!(
            hub.since(-1).frames.len(),
            31,
            "60 s of 2 s windows, plus the newest"
        );
    }

    fn revision(seq: i64, revision: u64) -> WindowFrame {
        let mut frame = frame(seq);
        frame.revision = revision;
        frame
    }

    #[test]
    fn a_higher_revision_replaces_a_window_even_behind_a_newer_one() {
        let hub = Hub::new(60_000);
        assert!(hub.publish_is_new(revision(5, 1)));
        assert!(hub.publish_is_new(revision(6, 1)));
        // The final of 5 after the first update of 6.
        assert!(hub.publish_is_new(revision(5, 2)));
        assert!(
            !hub.publish_is_new(revision(5, 2)),
            "a republished revision is dropped"
        );
        assert!(
            !hub.publish_is_new(revision(5, 1)),
            "an older revision is dropped"
        );
        let held: Vec<(i64, u64)> = hub
            .since(0)
            .frames
            .iter()
            .map(|f| (f.seq, f.revision))
            .collect();
        assert_eq!(held, [(5, 2), (6, 1)]);
        assert_eq!(hub.since(i64::MIN).frames.last().unwrap().seq, 6);
    }

    #[test]
    fn messages_taken_in_are_numbered_in_order_and_the_ring_says_up_to_which() {
        let hub = Hub::new(60_000);
        let orders: Vec<Option<u64>> = [
            revision(5, 1),
            revision(6, 1),
            revision(5, 1),
            revision(5, 2),
        ]
        .into_iter()
        .map(|frame| hub.publish(frame).map(|f| f.order))
        .collect();
        assert_eq!(
            orders,
            [Some(1), Some(2), None, Some(3)],
            "a dropped one takes no number"
        );
        let held = hub.since(5);
        assert_eq!(
            held.upto, 3,
            "the last number given, whatever the windows asked for"
        );
        assert_eq!(held.frames.iter().map(|f| f.order).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn the_longer_windows_keep_the_last_sixty() {
        let hub = Hub::new(60_000);
        for seq in (0..70).rev() {
            hub.publish_summary(frame(seq));
        }
        let held: Vec<i64> = hub.summaries().iter().map(|f| f.seq).collect();
        assert_eq!(held, (10..70).collect::<Vec<_>>(), "the newest 60 stay");
        assert_eq!(hub.publish_summary(frame(70)).map(|f| f.seq), Some(70));
        assert!(hub.publish_summary(frame(70)).is_none());
        assert_eq!(hub.summaries().first().unwrap().seq, 11);
    }

    impl Hub {
        fn publish_is_new(&self, frame: WindowFrame) -> bool {
            self.publish(frame).is_some()
        }
    }
}
