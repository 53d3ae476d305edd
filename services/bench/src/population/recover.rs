//! Getting a client back after its connection ends: at once on the same gateway in a storm,
//! or, on an events topic, on the next gateway resuming from the last `seq` it saw.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{ClientPlan, Control, Dial, Shared, Tally, establish, establish_with};
use crate::client::{self, ClientError, Ws};

/// Storm: sets the client up again at once, retrying (with a short random pause) until the
/// connect timeout passes.
pub(super) async fn reconnect(
    plan: &ClientPlan,
    dial: &Dial,
    control: &Control,
    tally: &mut Tally,
    shared: &Shared,
    cut_at: Instant,
) -> Option<Ws> {
    let who = plan.index;
    let deadline = cut_at + dial.connect_timeout;
    loop {
        let attempt = tokio::select! {
            r = establish(plan, dial, |t| tally.on_text(shared, who, t)) => r,
            () = control.stop.cancelled() => return None,
        };
        match attempt {
            Ok((ws, _)) => {
                let took = cut_at.elapsed();
                shared.reconnect.record(who, took.as_micros() as u64);
                shared
                    .last_reconnect_ns
                    .fetch_max(took.as_nanos() as u64, Ordering::Relaxed);
                shared.reconnected.fetch_add(1, Ordering::Relaxed);
                return Some(ws);
            }
            Err(e) => {
                if !retry_until(deadline, &e, shared, &shared.reconnect_failed).await {
                    return None;
                }
            }
        }
    }
}

/// Events: subscribes again on the next gateway of `dial.failover` (its own last), with
/// `since` set to the last `seq` the client saw, trying each in turn (with a short random
/// pause) until the connect timeout passes. `drained`: the gateway closed the connection with
/// 1012, as it does when it drains.
pub(super) async fn resume(
    plan: &mut ClientPlan,
    dial: &Dial,
    control: &Control,
    tally: &mut Tally,
    shared: &Shared,
    drained: bool,
) -> Option<Ws> {
    shared.lost.fetch_add(1, Ordering::Relaxed);
    if drained {
        shared.lost_drained.fetch_add(1, Ordering::Relaxed);
    }
    let own = dial.failover.iter().position(|t| t.url == plan.target.url);
    tally.lost(own.unwrap_or(usize::MAX), drained);
    let who = plan.index;
    let topic = plan.topic.clone()?;
    let deadline = Instant::now() + dial.connect_timeout;
    let gateways = dial.failover.len();
    let mut next = own.map_or(0, |i| i + 1);
    loop {
        plan.target = dial.failover[next % gateways].clone();
        next += 1;
        let request = [client::subscribe_events(&topic, Some(tally.last[0]))];
        let attempt = tokio::select! {
            r = establish_with(plan, dial, &request, |t| tally.on_text(shared, who, t)) => r,
            () = control.stop.cancelled() => return None,
        };
        match attempt {
            Ok((ws, _)) => {
                tally.resubscribed();
                shared.resumed.fetch_add(1, Ordering::Relaxed);
                return Some(ws);
            }
            Err(e) => {
                if !retry_until(deadline, &e, shared, &shared.resume_failed).await {
                    return None;
                }
            }
        }
    }
}

/// After a failed attempt: records `error`, then pauses briefly (a random 20–100 ms) and says
/// to try again; once `deadline` has passed, counts the client in `given_up` instead and says
/// to stop.
async fn retry_until(
    deadline: Instant,
    error: &ClientError,
    shared: &Shared,
    given_up: &AtomicU64,
) -> bool {
    shared.errors.record(error);
    if Instant::now() >= deadline {
        given_up.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    let pause = 20 + rand::random::<u64>() % 80;
    tokio::time::sleep(Duration::from_millis(pause)).await;
    true
}
