//! Second looks: a subject read again a moment and a while after its read (its first, or
//! after a NATS reconnect).
//!
//! The read proves the SUB is in place on the server this instance is connected to, but a
//! message the server sent on before it had the SUB (or, in a cluster, one published at another
//! server before that one learned of the subscription) can be stored only after the read
//! answered, once the stream's replicas have it: neither brought it. A later look finds it
//! stored: moments later as a rule, seconds later on a busy cluster.
//!
//! Subjects wait in one queue per look, in the order they are due, by name (a subject whose
//! last subscriber left meanwhile is skipped, and holds nothing of its topic); one task per
//! gateway reads them when due. Each queue holds at most [`MAX_WAITING`] subjects: past that,
//! the oldest is dropped.

use std::collections::VecDeque;
use std::time::Duration;

use parking_lot::Mutex;
use pulse_proto::Subject;
use tokio::sync::Notify;
use tokio::time::Instant;

/// When, after a subject's read, it is read again.
pub(super) const LOOKS_AGAIN: [Duration; 2] = [Duration::from_millis(500), Duration::from_secs(5)];

/// Subjects waiting for one look, at most: a few seconds of subscribes at a rate far above
/// what one gateway takes.
const MAX_WAITING: usize = 100_000;

/// Room kept in an empty queue.
const KEPT_CAPACITY: usize = 1024;

/// The subjects waiting for their looks.
#[derive(Default)]
pub(super) struct Looks {
    state: Mutex<State>,
    wake: Notify,
}

#[derive(Default)]
struct State {
    /// Per look of [`LOOKS_AGAIN`], the subjects it is due for, in the order they are due.
    waiting: [VecDeque<(Instant, Subject)>; LOOKS_AGAIN.len()],
    /// The gateway is gone: nothing more is due.
    closed: bool,
}

impl Looks {
    /// Schedules `subjects`' looks, counted from now.
    pub(super) fn schedule(&self, subjects: impl IntoIterator<Item = Subject>) {
        let now = Instant::now();
        let mut state = self.state.lock();
        for subject in subjects {
            for (queue, after) in state.waiting.iter_mut().zip(LOOKS_AGAIN) {
                if queue.len() == MAX_WAITING {
                    queue.pop_front();
                }
                queue.push_back((now + after, subject.clone()));
            }
        }
        drop(state);
        self.wake.notify_one();
    }

    /// Ends [`Self::due`] for good.
    pub(super) fn close(&self) {
        self.state.lock().closed = true;
        self.wake.notify_one();
    }

    /// Waits until looks are due and returns their subjects; `None` once closed.
    pub(super) async fn due(&self) -> Option<Vec<Subject>> {
        loop {
            let next = {
                let mut state = self.state.lock();
                if state.closed {
                    return None;
                }
                let now = Instant::now();
                let mut due = Vec::new();
                for queue in &mut state.waiting {
                    while queue.front().is_some_and(|(at, _)| *at <= now) {
                        due.extend(queue.pop_front().map(|(_, subject)| subject));
                    }
                    // What a burst of subscribes grew is given back once it is through.
                    if queue.is_empty() && queue.capacity() > KEPT_CAPACITY {
                        queue.shrink_to(KEPT_CAPACITY);
                    }
                }
                if !due.is_empty() {
                    due.sort_unstable();
                    due.dedup();
                    return Some(due);
                }
                state
                    .waiting
                    .iter()
                    .filter_map(|queue| queue.front().map(|(at, _)| *at))
                    .min()
            };
            match next {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = self.wake.notified() => {}
                    }
                }
                None => self.wake.notified().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(tenant: &str) -> Subject {
        Subject::Alerts(pulse_proto::TenantId::parse(tenant).unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn each_subject_is_due_once_per_look_and_not_before() {
        let looks = Looks::default();
        let started = Instant::now();
        looks.schedule([subject("a"), subject("b")]);
        let first = looks.due().await.unwrap();
        assert_eq!(first, vec![subject("a"), subject("b")]);
        assert_eq!(started.elapsed(), LOOKS_AGAIN[0]);
        looks.schedule([subject("c")]);
        let second = looks.due().await.unwrap();
        assert_eq!(second, vec![subject("c")]);
        assert_eq!(started.elapsed(), 2 * LOOKS_AGAIN[0]);
        let third = looks.due().await.unwrap();
        assert_eq!(third, vec![subject("a"), subject("b")]);
        assert_eq!(started.elapsed(), LOOKS_AGAIN[1]);
        looks.close();
        assert_eq!(looks.due().await, None);
    }

    #[test]
    fn a_full_queue_drops_its_oldest() {
        let looks = Looks::default();
        let many: Vec<Subject> = (0..=MAX_WAITING)
            .map(|n| subject(&format!("t{n}")))
            .collect();
        looks.schedule(many);
        let state = looks.state.lock();
        assert_eq!(state.waiting[0].len(), MAX_WAITING);
        assert_eq!(
            state.waiting[0].front().map(|(_, s)| s.clone()),
            Some(subject("t1"))
        );
    }
}
