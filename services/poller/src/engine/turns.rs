//! Which of the loop's jobs runs next: telemetry, the safety-net poll and change
//! notifications are each noted when due and served in turn, so that one due again the moment
//! it ends (a cycle longer than its interval, notifications that never stop) cannot starve the
//! others.

/// A job of the engine's loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Job {
    Telemetry,
    Poll,
    Changes,
}

const JOBS: [Job; 3] = [Job::Telemetry, Job::Poll, Job::Changes];

/// The jobs due, and whose turn is next.
#[derive(Debug, Default)]
pub(super) struct Turns {
    due: [bool; 3],
    next: usize,
}

impl Turns {
    pub(super) fn is_due(&self, job: Job) -> bool {
        self.due[job as usize]
    }

    pub(super) fn note(&mut self, job: Job) {
        self.due[job as usize] = true;
    }

    pub(super) fn any_due(&self) -> bool {
        self.due.contains(&true)
    }

    /// The first due job from the one after the last served, no longer due.
    pub(super) fn take(&mut self) -> Option<Job> {
        let i = (0..JOBS.len())
            .map(|k| (self.next + k) % JOBS.len())
            .find(|&i| self.due[i])?;
        self.due[i] = false;
        self.next = i + 1;
        Some(JOBS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_due_again_at_once_take_turns_with_the_others() {
        let mut turns = Turns::default();
        let mut served = Vec::new();
        for _ in 0..6 {
            // Telemetry and changes are due again the moment they end; the poll once.
            turns.note(Job::Telemetry);
            turns.note(Job::Changes);
            if served.is_empty() {
                turns.note(Job::Poll);
            }
            served.push(turns.take().expect("a job due"));
        }
        use Job::*;
        assert_eq!(
            served,
            [Telemetry, Poll, Changes, Telemetry, Changes, Telemetry]
        );
        assert!(turns.any_due());
    }

    #[test]
    fn nothing_due_is_nothing_to_take() {
        let mut turns = Turns::default();
        assert_eq!(turns.take(), None);
        turns.note(Job::Poll);
        assert!(turns.is_due(Job::Poll));
        assert_eq!(turns.take(), Some(Job::Poll));
        assert!(!turns.any_due());
    }
}
