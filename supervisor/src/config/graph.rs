//! The dependency graph over worker indices: cycles (for validation) and a dependency order
//! (for startup). `deps[i]` lists the workers `i` depends on.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// One cycle per strongly connected component of more than one node, each as the node list
/// `[a, b, c]` meaning `a -> b -> c -> a` (a depends on b ...), starting at the component's
/// smallest index and taking a shortest way back to it. Self-edges are ignored (validation
/// reports them on their own). Cycles come out ordered by their first node.
pub(super) fn cycles(deps: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = deps.len();
    let component = strongly_connected(deps);
    let mut size = vec![0usize; n];
    for &c in &component {
        size[c] += 1;
    }
    let mut seen_component = vec![false; n];
    let mut out = Vec::new();
    for start in 0..n {
        let c = component[start];
        if size[c] < 2 || seen_component[c] {
            continue;
        }
        seen_component[c] = true;
        // Breadth-first search inside the component for the shortest way back to `start`.
        let mut parent: Vec<Option<usize>> = vec![None; n];
        let mut queue = VecDeque::from([start]);
        let mut visited = vec![false; n];
        visited[start] = true;
        let mut last = None;
        'search: while let Some(node) = queue.pop_front() {
            for &next in &deps[node] {
                if component[next] != c {
                    continue;
                }
                if next == start && node != start {
                    last = Some(node);
                    break 'search;
                }
                if !visited[next] {
                    visited[next] = true;
                    parent[next] = Some(node);
                    queue.push_back(next);
                }
            }
        }
        let mut path = Vec::new();
        let mut cursor = last;
        while let Some(node) = cursor {
            path.push(node);
            cursor = parent[node];
        }
        path.reverse();
        out.push(path);
    }
    out
}

/// Tarjan's strongly connected components; returns the component id of each node.
fn strongly_connected(deps: &[Vec<usize>]) -> Vec<usize> {
    struct State<'a> {
        deps: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next_index: usize,
        component: Vec<usize>,
        next_component: usize,
    }
    fn visit(s: &mut State<'_>, v: usize) {
        s.index[v] = Some(s.next_index);
        s.low[v] = s.next_index;
        s.next_index += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in &s.deps[v] {
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                s.component[w] = s.next_component;
                if w == v {
                    break;
                }
            }
            s.next_component += 1;
        }
    }
    let n = deps.len();
    let mut s = State {
        deps,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next_index: 0,
        component: vec![0; n],
        next_component: 0,
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.component
}

/// A dependency order: every node after all it depends on; among nodes that are free at the
/// same time, the smallest index (file order) first. Nodes on a cycle (impossible for a
/// validated config) are appended in index order.
pub(super) fn topo_order(deps: &[Vec<usize>]) -> Vec<usize> {
    let n = deps.len();
    let mut waiting_on = vec![0usize; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (node, list) in deps.iter().enumerate() {
        for &dep in list {
            if dep != node {
                waiting_on[node] += 1;
                dependents[dep].push(node);
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..n)
        .filter(|&i| waiting_on[i] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(n);
    let mut placed = vec![false; n];
    while let Some(Reverse(node)) = ready.pop() {
        order.push(node);
        placed[node] = true;
        for &d in &dependents[node] {
            waiting_on[d] -= 1;
            if waiting_on[d] == 0 {
                ready.push(Reverse(d));
            }
        }
    }
    order.extend((0..n).filter(|&i| !placed[i]));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_cycle_once() {
        // 0 -> 1 -> 2 -> 0, 3 -> 3 (self, ignored), 4 -> 5 -> 4, 6 -> 0.
        let deps = vec![
            vec![1],
            vec![2],
            vec![0],
            vec![3],
            vec![5],
            vec![4],
            vec![0],
        ];
        assert_eq!(cycles(&deps), vec![vec![0, 1, 2], vec![4, 5]]);
    }

    #[test]
    fn shortest_way_back() {
        // 0 -> 1 -> 2 -> 3 -> 0 and 1 -> 0: the short cycle is reported.
        let deps = vec![vec![1], vec![2, 0], vec![3], vec![0]];
        assert_eq!(cycles(&deps), vec![vec![0, 1]]);
    }

    #[test]
    fn acyclic_has_none() {
        let deps = vec![vec![], vec![0], vec![0], vec![1, 2]];
        assert!(cycles(&deps).is_empty());
        assert_eq!(topo_order(&deps), vec![0, 1, 2, 3]);
    }

    #[test]
    fn topo_prefers_file_order() {
        // 0 depends on 2; 1 is free: 1 and 2 are free first, 1 comes first.
        let deps = vec![vec![2], vec![], vec![]];
        assert_eq!(topo_order(&deps), vec![1, 2, 0]);
    }
}
