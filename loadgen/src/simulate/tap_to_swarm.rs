//! Tap-to-swarm latency: for each tap the ingest accepted (answered 2xx), the time from its
//! acceptance (when the simulator got the answer) to the first frame at a viewer whose count
//! for the tap's window and emoji includes it. Measured over every (tap, viewer) pair.
//!
//! The k-th accepted tap of a (window, emoji) is on screen at a viewer once a frame of that
//! window reports a count of at least k for that emoji. This is exact when the simulator is
//! the only sender; another sender's taps make the counts run ahead, and the latencies look
//! shorter. A frame can count a tap before the tap's answer reaches the simulator (the frame
//! raced the HTTP answer). Such a tap is credited with latency 0 once it is accepted.
//!
//! Memory: 8 bytes per accepted tap of each window still followed, plus two counters per
//! viewer and emoji. A window is forgotten once every connected viewer has had a closed frame
//! of it (final or revised). It is also forgotten a minute after its end. A tap accepted
//! after its window is forgotten counts among the taps but is never measured.

use std::collections::BTreeMap;
use std::sync::Mutex;

use hdrhistogram::Histogram;
use model::WindowSize;
use serde::Serialize;

use crate::generator::EMOJIS;

/// A window is forgotten this long after its end, even if some viewer never had its final
/// (a viewer that disconnected, a dataflow that stopped).
const FORGET_AFTER_MS: i64 = 60_000;

/// One tap of a request: its event time and its emoji.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tap {
    /// Event time, UTC milliseconds: it decides the window.
    pub timestamp_ms: i64,
    /// An index into [`EMOJIS`].
    pub emoji: usize,
}

/// Tap-to-swarm latency over every (tap, viewer) pair.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TapToSwarmReport {
    /// Taps accepted (2xx) in the windows measured: those ending at least the lateness before
    /// the last tap, as for the window delays.
    pub taps: u64,
    /// (tap, viewer) pairs measured: at most `taps` times the viewers connected.
    pub measured: u64,
    /// Latency from a tap's acceptance to the first frame counting it at a viewer, ms:
    /// median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// The acceptances of the simulator and the frames of its viewers, matched up. The senders
/// call [`TapToSwarm::accepted`], each viewer calls [`TapToSwarm::shown`], and
/// [`TapToSwarm::report`] sums up.
pub struct TapToSwarm {
    window: WindowSize,
    viewers: usize,
    ledger: Mutex<Ledger>,
}

struct Ledger {
    /// Followed windows by start.
    windows: BTreeMap<i64, WindowLedger>,
    /// Windows starting at or before this are forgotten.
    forgotten_through: i64,
    /// Viewers connected.
    connected: usize,
    /// Windows ending after this are left out of the figures.
    last_end_ms: i64,
    /// Taps and latencies of the forgotten windows that count.
    taps: u64,
    latencies: Histogram<u64>,
}

struct WindowLedger {
    /// Acceptance times (UTC ms) of the window's taps, per emoji, in acceptance order.
    accepted: [Vec<i64>; EMOJIS.len()],
    /// Per viewer: what it has been credited.
    viewers: Vec<ViewerCredit>,
    /// Viewers that have had a closed frame of the window.
    closed_at: usize,
    latencies: Histogram<u64>,
}

#[derive(Clone, Default)]
struct ViewerCredit {
    emojis: [Credit; EMOJIS.len()],
    closed: bool,
}

/// How far one viewer is credited for one (window, emoji).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Credit {
    /// Taps credited: the first `credited` accepted ones.
    credited: usize,
    /// The highest count a frame has shown.
    shown: u64,
}

