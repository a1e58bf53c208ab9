//! The simulator's measurements: the result and the time to move load off a worker.

use super::{secs, Engine};
use crate::adapt::sim::{SimResult, TaskRecord, KIND};
use std::time::Duration;

impl Engine<'_> {
    pub(super) fn finish(self) -> SimResult {
        let adapt_s = self.adapt_s();
        let phases = self
            .cfg
            .phases
            .iter()
            .zip(&self.phase_bounds)
            .map(|(p, &(s, e))| (p.name.clone(), secs(s), secs(e)))
            .collect();
        let tasks: Vec<TaskRecord> = self
            .tasks
            .iter()
            .map(|t| TaskRecord {
                class: t.class,
                phase: t.phase,
                latency: t.finished_at.map(|f| Duration::from_nanos(f - t.arrival)),
                ok: t.ok,
                dead_lettered: t.dead,
                poison: t.poison,
                attempts: t.attempts,
                unit: t.unit,
                ahead: t.ahead,
                rtt: t
                    .finished_at
                    .map(|f| Duration::from_nanos(f.saturating_sub(t.dispatched_at))),
            })
            .collect();
        let lost = tasks.iter().filter(|t| t.latency.is_none()).count() as u64;
        let dead_lettered = tasks.iter().filter(|t| t.dead_lettered).count() as u64;
        let windows = (0..self.workers.len())
            .map(|u| self.router.worker(u).map_or(0, |w| w.window))
            .collect();
        let params = self
            .workers
            .iter()
            .enumerate()
            .filter(|(_, w)| w.present)
            .map(|(u, w)| (u, w.params.clone()))
            .collect();
        let (batch, timeout) = match &self.controller {
            Some(c) => c
                .kind_settings(KIND)
                .map_or((None, None), |(b, t)| (Some(b), t)),
            None => (None, None),
        };
        SimResult {
            phases,
            deadline: self.cfg.workload.deadline,
            lost,
            dead_lettered,
            poison: u64::from(self.cfg.workload.poison),
            crashes: self.crashes,
            retries: self.retries,
            adapt_s,
            decisions: self.decisions,
            actions: self.actions,
            windows,
            batch,
            timeout: timeout.or(self.timeout),
            params,
            replicas: self.replicas,
            decision_log: self.decision_log,
            adjustments: self.adjustments,
            proposal_errors: self.proposal_errors,
            end_s: secs(self.now),
            tasks,
        }
    }

    /// See [`SimResult::adapt_s`].
    fn adapt_s(&self) -> Option<f64> {
        let (unit, name) = self.cfg.watch.as_ref()?;
        let i = self.cfg.phases.iter().position(|p| &p.name == name)?;
        let (start, end) = self.phase_bounds[i];
        // The watched worker's capacity share in that phase.
        let share = self.cfg.capacity_share(i, *unit);
        let second = 1_000_000_000;
        let step = 50_000_000;
        let max_outstanding = |a: u64, b: u64| -> u32 {
            let tl = &self.watch_outstanding;
            let first = tl.partition_point(|&(t, _)| t <= a).saturating_sub(1);
            tl[first..]
                .iter()
                .take_while(|&&(t, _)| t <= b)
                .map(|&(_, n)| n)
                .max()
                .unwrap_or(0)
        };
        let mut s = start;
        while s + second <= end {
            let lo = self.dispatches.partition_point(|&(t, _)| t < s);
            let hi = self.dispatches.partition_point(|&(t, _)| t < s + second);
            let window = &self.dispatches[lo..hi];
            let mine = window.iter().filter(|&&(_, u)| u == *unit).count();
            #[allow(clippy::cast_precision_loss, reason = "dispatch counts")]
            let ok_share =
                window.is_empty() || (mine as f64) <= 1.5 * share * window.len() as f64 + 1.0;
            if ok_share && max_outstanding(s, s + second) <= 2 {
                return Some(secs(s - start));
            }
            s += step;
        }
        None
    }
}
