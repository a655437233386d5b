//! The plans a GPU backend has built, keyed by the graph itself: a graph's structure (ops and
//! their parameters, wiring, shapes, dtypes) compared whole, so two graphs share a plan only when
//! they would run the same kernels on the same buffers. A hash only picks the bucket; a hash
//! collision costs a comparison, never another graph's plan.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use crate::error::Result;
use crate::graph::Graph;

/// At most `max` plans, the least recently used evicted first.
#[derive(Debug)]
pub struct PlanCache<P, S = RandomState> {
    plans: HashMap<Graph, (u64, P), S>,
    runs: u64,
    max: usize,
}

impl<P> PlanCache<P> {
    pub fn new(max: usize) -> Self {
        PlanCache::with_hasher(max, RandomState::new())
    }
}

impl<P, S: BuildHasher> PlanCache<P, S> {
    /// A cache whose keys are bucketed by `hasher` (tests pass one under which every graph
    /// collides).
    pub fn with_hasher(max: usize, hasher: S) -> Self {
        PlanCache { plans: HashMap::with_hasher(hasher), runs: 0, max: max.max(1) }
    }

    /// The plan for `graph`, built by `build` if no equal graph has one.
    pub fn get_or_build(&mut self, graph: &Graph, build: impl FnOnce() -> Result<P>) -> Result<&mut P> {
        self.runs += 1;
        if !self.plans.contains_key(graph) {
            let plan = build()?;
            if self.plans.len() >= self.max
                && let Some(oldest) = self.plans.iter().min_by_key(|(_, (used, _))| *used).map(|(g, _)| g.clone())
            {
                self.plans.remove(&oldest);
            }
            self.plans.insert(graph.clone(), (0, plan));
        }
        let entry = self.plans.get_mut(graph).expect("present or inserted above");
        entry.0 = self.runs;
        Ok(&mut entry.1)
    }

    pub fn len(&self) -> usize {
        self.plans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.plans.is_empty()
    }

    pub fn plans(&self) -> impl Iterator<Item = &P> {
        self.plans.values().map(|(_, p)| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;

    /// Every graph hashes to 0.
    #[derive(Default)]
    struct Collide;
    impl std::hash::Hasher for Collide {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, _: &[u8]) {}
    }

    fn norm(rows: usize, eps: f32) -> Graph {
        let mut g = Graph::new();
        let x = g.input(&[rows, 8], DType::F32);
        let w = g.input(&[8], DType::F32);
        let o = g.rms_norm(x, w, eps).unwrap();
        g.output(o);
        g
    }

    #[test]
    fn colliding_graphs_get_their_own_plans_and_equal_graphs_share_one() {
        let mut c = PlanCache::with_hasher(8, std::hash::BuildHasherDefault::<Collide>::default());
        let mut built = 0;
        // Differ in a shape, in an op's parameter, or not at all (built twice from scratch).
        let graphs = [norm(2, 1e-5), norm(3, 1e-5), norm(2, 1e-6), norm(2, 1e-5)];
        let mut got = Vec::new();
        for (i, g) in graphs.iter().enumerate() {
            got.push(*c.get_or_build(g, || {
                built += 1;
                Ok(i)
            })
            .unwrap());
        }
        assert_eq!(got, [0, 1, 2, 0]);
        assert_eq!((built, c.len()), (3, 3));
    }

    #[test]
    fn the_least_recently_used_plan_goes_first() {
        let mut c = PlanCache::new(2);
        let (a, b, d) = (norm(1, 1e-5), norm(2, 1e-5), norm(3, 1e-5));
        c.get_or_build(&a, || Ok('a')).unwrap();
        c.get_or_build(&b, || Ok('b')).unwrap();
        c.get_or_build(&a, || Ok('x')).unwrap();
        c.get_or_build(&d, || Ok('d')).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(*c.get_or_build(&a, || Ok('x')).unwrap(), 'a', "a was used last, so b went");
        assert_eq!(*c.get_or_build(&b, || Ok('B')).unwrap(), 'B', "b was evicted and rebuilt");
    }
}
