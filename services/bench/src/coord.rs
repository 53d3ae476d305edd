//! Keeping the shards of one run in step when it is spread over several processes. They meet
//! on NATS subjects of their own (`pulse-bench.<run>.arrive` / `.release`, outside `pulse.v1`):
//! at each phase every follower announces its arrival (again every half second, in case the
//! leader was not listening yet), the leader waits for all of them, does the phase's work
//! (measuring the gateway, publishing) and releases them with its result.
//!
//! With one shard nothing goes over NATS: the leader just does the work.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use futures::StreamExt as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error("phase {phase:?}: {arrived} of {shards} shards arrived within {within:?}")]
    Timeout {
        phase: String,
        arrived: usize,
        shards: usize,
        within: Duration,
    },
    #[error("phase {0:?}: no release from the leader")]
    NoRelease(String),
    #[error("phase {0:?}: bad message: {1}")]
    Decode(String, serde_json::Error),
}

#[derive(Serialize, Deserialize)]
struct Arrival {
    phase: String,
    shard: usize,
}

#[derive(Serialize, Deserialize)]
struct Release {
    phase: String,
    value: serde_json::Value,
}

pub struct Coordinator {
    nats: Option<async_nats::Client>,
    run_id: String,
    shard: usize,
    shards: usize,
    inbox: Option<async_nats::Subscriber>,
    arrived: HashMap<String, HashSet<usize>>,
    released: HashMap<String, serde_json::Value>,
}

impl Coordinator {
    /// Joins run `run_id` as `shard` of `shards`.
    pub async fn join(
        nats: &async_nats::Client,
        run_id: &str,
        shard: usize,
        shards: usize,
    ) -> Result<Self, CoordError> {
        let mut c = Coordinator {
            nats: None,
            run_id: run_id.to_owned(),
            shard,
            shards,
            inbox: None,
            arrived: HashMap::new(),
            released: HashMap::new(),
        };
        if shards > 1 {
            let subject = if shard == 0 { "arrive" } else { "release" };
            let inbox = nats
                .subscribe(format!("pulse-bench.{run_id}.{subject}"))
                .await
                .map_err(|e| CoordError::Nats(e.to_string()))?;
            c.inbox = Some(inbox);
            c.nats = Some(nats.clone());
        }
        Ok(c)
    }

    /// Meets the other shards at `phase`. The leader runs `work` once all have arrived and
    /// hands its result to everyone; followers never run it.
    pub async fn sync<T, F, Fut>(
        &mut self,
        phase: &str,
        within: Duration,
        work: F,
    ) -> Result<T, CoordError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let (Some(nats), Some(_)) = (self.nats.clone(), self.inbox.as_ref()) else {
            return Ok(work().await);
        };
        if self.shard == 0 {
            self.await_arrivals(phase, within).await?;
            let value = work().await;
            let release = Release {
                phase: phase.to_owned(),
                value: serde_json::to_value(&value)
                    .map_err(|e| CoordError::Decode(phase.into(), e))?,
            };
            let body =
                serde_json::to_vec(&release).map_err(|e| CoordError::Decode(phase.into(), e))?;
            nats.publish(format!("pulse-bench.{}.release", self.run_id), body.into())
                .await
                .map_err(|e| CoordError::Nats(e.to_string()))?;
            nats.flush()
                .await
                .map_err(|e| CoordError::Nats(e.to_string()))?;
            Ok(value)
        } else {
            let value = self.await_release(&nats, phase, within).await?;
            serde_json::from_value(value).map_err(|e| CoordError::Decode(phase.into(), e))
        }
    }

    async fn await_arrivals(&mut self, phase: &str, within: Duration) -> Result<(), CoordError> {
        let deadline = tokio::time::Instant::now() + within;
        let followers = self.shards - 1;
        loop {
            let have = self.arrived.get(phase).map_or(0, HashSet::len);
            if have >= followers {
                return Ok(());
            }
            let Some(inbox) = self.inbox.as_mut() else {
                return Ok(());
            };
            let message = match tokio::time::timeout_at(deadline, inbox.next()).await {
                Ok(Some(m)) => m,
                Ok(None) => return Err(CoordError::Nats("subscription ended".into())),
                Err(_) => {
                    return Err(CoordError::Timeout {
                        phase: phase.into(),
                        arrived: have + 1,
                        shards: self.shards,
                        within,
                    });
                }
            };
            if let Ok(a) = serde_json::from_slice::<Arrival>(&message.payload) {
                self.arrived.entry(a.phase).or_default().insert(a.shard);
            }
        }
    }

    async fn await_release(
        &mut self,
        nats: &async_nats::Client,
        phase: &str,
        within: Duration,
    ) -> Result<serde_json::Value, CoordError> {
        let deadline = tokio::time::Instant::now() + within;
        let arrival = serde_json::to_vec(&Arrival {
            phase: phase.to_owned(),
            shard: self.shard,
        })
        .map_err(|e| CoordError::Decode(phase.into(), e))?;
        let subject = format!("pulse-bench.{}.arrive", self.run_id);
        loop {
            if let Some(value) = self.released.remove(phase) {
                return Ok(value);
            }
            nats.publish(subject.clone(), arrival.clone().into())
                .await
                .map_err(|e| CoordError::Nats(e.to_string()))?;
            let Some(inbox) = self.inbox.as_mut() else {
                return Err(CoordError::NoRelease(phase.into()));
            };
            let wait = (tokio::time::Instant::now() + Duration::from_millis(500)).min(deadline);
            match tokio::time::timeout_at(wait, inbox.next()).await {
                Ok(Some(m)) => {
                    if let Ok(r) = serde_json::from_slice::<Release>(&m.payload) {
                        self.released.insert(r.phase, r.value);
                    }
                }
                Ok(None) => return Err(CoordError::Nats("subscription ended".into())),
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(CoordError::NoRelease(phase.into()));
                }
                Err(_) => {}
            }
        }
    }
}
