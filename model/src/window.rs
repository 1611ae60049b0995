//! Tumbling event-time windows aligned to the Unix epoch: `[start, start + size)`.

use std::time::Duration;

use crate::window_spec::WindowSpec;

/// The size of a tumbling window, in whole milliseconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WindowSize(i64);

/// A window size that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid window size {millis}ms: {reason}")]
pub struct WindowSizeError {
    /// The size asked for, in milliseconds.
    pub millis: u128,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl WindowSize {
    /// The largest window: one year.
    pub const MAX_MILLIS: i64 = 366 * 24 * 3600 * 1000;

    /// A window size of `millis` milliseconds.
    pub fn from_millis(millis: i64) -> Result<Self, WindowSizeError> {
        if millis < 1 {
            return Err(WindowSizeError {
                millis: millis.max(0) as u128,
                reason: "must be at least 1ms",
            });
        }
        if millis > Self::MAX_MILLIS {
            return Err(WindowSizeError {
                millis: millis as u128,
                reason: "must be at most a year",
            });
        }
        Ok(WindowSize(millis))
    }

    /// A window size from a duration, which must be a whole number of milliseconds.
    pub fn from_duration(duration: Duration) -> Result<Self, WindowSizeError> {
        let millis = duration.as_millis();
        if !duration.as_nanos().is_multiple_of(1_000_000) {
            return Err(WindowSizeError {
                millis,
                reason: "must be a whole number of milliseconds",
            });
        }
        Self::from_millis(i64::try_from(millis).unwrap_or(i64::MAX))
    }

    /// The size in milliseconds.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// The start of the window holding `timestamp_ms` (floor, also before 1970).
    ///
    /// ```
    /// let size = model::WindowSize::from_millis(2000).unwrap();
    /// assert_eq!(size.start_of(3999), 2000);
    /// assert_eq!(size.start_of(-1), -2000);
    /// assert_eq!(size.end_of(size.start_of(-1)), 0);
    /// ```
    #[inline]
    pub fn start_of(self, timestamp_ms: i64) -> i64 {
        timestamp_ms.div_euclid(self.0) * self.0
    }

    /// The exclusive end of the window starting at `start`.
    #[inline]
    pub fn end_of(self, start: i64) -> i64 {
        start + self.0
    }

    /// The size as written in topic and file names: `2s`, `60s`, `500ms`.
    pub fn label(self) -> String {
        if self.0 % 1000 == 0 {
            format!("{}s", self.0 / 1000)
        } else {
            format!("{}ms", self.0)
        }
    }

    /// `path` with this size's label before its extension: `out.csv` becomes `out-2s.csv`.
    pub fn labelled_path(self, path: &std::path::Path) -> std::path::PathBuf {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default();
        let name = match path.extension() {
            Some(ext) => format!("{stem}-{}.{}", self.label(), ext.to_string_lossy()),
            None => format!("{stem}-{}", self.label()),
        };
        path.with_file_name(name)
    }
}

impl Default for WindowSize {
    fn default() -> Self {
        WindowSpec::default().live()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_sizes_in_topics_and_files() {
        let size = |ms| WindowSize::from_millis(ms).unwrap();
        assert_eq!(size(2000).label(), "2s");
        assert_eq!(size(60_000).label(), "60s");
        assert_eq!(size(1500).label(), "1500ms");
        assert_eq!(
            size(60_000).labelled_path(std::path::Path::new("out/windows.csv")),
            std::path::PathBuf::from("out/windows-60s.csv")
        );
        assert_eq!(
            size(2000).labelled_path(std::path::Path::new("windows")),
            std::path::PathBuf::from("windows-2s")
        );
    }

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        let w = WindowSize::from_millis(2000).unwrap();
        assert_eq!(w.start_of(0), 0);
        assert_eq!(w.start_of(1999), 0);
        assert_eq!(w.start_of(2000), 2000);
        assert_eq!(w.start_of(2001), 2000);
        assert_eq!(w.end_of(2000), 4000);
    }

    #[test]
    fn windows_before_1970_floor_towards_the_past() {
        let w = WindowSize::from_millis(2000).unwrap();
        assert_eq!(w.start_of(-1), -2000);
        assert_eq!(w.start_of(-2000), -2000);
        assert_eq!(w.start_of(-2001), -4000);
        assert_eq!(w.end_of(w.start_of(-1)), 0);
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert!(WindowSize::from_millis(0).is_err());
        assert!(WindowSize::from_duration(Duration::from_micros(1500)).is_err());
        assert!(WindowSize::from_millis(WindowSize::MAX_MILLIS + 1).is_err());
        assert_eq!(
            WindowSize::from_duration(Duration::from_secs(60))
                .unwrap()
                .millis(),
            60_000
        );
    }
}
