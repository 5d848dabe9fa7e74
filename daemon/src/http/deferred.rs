//! A timeout armed only for a future that is still pending on its second consecutive poll.
//!
//! Most of what the status plane waits for is ready by the next poll: a request body that
//! hyper hands over in the same task wake-up as its head, an OCSP answer made from a remembered
//! form. Arming a tokio timer for each of them (an allocation, a clock read, a timer-wheel
//! entry and its removal) cost more than such an answer itself (`docs/performance.md`, "The
//! status-plane mends"). So the first `Pending` only asks the task to be polled again
//! (`wake_by_ref`: on hyper's HTTP/1 connections the body channel wakes the same task at that
//! moment anyway, so the two wake-ups are one), and the timer is armed at the second: a future
//! that really waits is still bounded, from a moment later than its start by one poll.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

/// The timeout of one wait (see the module's documentation).
pub(crate) struct DeferredTimeout {
    timeout: Duration,
    stage: Stage,
}

/// How far a [`DeferredTimeout`] has got.
enum Stage {
    /// The guarded future has not been pending yet (or made progress since, for
    /// [`DeferredTimeout::progressed`]).
    Unarmed,
    /// Pending once: a second poll was asked for.
    Asked,
    /// Pending twice: the timer runs.
    Armed(Pin<Box<Sleep>>),
}

impl DeferredTimeout {
    /// A timeout of `timeout`, not armed yet.
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            stage: Stage::Unarmed,
        }
    }

    /// Called when the guarded future returned `Pending`: `Ready` once the timeout has passed.
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.stage {
            Stage::Unarmed => {
                self.stage = Stage::Asked;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Stage::Asked => {
                let mut sleep = Box::pin(tokio::time::sleep(self.timeout));
                let polled = sleep.as_mut().poll(cx);
                self.stage = Stage::Armed(sleep);
                polled
            }
            Stage::Armed(sleep) => sleep.as_mut().poll(cx),
        }
    }

    /// The guarded wait made progress (a body frame arrived): the next silence is timed
    /// afresh.
    pub(crate) fn progressed(&mut self) {
        if !matches!(self.stage, Stage::Unarmed) {
            self.stage = Stage::Unarmed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DeferredTimeout;
    use std::future::poll_fn;
    use std::task::Poll;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_wait_is_bounded_from_its_second_poll_and_progress_restarts_it() {
        let limit = Duration::from_secs(10);
        let mut t = DeferredTimeout::new(limit);
        let start = tokio::time::Instant::now();
        // Nothing else wakes this task: the first Pending's own wake-up brings the second
        // poll, which arms the timer; it fires at the limit.
        let mut polls = 0;
        poll_fn(|cx| {
            polls += 1;
            t.poll_expired(cx)
        })
        .await;
        assert_eq!(start.elapsed(), limit);
        assert_eq!(polls, 3, "asked, armed, fired");
        t.progressed();
        let again = tokio::time::Instant::now();
        poll_fn(|cx| t.poll_expired(cx)).await;
        assert_eq!(again.elapsed(), limit, "timed afresh after progress");
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_over_by_the_second_poll_never_arms_a_timer() {
        let mut t = DeferredTimeout::new(Duration::from_secs(10));
        let mut polls = 0;
        let done = poll_fn(|cx| {
            polls += 1;
            if polls == 2 {
                return Poll::Ready(true);
            }
            t.poll_expired(cx).map(|()| false)
        })
        .await;
        assert!(done);
        assert!(matches!(t.stage, super::Stage::Asked), "no timer was made");
    }
}
