//! A thread of one's own for blocking work that recurs: a SQLite connection's statements, a
//! run's transforms, the freeing of its pages.
//!
//! Why not `tokio::task::spawn_blocking` for each call: tokio wakes whichever idle thread of its
//! blocking pool waited longest, so a run's recurring work went round half a dozen threads. The
//! allocator (mimalloc) keeps memory per thread, and memory freed by another thread is only
//! taken back when its owner next allocates: with every owner idle most of the time, each held
//! its own copy of a page's worth of memory. `syncline bench` measured 20–30 MiB more resident
//! memory that way, and `mi_free_block_mt` among the hottest functions. One thread per kind of
//! work keeps each working set on one thread, reused page after page.

use std::sync::mpsc;

type Job = Box<dyn FnOnce() + Send>;

/// Runs closures one at a time, in the order given, on a thread of its own. The thread ends
/// when the last clone is dropped and its queue is done.
#[derive(Clone)]
pub struct WorkerThread {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for WorkerThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkerThread")
    }
}

/// Why work given to a [`WorkerThread`] did not return.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The thread could not be started, or is gone.
    #[error("the worker thread is not running")]
    Gone,
    /// The work panicked (the payload, to raise it again where that is wanted).
    #[error("the work panicked: {}", panic_message(.0.as_ref()))]
    Panicked(Box<dyn std::any::Any + Send>),
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload.downcast_ref::<&str>().copied().or_else(|| payload.downcast_ref::<String>().map(String::as_str)).unwrap_or("no message")
}

impl WorkerThread {
    /// Starts the thread, named `name` (as `top` and `perf` show it).
    pub fn start(name: &str) -> Result<WorkerThread, WorkerError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                for job in queue {
                    job();
                }
            })
            .map_err(|_| WorkerError::Gone)?;
        Ok(WorkerThread { jobs })
    }

    /// Runs `work` on the thread and waits for its result, without holding the caller's
    /// thread. A panic in `work` comes back as [`WorkerError::Panicked`], and the thread goes
    /// on. If the caller stops waiting, `work` still runs to its end (as with `spawn_blocking`).
    pub async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, WorkerError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)));
        });
        self.jobs.send(job).map_err(|_| WorkerError::Gone)?;
        result.await.map_err(|_| WorkerError::Gone)?.map_err(WorkerError::Panicked)
    }

    /// Queues `work` without waiting for it (freeing what a page leaves behind).
    pub fn spawn(&self, work: impl FnOnce() + Send + 'static) {
        let job: Job = Box::new(move || {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
        });
        // the thread only ends once every sender is gone, so this cannot fail while `self` lives
        let _ = self.jobs.send(job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Jobs run in order on the one named thread; results and panics come back to the caller,
    /// and the thread goes on after a panic.
    #[tokio::test]
    async fn jobs_run_in_order_on_one_thread() {
        let worker = WorkerThread::start("syncline-test-worker").unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        for i in 0..5 {
            let log = log.clone();
            worker.spawn(move || log.lock().unwrap().push(i));
        }
        let name = worker.run(|| std::thread::current().name().map(str::to_owned)).await.unwrap();
        assert_eq!(name.as_deref(), Some("syncline-test-worker"));
        assert_eq!(*log.lock().unwrap(), vec![0, 1, 2, 3, 4], "queued jobs ran first, in order");
        let panicked = worker.run(|| panic!("boom")).await.unwrap_err();
        assert_eq!(panicked.to_string(), "the work panicked: boom");
        assert_eq!(worker.run(|| 2 + 2).await.unwrap(), 4, "the thread survives a job's panic");
    }
}
