//! The hub of a broadcaster: the latest window, a ring of recent windows for resuming
//! clients, and the channel every connection listens on; and, when a longer window size is
//! served too, the last of those windows (the per-minute timeline) and their channel.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::frame::WindowFrame;

/// Shared by the consumer and every connection.
#[derive(Debug)]
pub struct Hub {
    ring_millis: i64,
    recent: Mutex<VecDeque<Arc<WindowFrame>>>,
    fan_out: broadcast::Sender<Arc<WindowFrame>>,
    summary_count: usize,
    summaries: Mutex<BTreeMap<i64, Arc<WindowFrame>>>,
    summary_out: broadcast::Sender<Arc<WindowFrame>>,
}

impl Hub {
    /// A hub keeping `ring_millis` of windows; a connection that falls `max_lag` messages
    /// behind misses some (and catches up from the ring).
    pub fn new(ring_millis: i64, max_lag: usize) -> Self {
        Hub {
            ring_millis,
            recent: Mutex::new(VecDeque::new()),
            fan_out: broadcast::channel(max_lag.max(1)).0,
            summary_count: 60,
            summaries: Mutex::new(BTreeMap::new()),
            summary_out: broadcast::channel(max_lag.max(1)).0,
        }
    }

    /// Takes in a window of the longer size: keeps the last 60 by `seq` and sends a new one
    /// to every connection. False for one already held or older than all of them.
    pub fn publish_summary(&self, frame: WindowFrame) -> bool {
        let frame = Arc::new(frame);
        {
            let mut held = self.summaries.lock().unwrap_or_else(|e| e.into_inner());
            let full = held.len() >= self.summary_count;
            if held.contains_key(&frame.seq)
                || (full && held.keys().next().is_some_and(|&first| frame.seq < first))
            {
                return false;
            }
            held.insert(frame.seq, Arc::clone(&frame));
            while held.len() > self.summary_count {
                held.pop_first();
            }
        }
        let _ = self.summary_out.send(frame);
        true
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

    /// A receiver of the windows of the longer size to come.
    pub fn subscribe_summaries(&self) -> broadcast::Receiver<Arc<WindowFrame>> {
        self.summary_out.subscribe()
    }

    /// Takes in a window message: the ring keeps the latest revision of each window, in
    /// `seq` order, and a message newer than the one held is sent to every connection. One
    /// held already (the same `seq`, no higher revision: a republished window) or older than
    /// the ring is dropped. With open updates, a window's final may follow a newer window's
    /// update, so any window of the ring may be replaced.
    pub fn publish(&self, frame: WindowFrame) -> bool {
        let frame = Arc::new(frame);
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            match recent.binary_search_by_key(&frame.seq, |held| held.seq) {
                Ok(i) if recent[i].revision >= frame.revision => return false,
                Ok(i) => recent[i] = Arc::clone(&frame),
                Err(i) => {
                    let newest_end = recent.back().map_or(i64::MIN, |last| last.window_end);
                    if i == 0 && frame.window_end < newest_end.saturating_sub(self.ring_millis) {
                        return false;
                    }
                    recent.insert(i, Arc::clone(&frame));
                }
            }
            let newest_end = recent.back().map_or(i64::MIN, |last| last.window_end);
            while recent
                .front()
                .is_some_and(|first| first.window_end < newest_end - self.ring_millis)
            {
                recent.pop_front();
            }
        }
        // No receiver is not an error: nobody is connected.
        let _ = self.fan_out.send(frame);
        true
    }

    /// The windows after `last_seq` still in the ring, the latest message of each, in `seq`
    /// order (`i64::MIN`: the whole ring, the snapshot a new connection gets).
    pub fn since(&self, last_seq: i64) -> Vec<Arc<WindowFrame>> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent
            .iter()
            .filter(|f| f.seq > last_seq)
            .cloned()
            .collect()
    }

    /// A receiver of the windows to come.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<WindowFrame>> {
        self.fan_out.subscribe()
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
        let hub = Hub::new(60_000, 4);
        for seq in 0..100 {
            assert!(hub.publish(frame(seq)));
        }
        assert!(!hub.publish(frame(99)), "a republished window is dropped");
        assert_eq!(hub.since(i64::MIN).last().unwrap().seq, 99);
        let since: Vec<i64> = hub.since(95).iter().map(|f| f.seq).collect();
        assert_eq!(since, [96, 97, 98, 99]);
        assert_eq!(
            hub.since(-1).len(),
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
        let hub = Hub::new(60_000, 4);
        assert!(hub.publish(revision(5, 1)));
        assert!(hub.publish(revision(6, 1)));
        // The final of 5 after the first update of 6.
        assert!(hub.publish(revision(5, 2)));
        assert!(
            !hub.publish(revision(5, 2)),
            "a republished revision is dropped"
        );
        assert!(!hub.publish(revision(5, 1)), "an older revision is dropped");
        let held: Vec<(i64, u64)> = hub.since(0).iter().map(|f| (f.seq, f.revision)).collect();
        assert_eq!(held, [(5, 2), (6, 1)]);
        assert_eq!(hub.since(i64::MIN).last().unwrap().seq, 6);
    }

    #[test]
    fn the_longer_windows_keep_the_last_sixty() {
        let hub = Hub::new(60_000, 4);
        for seq in (0..70).rev() {
            hub.publish_summary(frame(seq));
        }
        let held: Vec<i64> = hub.summaries().iter().map(|f| f.seq).collect();
        assert_eq!(held, (10..70).collect::<Vec<_>>(), "the newest 60 stay");
        let mut rx = hub.subscribe_summaries();
        assert!(hub.publish_summary(frame(70)));
        assert!(!hub.publish_summary(frame(70)));
        assert_eq!(hub.summaries().first().unwrap().seq, 11);
        assert_eq!(rx.try_recv().unwrap().seq, 70);
    }

    #[test]
    fn a_lagging_receiver_learns_it_missed_windows() {
        let hub = Hub::new(60_000, 2);
        let mut rx = hub.subscribe();
        for seq in 0..5 {
            hub.publish(frame(seq));
        }
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(3))
        ));
    }
}
