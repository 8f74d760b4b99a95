//! The runtimes isolated queries run on ([`crate::engine::Engine::isolated`]),
//! kept between queries.
//!
//! Why kept: a runtime's workers are threads, and the kernel's proc
//! connector tells every listener on the machine of each thread's start
//! and end (`process_events` readers, serve's own listeners, every other
//! serve on the host). A runtime per query meant two or three of those a
//! query, and a counter window every second is a query: with a hundred
//! serves on one kernel (the fleet rig, BENCHMARKS.md) they cost 1.2 cores
//! while idle.
//!
//! What stays as it was: a runtime runs one query at a time; its threads
//! have the query's nice value (a runtime is kept, and taken again, only at
//! the nice value it was made with); and a runtime that still has a task
//! of its last query alive when the next query would take it (a producer
//! stuck in a call, a task that never yields) is not handed to that query:
//! it is ended, as every runtime was after its query, and a new one made.
//! Why judged at the next query and not as the last one ends: tasks that
//! have just finished or were just aborted (the run's end aborts its
//! DataFusion tasks) are still counted alive for a moment, and the query
//! thread must not wait for them (it holds the front end's slot).

use std::sync::Mutex;

use anyhow::Context as _;
use tokio::runtime::Runtime;

/// Idle runtimes kept for each nice value: a scrape and a counter window,
/// or two clients' statements, start one after the other without new
/// threads. More at once make runtimes of their own, ended after use.
const KEPT_PER_NICE: usize = 2;

/// Idle runtimes and the nice value of their threads.
static IDLE: Mutex<Vec<(i32, Runtime)>> = Mutex::new(Vec::new());

/// A runtime lent to one query. Dropping it gives it back ([`give_back`]),
/// however the query ended (a panic, a thread that could not start): a
/// runtime is never dropped whole, which would block, and panics inside
/// an async context.
pub(crate) struct Lent {
    nice: i32,
    runtime: Option<Runtime>,
}

impl Lent {
    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime.as_ref().expect("a lent runtime is held until dropped").handle()
    }

    pub(crate) fn nice(&self) -> i32 {
        self.nice
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            give_back(self.nice, runtime);
        }
    }
}

/// A runtime whose threads run at `nice`, for one query: a kept one, or a
/// new one.
pub(crate) fn take(nice: i32) -> crate::Result<Lent> {
    let kept = IDLE.lock().ok().map(|mut idle| {
        let (mine, others) = idle.drain(..).partition::<Vec<_>, _>(|(n, _)| *n == nice);
        *idle = others;
        mine
    });
    let mut free = None;
    for (_, runtime) in kept.into_iter().flatten() {
        match free {
            None if runtime.metrics().num_alive_tasks() == 0 => free = Some(runtime),
            None => runtime.shutdown_background(),
            Some(_) => give_back(nice, runtime),
        }
    }
    let runtime = match free {
        Some(runtime) => runtime,
        None => build(nice)?,
    };
    Ok(Lent { nice, runtime: Some(runtime) })
}

/// The query on `runtime` has ended: keep the runtime for the next query
/// at `nice` if fewer than [`KEPT_PER_NICE`] are kept; else end it in the
/// background (tasks still queued are dropped; one inside a blocking call
/// ends on its own when it sees its sink closed). Never blocks.
fn give_back(nice: i32, runtime: Runtime) {
    if let Ok(mut idle) = IDLE.lock() {
        if idle.iter().filter(|(n, _)| *n == nice).count() < KEPT_PER_NICE {
            idle.push((nice, runtime));
            return;
        }
    }
    runtime.shutdown_background();
}

/// A query's runtime: as many workers as the machine has cores (up to 4),
/// so a run keeps DataFusion's parallelism; the stack the main runtime's
/// workers have; every thread of it at `nice`.
fn build(nice: i32) -> crate::Result<Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .thread_name("sockql-query-worker")
        .thread_stack_size(16 << 20)
        .on_thread_start(move || super::priority::nice_this_thread(nice))
        .enable_all()
        .build()
        .context("cannot start the query's runtime")
        .map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// The thread ids of `lent`'s workers, as the kernel names them: one
    /// task per worker, each holding its worker at a barrier until every
    /// worker has one.
    fn worker_tids(lent: &Lent) -> Vec<i32> {
        let runtime = lent.handle();
        let n = runtime.metrics().num_workers();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let barrier = barrier.clone();
                runtime.spawn(async move {
                    barrier.wait();
                    nix::unistd::gettid().as_raw()
                })
            })
            .collect();
        let mut tids: Vec<i32> = tasks.into_iter().map(|t| runtime.block_on(t).unwrap()).collect();
        tids.sort_unstable();
        tids
    }

    /// Wait until `lent` counts no task alive (a finished task is counted
    /// for a moment after it finished).
    fn settle(lent: &Lent) {
        let t0 = Instant::now();
        while lent.handle().metrics().num_alive_tasks() > 0 {
            assert!(t0.elapsed() < Duration::from_secs(10), "tasks still alive after 10 s");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn kept_at(nice: i32) -> usize {
        IDLE.lock().unwrap().iter().filter(|(n, _)| *n == nice).count()
    }

    // One test: the kept runtimes are process-wide, and tests run in
    // parallel threads of one process. Nice values no other test uses.
    #[test]
    fn an_idle_runtime_is_lent_again_at_its_nice_value_and_one_with_a_task_alive_is_not() {
        // Lent again: the same worker threads answer the next query.
        let first = take(3).unwrap();
        let tids = worker_tids(&first);
        settle(&first);
        drop(first);
        let again = take(3).unwrap();
        assert_eq!(worker_tids(&again), tids, "a kept runtime is lent again");
        // Not at another nice value.
        let other = take(4).unwrap();
        assert!(worker_tids(&other).iter().all(|t| !tids.contains(t)), "nice 4 got nice 3's runtime");
        drop(again);
        drop(other);

        // A runtime left with a task alive is not lent again: the next
        // query gets new threads, and the old runtime is ended (its task
        // dropped, and with it `tx`).
        let busy = take(5).unwrap();
        let busy_tids = worker_tids(&busy);
        settle(&busy);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        busy.handle().spawn(async move {
            let _held = tx;
            std::future::pending::<()>().await
        });
        drop(busy);
        let next = take(5).unwrap();
        assert!(worker_tids(&next).iter().all(|t| !busy_tids.contains(t)), "a runtime with a task alive was lent");
        let ended = rx.recv_timeout(Duration::from_secs(10));
        assert_eq!(ended, Err(std::sync::mpsc::RecvTimeoutError::Disconnected), "its task was not dropped");
        drop(next);

        // At most KEPT_PER_NICE idle at one nice value.
        let many: Vec<Lent> = (0..KEPT_PER_NICE + 1).map(|_| take(6).unwrap()).collect();
        assert_eq!(kept_at(6), 0);
        drop(many);
        assert_eq!(kept_at(6), KEPT_PER_NICE);
    }
}