impl Credit {
    /// A frame arriving at `at_ms` shows `count` taps. The taps newly on screen get their
    /// latency from their acceptance. Taps an earlier frame already counted, but accepted
    /// since, get latency 0. A lower count, as of an older revision, shows nothing new.
    fn show(&mut self, accepted: &[i64], count: u64, at_ms: i64, record: &mut impl FnMut(u64)) {
        let earlier = self.shown;
        self.shown = self.shown.max(count);
        let on_screen = accepted
            .len()
            .min(usize::try_from(self.shown).unwrap_or(usize::MAX));
        for (k, &accepted_ms) in accepted
            .iter()
            .enumerate()
            .take(on_screen)
            .skip(self.credited)
        {
            let latency = if (k as u64) < earlier {
                0
            } else {
                (at_ms - accepted_ms).max(0) as u64
            };
            record(latency);
        }
        self.credited = self.credited.max(on_screen);
    }

    /// Credits the taps accepted after a frame had already counted them.
    fn settle(&mut self, accepted: &[i64], record: &mut impl FnMut(u64)) {
        self.show(accepted, 0, 0, record);
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant figures are a valid histogram precision")
}

impl WindowLedger {
    fn new(viewers: usize) -> Self {
        WindowLedger {
            accepted: Default::default(),
            viewers: vec![ViewerCredit::default(); viewers],
            closed_at: 0,
            latencies: histogram(),
        }
    }

    /// Credits every viewer for the taps accepted after a frame had already counted them.
    fn settle(&mut self) {
        let latencies = &mut self.latencies;
        let mut record = |ms| {
            let _ = latencies.record(ms);
        };
        for viewer in &mut self.viewers {
            for (credit, accepted) in viewer.emojis.iter_mut().zip(&self.accepted) {
                credit.settle(accepted, &mut record);
            }
        }
    }

