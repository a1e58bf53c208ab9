//! Checks across workers: every dependency names another worker, conditions are satisfiable,
//! and the graph has no cycle (each cycle is printed as a path).

use super::{Checker, Pending};
use crate::config::graph;
use crate::config::model::{Dependency, WorkerConfig};
use crate::spec::{DependencyCondition, RestartPolicy};
use std::collections::HashMap;
use std::ops::Range;

impl Checker<'_> {
    /// Unknown names, self-dependencies, impossible conditions and cycles; fills `depends_on`.
    pub(super) fn dependencies(&mut self, workers: &mut [WorkerConfig], pending: &[Pending]) {
        let index: HashMap<&str, usize> = pending
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.get_ref().as_str(), i))
            .collect();
        let mut known: Vec<&str> = index.keys().copied().collect();
        known.sort_unstable();
        let known = known.join(", ");
        let mut edges: Vec<Vec<usize>> = vec![Vec::new(); pending.len()];
        // For cycle reports: the span of the entry `i -> j`.
        let mut edge_span: HashMap<(usize, usize), Range<usize>> = HashMap::new();
        for (i, p) in pending.iter().enumerate() {
            let me = p.name.get_ref();
            let field = format!("workers.{me}.depends_on");
            for (dep, condition) in &p.deps {
                let d = dep.get_ref();
                let Some(&j) = index.get(d.as_str()) else {
                    self.error(
                        dep.span(),
                        &field,
                        format!("unknown worker {d:?} (known: {known})"),
                    );
                    continue;
                };
                if i == j {
                    self.error(
                        dep.span(),
                        &field,
                        format!("worker {me:?} cannot depend on itself"),
                    );
                    continue;
                }
                if *condition == DependencyCondition::CompletedSuccessfully
                    && workers[j].restart == RestartPolicy::Always
                {
                    self.error(
                        dep.span(),
                        &field,
                        format!(
                            "{d:?} has restart = \"always\", so it never completes: depend on it being \"ready\" \
                             or \"started\", or give it restart = \"on-failure\" or \"never\""
                        ),
                    );
                }
                edges[i].push(j);
                edge_span.insert((i, j), dep.span());
                workers[i].depends_on.push(Dependency {
                    name: d.clone(),
                    condition: *condition,
                });
            }
        }
        for cycle in graph::cycles(&edges) {
            let names: Vec<&str> = cycle
                .iter()
                .map(|&i| pending[i].name.get_ref().as_str())
                .collect();
            let first = cycle[0];
            let span = edge_span
                .get(&(first, cycle[1 % cycle.len()]))
                .cloned()
                .unwrap_or(0..0);
            self.error(
                span,
                format!("workers.{}.depends_on", names[0]),
                format!("dependency cycle: {} -> {}", names.join(" -> "), names[0]),
            );
        }
    }
}
