//! The operator endpoints every service exposes: `/healthz` (the process is alive and its loop
//! turns), `/readyz` (it can do its job: its dependencies are reachable) and `/metrics`
//! (Prometheus text format).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use parking_lot::RwLock;
use prometheus_client::registry::Registry;
use serde::Serialize;

/// Named readiness checks plus free-form facts (e.g. `role: standby`) shown by `/readyz`.
/// The service is ready when every check is true; a check never set counts as not ready.
#[derive(Clone, Default)]
pub struct Readiness {
    inner: Arc<RwLock<ReadinessState>>,
}

#[derive(Default, Serialize, Clone)]
struct ReadinessState {
    checks: BTreeMap<&'static str, bool>,
    info: BTreeMap<&'static str, String>,
}

impl Readiness {
    /// Declares the checks this service needs, all false until set.
    pub fn new(checks: &[&'static str]) -> Self {
        let r = Self::default();
        {
            let mut state = r.inner.write();
            for c in checks {
                state.checks.insert(c, false);
            }
        }
        r
    }

    pub fn set(&self, check: &'static str, ok: bool) {
        self.inner.write().checks.insert(check, ok);
    }

    pub fn set_info(&self, key: &'static str, value: impl Into<String>) {
        self.inner.write().info.insert(key, value.into());
    }

    pub fn is_ready(&self) -> bool {
        self.inner.read().checks.values().all(|ok| *ok)
    }

    pub fn check(&self, check: &'static str) -> Option<bool> {
        self.inner.read().checks.get(check).copied()
    }
}

/// What the ops endpoints read.
#[derive(Clone)]
pub struct Ops {
    pub registry: Arc<Registry>,
    pub readiness: Readiness,
}

/// `/healthz`, `/readyz`, `/metrics`, to serve alone or merge into a service's router.
pub fn router(ops: Ops) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ops)
}

/// Serves [`router`] on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ops: Ops,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = crate::http_server::serve(listener, router(ops), Default::default(), async move {
        shutdown.await;
        let _ = stopping.send(());
    });
    // A probe or scrape still connected must not hold the process up: after the shutdown,
    // requests in flight get OPS_DRAIN to finish, then their connections are dropped.
    tokio::select! {
        () = server => {}
        () = async {
            if stopped.await.is_ok() {
                tokio::time::sleep(OPS_DRAIN).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {}
    }
}

/// How long the ops endpoints keep answering requests in flight after the shutdown.
const OPS_DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

async fn healthz() -> &'static str {
    "ok\n"
}

#[derive(Serialize)]
struct ReadyBody {
    ready: bool,
    #[serde(flatten)]
    state: ReadinessState,
}

async fn readyz(State(ops): State<Ops>) -> Response {
    let state = ops.readiness.inner.read().clone();
    let ready = state.checks.values().all(|ok| *ok);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(ReadyBody { ready, state })).into_response()
}

async fn metrics(State(ops): State<Ops>) -> Response {
    let mut body = String::with_capacity(16 * 1024);
    match prometheus_client::encoding::text::encode(&mut body, &ops.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_check_passes() {
        let r = Readiness::new(&["database", "nats"]);
        assert!(!r.is_ready());
        r.set("database", true);
        assert!(!r.is_ready());
        r.set("nats", true);
        assert!(r.is_ready());
        r.set("nats", false);
        assert!(!r.is_ready());
        assert_eq!(r.check("database"), Some(true));
        assert_eq!(r.check("other"), None);
    }
}