    fn taps(&self) -> u64 {
        self.accepted.iter().map(|a| a.len() as u64).sum()
    }
}

impl TapToSwarm {
    /// Follows the taps in windows of `window`, seen by viewers `0..viewers`.
    pub fn new(window: WindowSize, viewers: usize) -> Self {
        TapToSwarm {
            window,
            viewers,
            ledger: Mutex::new(Ledger {
                windows: BTreeMap::new(),
                forgotten_through: i64::MIN,
                connected: 0,
                last_end_ms: i64::MAX,
                taps: 0,
                latencies: histogram(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ingest accepted `taps` (answered 2xx) at `at_ms`, UTC milliseconds.
    pub fn accepted(&self, taps: &[Tap], at_ms: i64) {
        let mut ledger = self.lock();
        for tap in taps {
            let start = self.window.start_of(tap.timestamp_ms);
            if !ledger.windows.contains_key(&start) {
                // A new window: the time to forget the old ones.
                self.forget(&mut ledger, at_ms);
                let old = self.window.end_of(start) < at_ms - FORGET_AFTER_MS;
                if start <= ledger.forgotten_through || old {
                    if self.window.end_of(start) <= ledger.last_end_ms {
                        ledger.taps += 1;
                    }
                    continue;
                }
            }
            let window = ledger
                .windows
                .entry(start)
                .or_insert_with(|| WindowLedger::new(self.viewers));
            if let Some(accepted) = window.accepted.get_mut(tap.emoji) {
                accepted.push(at_ms);
            }
        }
    }

    /// A viewer connected: a window is forgotten once every connected viewer has had a closed
    /// frame of it.
    pub fn viewer_connected(&self) {
        self.lock().connected += 1;
    }

    /// A frame of the window starting at `window_start` arrived at viewer `viewer` at
    /// `at_ms`, counting `counts` taps of each emoji (an index into [`EMOJIS`]). `closed`
    /// says whether the frame is final or revised rather than open.
    pub fn shown(
        &self,
        viewer: usize,
        window_start: i64,
        counts: impl IntoIterator<Item = (usize, u64)>,
        closed: bool,
        at_ms: i64,
    ) {
        if viewer >= self.viewers {
            return;
        }
        let mut ledger = self.lock();
        if window_start <= ledger.forgotten_through {
            return;
        }
        let window = ledger
            .windows
            .entry(window_start)
            .or_insert_with(|| WindowLedger::new(self.viewers));
        let latencies = &mut window.latencies;
        let mut record = |ms| {
            let _ = latencies.record(ms);
        };
        let credit = &mut window.viewers[viewer];
        for (emoji, count) in counts {
            if let (Some(credit), Some(accepted)) =
                (credit.emojis.get_mut(emoji), window.accepted.get(emoji))
            {
                credit.show(accepted, count, at_ms, &mut record);
            }
        }
        if closed && !credit.closed {
            credit.closed = true;
            window.closed_at += 1;
        }
        self.forget(&mut ledger, at_ms);
    }

    /// Leaves the windows ending after `last_end_ms` out of the figures.
    pub fn measure_until(&self, last_end_ms: i64) {
        self.lock().last_end_ms = last_end_ms;
    }

    /// Forgets, oldest first, the windows every connected viewer has had closed and those
    /// that ended [`FORGET_AFTER_MS`] before `now_ms`, keeping their figures.
    fn forget(&self, ledger: &mut Ledger, now_ms: i64) {
        while let Some(entry) = ledger.windows.first_entry() {
            let start = *entry.key();
            let window = entry.get();
            let closed_everywhere = ledger.connected > 0 && window.closed_at >= ledger.connected;
            let old = self.window.end_of(start) < now_ms - FORGET_AFTER_MS;
            if !closed_everywhere && !old {
                break;
            }
            let window = entry.remove();
            ledger.forgotten_through = start;
            self.keep_figures(ledger, window, start);
        }
    }

    fn keep_figures(&self, ledger: &mut Ledger, mut window: WindowLedger, start: i64) {
        if self.window.end_of(start) > ledger.last_end_ms {
            return;
        }
        window.settle();
        ledger.taps += window.taps();
        let _ = ledger.latencies.add(&window.latencies);
    }

    /// The figures over every tap of the windows measured, and every viewer.
    pub fn report(&self) -> TapToSwarmReport {
        let mut ledger = self.lock();
        for (start, window) in std::mem::take(&mut ledger.windows) {
            self.keep_figures(&mut ledger, window, start);
        }
        let h = &ledger.latencies;
        let mut report = TapToSwarmReport {
            taps: ledger.taps,
            measured: h.len(),
            ..TapToSwarmReport::default()
        };
        if !h.is_empty() {
            report.p50_ms = h.value_at_quantile(0.5) as f64;
            report.p99_ms = h.value_at_quantile(0.99) as f64;
            report.max_ms = h.max() as f64;
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(credit: &mut Credit, accepted: &[i64], count: u64, at_ms: i64) -> Vec<u64> {
        let mut latencies = Vec::new();
        credit.show(accepted, count, at_ms, &mut |ms| latencies.push(ms));
        latencies
    }

    #[test]
    fn the_kth_tap_is_credited_at_the_first_frame_counting_k() {
        let accepted = [100, 110, 120];
        let mut credit = Credit::default();
        assert_eq!(shown(&mut credit, &accepted, 0, 150), Vec::<u64>::new());
        assert_eq!(shown(&mut credit, &accepted, 2, 200), vec![100, 90]);
        assert_eq!(shown(&mut credit, &accepted, 3, 300), vec![180]);
        assert_eq!(
            credit,
            Credit {
                credited: 3,
                shown: 3
            }
        );
    }

    #[test]
    fn a_higher_count_credits_only_the_new_taps() {
        let accepted = [0, 10, 20, 30, 40];
        let mut credit = Credit::default();
        assert_eq!(shown(&mut credit, &accepted, 3, 100), vec![100, 90, 80]);
        assert_eq!(shown(&mut credit, &accepted, 3, 150), Vec::<u64>::new());
        assert_eq!(shown(&mut credit, &accepted, 5, 200), vec![170, 160]);
    }

    #[test]
    fn an_older_revision_with_a_lower_count_credits_nothing() {
        let accepted = [0, 10, 20, 30];
        let mut credit = Credit::default();
        assert_eq!(shown(&mut credit, &accepted, 3, 100), vec![100, 90, 80]);
        assert_eq!(shown(&mut credit, &accepted, 1, 120), Vec::<u64>::new());
        assert_eq!(shown(&mut credit, &accepted, 2, 130), Vec::<u64>::new());
        assert_eq!(shown(&mut credit, &accepted, 4, 140), vec![110]);
    }

    #[test]
    fn a_tap_counted_before_its_answer_has_latency_zero() {
        let mut credit = Credit::default();
        // The frame counts 3 taps when only 1 answer has come back.
        assert_eq!(shown(&mut credit, &[50], 3, 100), vec![50]);
        // The other two are answered after the frame: on screen from their acceptance.
        let accepted = [50, 120, 130, 140];
        let mut settled = Vec::new();
        credit.settle(&accepted, &mut |ms| settled.push(ms));
        assert_eq!(settled, vec![0, 0]);
        // The fourth waits for a frame counting it.
        assert_eq!(shown(&mut credit, &accepted, 4, 400), vec![260]);
    }

    fn tap(timestamp_ms: i64, emoji: usize) -> Tap {
        Tap {
            timestamp_ms,
            emoji,
        }
    }

    #[test]
    fn every_viewer_is_measured_and_late_windows_are_left_out() {
        let swarm = TapToSwarm::new(WindowSize::from_millis(2000).unwrap(), 2);
        swarm.viewer_connected();
        swarm.viewer_connected();
        // Two taps of emoji 1 in [0, 2000), one of emoji 0 in [4000, 6000).
        swarm.accepted(&[tap(100, 1), tap(1999, 1)], 2_000);
        swarm.accepted(&[tap(4_500, 0)], 4_600);
        swarm.shown(0, 0, [(1, 2)], false, 2_100);
        swarm.shown(1, 0, [(1, 1)], false, 2_200);
        swarm.shown(1, 0, [(1, 2)], true, 2_500);
        swarm.shown(0, 4_000, [(0, 1)], false, 4_700);
        swarm.measure_until(2_000);
        let report = swarm.report();
        assert_eq!(report.taps, 2);
        assert_eq!(report.measured, 4);
        assert_eq!((report.p50_ms, report.max_ms), (100.0, 500.0));
    }

    #[test]
    fn a_window_closed_at_every_viewer_is_forgotten() {
        let swarm = TapToSwarm::new(WindowSize::from_millis(2000).unwrap(), 2);
        swarm.viewer_connected();
        swarm.viewer_connected();
        swarm.accepted(&[tap(100, 3)], 1_000);
        swarm.shown(0, 0, [(3, 1)], true, 2_000);
        assert_eq!(swarm.lock().windows.len(), 1, "one viewer still waits");
        swarm.shown(1, 0, [(3, 1)], true, 2_100);
        assert!(swarm.lock().windows.is_empty());
        // A tap of the forgotten window counts, unmeasured; a revision of it changes nothing.
        swarm.accepted(&[tap(200, 3)], 2_200);
        swarm.shown(0, 0, [(3, 2)], true, 2_300);
        assert!(swarm.lock().windows.is_empty());
        let report = swarm.report();
        assert_eq!((report.taps, report.measured), (2, 2));
        assert_eq!((report.p50_ms, report.max_ms), (1000.0, 1100.0));
    }

    #[test]
    fn a_window_is_forgotten_a_minute_after_its_end() {
        let swarm = TapToSwarm::new(WindowSize::from_millis(2000).unwrap(), 1);
        swarm.viewer_connected();
        swarm.accepted(&[tap(100, 0)], 1_000);
        swarm.accepted(
            &[tap(2_000 + FORGET_AFTER_MS + 10, 0)],
            2_000 + FORGET_AFTER_MS + 20,
        );
        assert_eq!(swarm.lock().windows.len(), 1);
        let report = swarm.report();
        assert_eq!((report.taps, report.measured), (2, 0));
    }
}
