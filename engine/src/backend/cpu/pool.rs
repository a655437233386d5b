//! The CPU backend's worker pool: `threads − 1` persistent workers plus the calling thread run
//! each op's tasks, with no per-op thread hand-off.
//!
//! Why not rayon per op: a decode step is a few hundred small ops of 20–100 µs each, and
//! rayon's workers go to sleep between them; waking them through the kernel cost about 15% of
//! a SmolLM2 decode step (`perf`: futex wake-ups, `finish_task_switch`). Here idle workers spin
//! for a short while ([`SPIN`]) watching for the next op, then sleep on a condition variable,
//! so they catch back-to-back ops without a system call and cost nothing when the engine idles.
//!
//! Why tasks are claimed, not assigned: every thread (caller included) takes the next task
//! index from one atomic counter until none is left, so a worker the OS has descheduled (another
//! process busy on its core) simply takes fewer tasks instead of holding up the op. llama.cpp
//! splits work statically and spins hard; with one core busy elsewhere its decode fell from
//! 105 to 3.6 tok/s (issue 17). The caller only waits for tasks that a worker has already
//! started.
//!
//! Protocol: `state` packs (generation, task count, next task) in one `AtomicU64`, so a claim is
//! one compare-and-swap that also proves the job it claims from is the current one. The job
//! pointer is written before the generation is bumped and is only read after a successful
//! claim; the caller returns only when `done` reaches the task count, so a job outlives every
//! claim made on it.

use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker spins for the next op before it sleeps: enough to bridge the gap
/// between two ops of one forward pass. Short, because spinning on a core shared with another
/// busy process spends this process's fair share of it, and the scheduler then runs the other
/// process while our worker holds a task. SmolLM2 decode, 2 threads, tok/s quiet / with a busy
/// loop on one core: 200 µs 180 / 82, 50 µs 183 / 92, 10 µs 179 / 128, 0 (sleep at once) 132 / 116.
const SPIN: Duration = Duration::from_micros(10);

const TASK_BITS: u32 = 24;
const TASK_MASK: u64 = (1 << TASK_BITS) - 1;
/// Largest task count of one `run` (2^24 − 1); callers group work into far fewer tasks.
pub const MAX_TASKS: usize = TASK_MASK as usize;

fn pack(generation: u64, tasks: u64, next: u64) -> u64 {
    (generation << (2 * TASK_BITS)) | (tasks << TASK_BITS) | next
}

fn unpack(s: u64) -> (u64, u64, u64) {
    (s >> (2 * TASK_BITS), (s >> TASK_BITS) & TASK_MASK, s & TASK_MASK)
}

/// A job as the workers see it: a type-erased `&(dyn Fn(usize) + Sync)`.
type Job = dyn Fn(usize) + Sync;

struct Shared {
    state: AtomicU64,
    /// Points at a `&Job` on the caller's stack, valid while its `run` lasts.
    job: AtomicPtr<&'static Job>,
    /// Tasks of the current job that have finished.
    done: AtomicUsize,
    sleep: Mutex<Sleep>,
    wake: Condvar,
}

struct Sleep {
    sleepers: usize,
    shutdown: bool,
}

pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    /// A pool that runs tasks on `threads` threads: the caller of [`run`](Self::run) and
    /// `threads − 1` workers. On wasm (no threads) everything runs on the caller.
    pub fn new(threads: usize) -> Pool {
        let shared = Arc::new(Shared {
            state: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            done: AtomicUsize::new(0),
            sleep: Mutex::new(Sleep { sleepers: 0, shutdown: false }),
            wake: Condvar::new(),
        });
        let spawn = if cfg!(target_arch = "wasm32") { 0 } else { threads.max(1) - 1 };
        let workers = (0..spawn)
            .filter_map(|i| {
                let s = shared.clone();
                // A worker that cannot be spawned only makes the pool smaller.
                std::thread::Builder::new().name(format!("forge-cpu-{i}")).spawn(move || worker(&s)).ok()
            })
            .collect();
        Pool { shared, workers }
    }

    /// Threads that run tasks, the caller included.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `f(0) … f(tasks − 1)`, each exactly once, spread over the pool; returns when all
    /// have finished. `tasks` ≤ [`MAX_TASKS`].
    pub fn run<'f>(&self, tasks: usize, f: &'f (dyn Fn(usize) + Sync + 'f)) {
        assert!(tasks <= MAX_TASKS, "{tasks} tasks in one run");
        if tasks == 0 {
            return;
        }
        if self.workers.is_empty() || tasks == 1 {
            (0..tasks).for_each(f);
            return;
        }
        let sh = &*self.shared;
        // SAFETY (lifetime erasure): the pointer is dereferenced only by a thread holding a
        // successful claim on this generation, and this function does not return before every
        // claimed task has finished (`done == tasks` below), so `f` outlives every use.
        let f_static: &'static Job = unsafe { std::mem::transmute::<&'f (dyn Fn(usize) + Sync + 'f), &'static Job>(f) };
        let slot: &&'static Job = &f_static;
        sh.job.store(slot as *const _ as *mut _, SeqCst);
        sh.done.store(0, SeqCst);
        let (generation, _, _) = unpack(sh.state.load(SeqCst));
        let generation = (generation + 1) & ((1 << (64 - 2 * TASK_BITS)) - 1);
        sh.state.store(pack(generation, tasks as u64, 0), SeqCst);
        {
            let sleep = sh.sleep.lock().unwrap_or_else(|e| e.into_inner());
            if sleep.sleepers > 0 {
                sh.wake.notify_all();
            }
        }
        work(sh, generation);
        let mut spins = 0u32;
        while sh.done.load(SeqCst) < tasks {
            // A task is running on a worker; it holds no lock, so waiting is brief unless the
            // OS has descheduled that worker, when yielding lets it run again sooner.
            spins += 1;
            if spins < 1 << 12 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// Claims and runs tasks of `generation` until none is left.
fn work(sh: &Shared, generation: u64) {
    loop {
        let s = sh.state.load(SeqCst);
        let (g, tasks, next) = unpack(s);
        if g != generation || next >= tasks {
            return;
        }
        if sh.state.compare_exchange_weak(s, s + 1, SeqCst, SeqCst).is_err() {
            continue;
        }
        // SAFETY: the claim succeeded, so this generation's `run` is still waiting for this
        // task and its `job` slot is live (see `Pool::run`).
        let f: &Job = unsafe { *sh.job.load(SeqCst) };
        f(next as usize);
        sh.done.fetch_add(1, SeqCst);
    }
}

fn worker(sh: &Shared) {
    // Generation 0 is the idle pool's; reading `state` here instead could miss a job published
    // before this thread first ran.
    let mut seen = 0;
    loop {
        let start = Instant::now();
        let mut i = 0u32;
        // Spin for the next generation, then sleep until `run` or `drop` wakes us.
        let generation = loop {
            let g = unpack(sh.state.load(SeqCst)).0;
            if g != seen {
                break g;
            }
            i += 1;
            if i % 64 == 0 && start.elapsed() > SPIN {
                let mut sleep = sh.sleep.lock().unwrap_or_else(|e| e.into_inner());
                sleep.sleepers += 1;
                loop {
                    if sleep.shutdown {
                        return;
                    }
                    let g = unpack(sh.state.load(SeqCst)).0;
                    if g != seen {
                        break;
                    }
                    sleep = sh.wake.wait(sleep).unwrap_or_else(|e| e.into_inner());
                }
                sleep.sleepers -= 1;
                drop(sleep);
                i = 0;
                continue;
            }
            std::hint::spin_loop();
        };
        seen = generation;
        work(sh, generation);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        {
            let mut sleep = self.shared.sleep.lock().unwrap_or_else(|e| e.into_inner());
            sleep.shutdown = true;
            self.shared.wake.notify_all();
        }
        // Spinning workers notice shutdown once they fall asleep, within SPIN.
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// A mutable slice that the tasks of one [`Pool::run`] write in disjoint parts.
pub struct SharedSlice<'a, T> {
    ptr: *mut T,
    len: usize,
    _borrow: std::marker::PhantomData<&'a mut [T]>,
}

// SAFETY: it hands out `&mut` to disjoint parts only (the callers' contract), like
// `split_at_mut` across threads; T itself must be sendable.
unsafe impl<T: Send> Sync for SharedSlice<'_, T> {}

impl<'a, T> SharedSlice<'a, T> {
    pub fn new(s: &'a mut [T]) -> Self {
        SharedSlice { ptr: s.as_mut_ptr(), len: s.len(), _borrow: std::marker::PhantomData }
    }

    /// `len` elements from `start` (bounds are checked).
    ///
    /// # Safety
    /// No two slices alive at the same time may overlap.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, start: usize, len: usize) -> &'a mut [T] {
        assert!(start <= self.len && len <= self.len - start, "{start}+{len} outside {}", self.len);
        // SAFETY: in bounds (checked above); exclusive by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_task_runs_exactly_once_across_many_runs() {
        for threads in [1, 2, 3, 5] {
            let pool = Pool::new(threads);
            for tasks in [0usize, 1, 2, 7, 64, 1000] {
                let hits: Vec<AtomicU32> = (0..tasks).map(|_| AtomicU32::new(0)).collect();
                pool.run(tasks, &|i| {
                    hits[i].fetch_add(1, SeqCst);
                });
                assert!(hits.iter().all(|h| h.load(SeqCst) == 1), "{threads} threads, {tasks} tasks");
            }
        }
    }

    /// Back-to-back runs with sleeps between some of them: workers that fell asleep are woken,
    /// and a late worker never runs a task of a finished job (each job checks its own counts).
    #[test]
    fn workers_wake_after_sleeping_and_never_run_stale_jobs() {
        let pool = Pool::new(3);
        assert_eq!(pool.threads(), 3);
        for round in 0..200u32 {
            if round % 50 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
            let sum = AtomicU64::new(0);
            let n = 1 + (round as usize * 7) % 97;
            pool.run(n, &|i| {
                sum.fetch_add(i as u64 + round as u64, SeqCst);
            });
            let want: u64 = (0..n as u64).map(|i| i + round as u64).sum();
            assert_eq!(sum.load(SeqCst), want, "round {round}");
        }
    }

    #[test]
    fn workers_take_part() {
        let pool = Pool::new(2);
        let ids = Mutex::new(std::collections::HashSet::new());
        // Tasks long enough that the worker wakes and claims some of them.
        pool.run(64, &|_| {
            std::thread::sleep(Duration::from_micros(500));
            ids.lock().unwrap().insert(std::thread::current().id());
        });
        assert_eq!(ids.lock().unwrap().len(), 2);
    }
}
