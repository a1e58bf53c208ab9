//! Feedback loops: what a worker's `Outcome::Loopback` leads to.
//!
//! A loopback asks for another round with a refined payload. Each logical task (one stage of
//! a chain, across every round, whether the rounds reuse its id or go through a
//! `refine_kind`) carries a [`LoopState`]; [`decide`] applies the kind's [`LoopPolicy`]:
//!
//! 1. at `max_loops` loopbacks already taken → [`LoopDecision::Stop`] with
//!    [`LoopStop::Limit`]: the last payload is delivered marked as the loop limit;
//! 2. with `min_improvement` set, when this round's score and the previous round's are both
//!    known (not NaN) and the score rose by less than `min_improvement` →
//!    [`LoopStop::NoImprovement`], delivered the same way;
//! 3. otherwise [`LoopDecision::Again`]: one more loop, into `refine_kind` if the kind has one
//!    (whose result then re-enters this kind as the next payload), else into the kind itself.
//!
//! Scores are the `f64` of the completion header (NaN = none). A round without a score keeps
//! the last known one as the reference. Purely deterministic: no clock, no randomness.
//!
//! ```
//! use amp_supervisor::pipeline::loopback::{decide, LoopDecision, LoopPolicy, LoopState, LoopStop};
//! let policy = LoopPolicy { max_loops: 10, refine_kind: None, min_improvement: Some(0.05) };
//! let mut state = LoopState::default();
//! assert_eq!(decide(&policy, 3, &mut state, 0.50), LoopDecision::Again { kind: 3 });
//! assert_eq!(decide(&policy, 3, &mut state, 0.70), LoopDecision::Again { kind: 3 });
//! // +0.01 < 0.05: converged.
//! let LoopDecision::Stop { why: LoopStop::NoImprovement { .. }, loops: 2 } =
//!     decide(&policy, 3, &mut state, 0.71) else { panic!() };
//! ```

use crate::config::KindFlow;

/// A kind's loop settings, with `refine_kind` as a kind id.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoopPolicy {
    /// Loopbacks allowed before the loop limit.
    pub max_loops: u32,
    /// The kind id loopbacks go to instead of the kind itself.
    pub refine_kind: Option<u32>,
    /// Least score gain that keeps the loop going.
    pub min_improvement: Option<f64>,
}

impl LoopPolicy {
    /// The policy of a kind from its config; `kind_id` maps kind names to ids.
    #[must_use]
    pub fn from_config(flow: &KindFlow, kind_id: impl Fn(&str) -> Option<u32>) -> Self {
        Self {
            max_loops: flow.max_loops,
            refine_kind: flow.refine_kind.as_deref().and_then(kind_id),
            min_improvement: flow.min_improvement,
        }
    }
}

/// Loop bookkeeping of one logical task.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LoopState {
    /// Loopbacks taken.
    pub loops: u32,
    /// The last known score (never NaN).
    pub last_score: Option<f64>,
}

/// Why a loop ended without the worker's consent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoopStop {
    /// `max_loops` loopbacks were taken.
    Limit,
    /// The score rose by less than `min_improvement`.
    NoImprovement {
        /// The previous round's score.
        previous: f64,
        /// This round's score.
        score: f64,
    },
}

impl std::fmt::Display for LoopStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Limit => f.write_str("max_loops reached"),
            Self::NoImprovement { previous, score } => write!(
                f,
                "score improved by less than min_improvement ({previous} -> {score})"
            ),
        }
    }
}

/// What to do with a loopback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoopDecision {
    /// Go round again into kind `kind` (the task's own kind or its `refine_kind`).
    Again {
        /// The kind the next round runs as.
        kind: u32,
    },
    /// Stop: deliver the loopback's payload marked as the loop limit.
    Stop {
        /// Why.
        why: LoopStop,
        /// Loopbacks taken before this one.
        loops: u32,
    },
}

/// Decides a loopback of a task of kind `kind` reporting `score` (NaN = none), updating
/// `state` (see the [module documentation](self)).
pub fn decide(policy: &LoopPolicy, kind: u32, state: &mut LoopState, score: f64) -> LoopDecision {
    if state.loops >= policy.max_loops {
        return LoopDecision::Stop {
            why: LoopStop::Limit,
            loops: state.loops,
        };
    }
    let score = (!score.is_nan()).then_some(score);
    if let (Some(min), Some(previous), Some(score)) =
        (policy.min_improvement, state.last_score, score)
    {
        if score - previous < min {
            return LoopDecision::Stop {
                why: LoopStop::NoImprovement { previous, score },
                loops: state.loops,
            };
        }
    }
    state.loops += 1;
    if score.is_some() {
        state.last_score = score;
    }
    LoopDecision::Again {
        kind: policy.refine_kind.unwrap_or(kind),
    }
}
