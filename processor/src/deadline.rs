//! The per-image time budget.
//!
//! Decoding is bounded by the pixel limits; encoders check the deadline
//! between stages, libwebp aborts through its progress hook and oxipng stops
//! its trials at the deadline. Whatever finishes late is reported as
//! [`Error::Timeout`](crate::Error::Timeout) rather than returned.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    start: Instant,
    budget: Duration,
}

impl Deadline {
    /// A deadline `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Deadline {
            start: Instant::now(),
            budget,
        }
    }

    pub fn budget(&self) -> Duration {
        self.budget
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Time left, zero once expired.
    pub fn remaining(&self) -> Duration {
        self.budget.saturating_sub(self.start.elapsed())
    }

    pub fn expired(&self) -> bool {
        self.start.elapsed() >= self.budget
    }

    /// `Err(Timeout)` naming `stage` once the budget is spent.
    pub fn check(&self, stage: &'static str) -> Result<()> {
        if self.expired() {
            return Err(self.timeout(stage));
        }
        Ok(())
    }

    pub fn timeout(&self, stage: &'static str) -> Error {
        Error::Timeout {
            stage,
            budget_ms: u64::try_from(self.budget.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_budget_is_expired() {
        let d = Deadline::after(Duration::ZERO);
        assert!(d.expired());
        assert!(matches!(
            d.check("decode"),
            Err(Error::Timeout {
                stage: "decode",
                ..
            })
        ));
    }

    #[test]
    fn long_budget_is_not_expired() {
        let d = Deadline::after(Duration::from_secs(3600));
        assert!(d.check("decode").is_ok());
        assert!(d.remaining() > Duration::from_secs(3500));
    }
}
