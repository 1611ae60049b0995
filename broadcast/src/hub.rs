//! The hub of a broadcaster: the latest window, a ring of recent windows for resuming
//! clients, and the channel every connection listens on.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::frame::WindowFrame;

/// Shared by the consumer and every connection.
#[derive(Debug)]
pub struct Hub {
    ring_millis: i64,
    recent: Mutex<VecDeque<Arc<WindowFrame>>>,
    fan_out: broadcast::Sender<Arc<WindowFrame>>,
}

impl Hub {
    /// A hub keeping `ring_millis` of windows; a connection that falls `max_lag` windows
    /// behind misses windows (and is disconnected for it).
    pub fn new(ring_millis: i64, max_lag: usize) -> Self {
        Hub {
            ring_millis,
            recent: Mutex::new(VecDeque::new()),
            fan_out: broadcast::channel(max_lag.max(1)).0,
        }
    }

    /// Takes in a window: remembers it and sends it to every connection. A window already
    /// seen (the same `seq`) is dropped: consumers deduplicate republished windows here.
    pub fn publish(&self, frame: WindowFrame) -> bool {
        let frame = Arc::new(frame);
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if recent.back().is_some_and(|last| last.seq >= frame.seq) {
                return false;
            }
            recent.push_back(Arc::clone(&frame));
            while recent
                .front()
                .is_some_and(|first| first.window_end < frame.window_end - self.ring_millis)
            {
                recent.pop_front();
            }
        }
        // No receiver is not an error: nobody is connected.
        let _ = self.fan_out.send(frame);
        true
    }

    /// The latest window, if any.
    pub fn latest(&self) -> Option<Arc<WindowFrame>> {
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .back()
            .cloned()
    }

    /// The windows after `last_seq` still in the ring.
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
        WindowFrame::new(&WindowMessage { report, seq }, None)
    }

    #[test]
    fn ring_keeps_the_last_minute_and_drops_repeats() {
        let hub = Hub::new(60_000, 4);
        for seq in 0..100 {
            assert!(hub.publish(frame(seq)));
        }
        assert!(!hub.publish(frame(99)), "a republished window is dropped");
        assert_eq!(hub.latest().unwrap().seq, 99);
        let since: Vec<i64> = hub.since(95).iter().map(|f| f.seq).collect();
        assert_eq!(since, [96, 97, 98, 99]);
        assert_eq!(
            hub.since(-1).len(),
            31,
            "60 s of 2 s windows, plus the newest"
        );
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
