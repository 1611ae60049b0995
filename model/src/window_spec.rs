//! `WindowSpec`: every window size a run computes and the lateness they share, validated
//! once where the arguments are read and carried whole down to the watermarks.

use std::time::Duration;

use crate::window::{WindowSize, WindowSizeError};

/// The window sizes of a run, the live one first, the lateness they share, and the allowed
/// lateness after it during which a final window is still amended.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use model::window_spec::WindowSpec;
///
/// let spec = WindowSpec::from_durations(
///     &[Duration::from_secs(2), Duration::from_secs(60)],
///     Duration::from_secs(1),
/// )
/// .unwrap();
/// assert_eq!(spec.live().label(), "2s");
/// assert_eq!(spec.more().len(), 1);
/// assert_eq!(spec.lateness_ms(), 1000);
///
/// let twice = [Duration::from_secs(2), Duration::from_secs(2)];
/// let error = WindowSpec::from_durations(&twice, Duration::ZERO).unwrap_err();
/// assert_eq!(error.to_string(), "window size 2s named twice");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpec {
    sizes: Vec<WindowSize>,
    lateness_ms: i64,
    allowed_lateness_ms: i64,
}

/// A window specification that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowSpecError {
    /// No size at all.
    #[error("no window size: name one, like 2s")]
    NoSize,
    /// A size is invalid.
    #[error(transparent)]
    Size(#[from] WindowSizeError),
    /// A size appears twice.
    #[error("window size {0} named twice")]
    Duplicate(String),
    /// The lateness is not whole milliseconds, or too long.
    #[error("invalid lateness {0:?}: must be a whole number of milliseconds, at most a year")]
    Lateness(Duration),
    /// The allowed lateness is not whole milliseconds, or too long.
    #[error(
        "invalid allowed lateness {0:?}: must be a whole number of milliseconds, at most a year"
    )]
    AllowedLateness(Duration),
}

/// `duration` in whole milliseconds, at most [`WindowSize::MAX_MILLIS`].
fn whole_millis(duration: Duration) -> Option<i64> {
    let whole = duration.as_nanos().is_multiple_of(1_000_000);
    i64::try_from(duration.as_millis())
        .ok()
        .filter(|&ms| whole && ms <= WindowSize::MAX_MILLIS)
}

impl WindowSpec {
    /// The default lateness, as written on the command line.
    pub const DEFAULT_LATENESS: &str = "1s";
    /// The default window size, as written on the command line.
    pub const DEFAULT_SIZE: &str = "2s";
    /// The default allowed lateness, as written on the command line.
    pub const DEFAULT_ALLOWED_LATENESS: &str = "10s";

    /// The sizes `sizes` (the first is the live one) with `lateness`, and no allowed lateness
    /// (a final window is never amended).
    pub fn new(sizes: Vec<WindowSize>, lateness: Duration) -> Result<Self, WindowSpecError> {
        if sizes.is_empty() {
            return Err(WindowSpecError::NoSize);
        }
        for (i, size) in sizes.iter().enumerate() {
            if sizes[..i].contains(size) {
                return Err(WindowSpecError::Duplicate(size.label()));
            }
        }
        let lateness_ms = whole_millis(lateness).ok_or(WindowSpecError::Lateness(lateness))?;
        Ok(WindowSpec {
            sizes,
            lateness_ms,
            allowed_lateness_ms: 0,
        })
    }

    /// The same with `allowed` as the allowed lateness: an event that misses its window by
    /// less than this (past the lateness) amends the final window instead of being late.
    pub fn with_allowed_lateness(self, allowed: Duration) -> Result<Self, WindowSpecError> {
        let allowed_lateness_ms =
            whole_millis(allowed).ok_or(WindowSpecError::AllowedLateness(allowed))?;
        Ok(WindowSpec {
            allowed_lateness_ms,
            ..self
        })
    }

    /// The sizes of `durations` with `lateness`.
    pub fn from_durations(
        durations: &[Duration],
        lateness: Duration,
    ) -> Result<Self, WindowSpecError> {
        let sizes = durations
            .iter()
            .map(|&d| WindowSize::from_duration(d))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(sizes, lateness)
    }

    /// The same sizes with another lateness.
    pub fn with_lateness(self, lateness: Duration) -> Result<Self, WindowSpecError> {
        let allowed = self.allowed_lateness();
        Self::new(self.sizes, lateness)?.with_allowed_lateness(allowed)
    }

    /// Every size, the live one first.
    pub fn sizes(&self) -> &[WindowSize] {
        &self.sizes
    }

    /// The live size: the first.
    pub fn live(&self) -> WindowSize {
        self.sizes[0]
    }

    /// The sizes after the first.
    pub fn more(&self) -> &[WindowSize] {
        &self.sizes[1..]
    }

    /// Whether several sizes are computed (then outputs carry the size in their names).
    pub fn is_several(&self) -> bool {
        self.sizes.len() > 1
    }

    /// How far behind the newest event of a partition an event may be and still count.
    pub fn lateness(&self) -> Duration {
        Duration::from_millis(self.lateness_ms as u64)
    }

    /// The lateness in milliseconds.
    pub fn lateness_ms(&self) -> i64 {
        self.lateness_ms
    }

    /// How long after its window closed an event still amends it.
    pub fn allowed_lateness(&self) -> Duration {
        Duration::from_millis(self.allowed_lateness_ms as u64)
    }

    /// The allowed lateness in milliseconds.
    pub fn allowed_lateness_ms(&self) -> i64 {
        self.allowed_lateness_ms
    }

    /// Whether an event of the window `[start, end)` still counts, as an amendment, when its
    /// partition's watermark (or the source's progress, if further) is `watermark`: it has not
    /// yet reached the end plus the allowed lateness.
    pub fn amends(&self, end: i64, watermark: i64) -> bool {
        end.saturating_add(self.allowed_lateness_ms) > watermark
    }

    /// Once every later input is at or past this time, the window `[start, end)` can no longer
    /// be amended: its state is released and its last revision is its result.
    pub fn released_at(&self, end: i64) -> i64 {
        end.saturating_add(self.allowed_lateness_ms)
    }
}

impl Default for WindowSpec {
    /// One size, the lateness and the allowed lateness as the command line writes them by
    /// default.
    fn default() -> Self {
        let parse = |text| crate::duration::parse_duration(text).expect("a default parses");
        WindowSpec::from_durations(&[parse(Self::DEFAULT_SIZE)], parse(Self::DEFAULT_LATENESS))
            .and_then(|spec| spec.with_allowed_lateness(parse(Self::DEFAULT_ALLOWED_LATENESS)))
            .expect("the defaults are a valid window spec")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_two_seconds_and_one_second() {
        let spec = WindowSpec::default();
        assert_eq!((spec.live().millis(), spec.lateness_ms()), (2000, 1000));
        assert_eq!(spec.allowed_lateness_ms(), 10_000);
        assert_eq!(WindowSize::default(), spec.live());
    }

    #[test]
    fn bad_specs_name_the_problem() {
        assert_eq!(
            WindowSpec::new(Vec::new(), Duration::ZERO),
            Err(WindowSpecError::NoSize)
        );
        assert!(matches!(
            WindowSpec::new(vec![WindowSize::default()], Duration::from_micros(1500)),
            Err(WindowSpecError::Lateness(_))
        ));
        assert!(matches!(
            WindowSpec::from_durations(&[Duration::ZERO], Duration::ZERO),
            Err(WindowSpecError::Size(_))
        ));
    }
}
