//! The retry budget's token bucket (see [`super::RetryBudget`] for the rules).

use super::options::RetryBudget;
use std::time::Instant;

/// Token bucket state: balance and the instant the time-based refill was last applied.
#[derive(Debug, Clone)]
pub(super) struct Bucket {
    config: RetryBudget,
    tokens: f64,
    /// `None` until the first call (the core never reads a clock, so it learns "now" from
    /// the first instant it is given).
    refilled_at: Option<Instant>,
}

impl Bucket {
    /// A full bucket.
    pub(super) const fn new(config: RetryBudget) -> Self {
        Self {
            config,
            tokens: config.capacity,
            refilled_at: None,
        }
    }

    /// Adds the time-based tokens earned since the last call.
    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.refilled_at {
            let secs = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + secs * self.config.min_per_sec).min(self.config.capacity);
        }
        // Never move backwards: an out-of-order `now` earns nothing and loses nothing.
        if self.refilled_at.is_none_or(|last| now > last) {
            self.refilled_at = Some(now);
        }
    }

    /// A submission arrived.
    pub(super) fn deposit(&mut self, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens + self.config.ratio).min(self.config.capacity);
    }

    /// Takes one token for a retry; `false` (nothing taken) when less than one is left.
    pub(super) fn withdraw(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// The current balance (for stats).
    pub(super) const fn tokens(&self) -> f64 {
        self.tokens
    }
}
