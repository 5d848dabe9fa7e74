//! A fixed set of signing threads fed from one queue.
//!
//! Signing blocks: a PKCS#11 call waits for the token, and even a software ECDSA signature is
//! tens of microseconds of CPU. Tokio's `spawn_blocking` would run each request on its own pooled
//! thread; under load that is one thread wake-up and two context switches per token, which
//! profiling showed cost more CPU than the signature itself on a loaded core. Here a few
//! long-lived threads (as many as the key backend can sign in parallel) take jobs back to back,
//! so a busy TSA switches threads per batch rather than per token.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// The signing threads.
pub(crate) struct SigningPool {
    jobs: Mutex<Sender<Job>>,
}

impl SigningPool {
    /// Starts `threads` (at least one) threads named `pkid-tsa-sign`.
    pub(crate) fn start(threads: usize) -> std::io::Result<Self> {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name("pkid-tsa-sign".into())
                .spawn(move || work(&rx))?;
        }
        Ok(Self {
            jobs: Mutex::new(tx),
        })
    }

    /// Queues `job`; false if the threads are gone.
    pub(crate) fn submit(&self, job: Job) -> bool {
        self.jobs
            .lock()
            .map(|tx| tx.send(job).is_ok())
            .unwrap_or(false)
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next job, never while running one.
        let job = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return, // the pool was dropped
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_on_the_pool_threads() {
        let pool = SigningPool::start(2).expect("threads");
        let (tx, rx) = channel();
        for i in 0..100 {
            let tx = tx.clone();
            assert!(pool.submit(Box::new(move || {
                let name = std::thread::current().name().map(str::to_string);
                let _ = tx.send((i, name));
            })));
        }
        let mut seen: Vec<_> = (0..100).map(|_| rx.recv().expect("result")).collect();
        seen.sort();
        assert!(seen
            .iter()
            .enumerate()
            .all(|(i, (n, name))| *n == i && name.as_deref() == Some("pkid-tsa-sign")));
    }
}
