//! What every handler shares: the configuration, the pool, the token keys, the login guard,
//! the per-tenant publish limiter and the metrics. A leaf module: handlers import it, and it
//! imports no handler, so the router (in `server`) is the only place that knows them all.

use std::sync::Arc;

use axum::extract::FromRef;
use sqlx::PgPool;

use crate::config::WebConfig;
use crate::login_guard::LoginGuard;
use crate::metrics::Metrics;
use crate::publish_limit::TenantLimiter;
use crate::session::Sessions;
use crate::ticket::Tokens;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<WebConfig>,
    pub pool: PgPool,
    /// Events published per tenant.
    pub event_limiter: Arc<TenantLimiter>,
    pub tokens: Tokens,
    /// Login attempts per address and email, and password hashing in flight.
    pub logins: Arc<LoginGuard>,
    pub metrics: Metrics,
}

impl FromRef<AppState> for PgPool {
    fn from_ref(state: &AppState) -> PgPool {
        state.pool.clone()
    }
}

impl FromRef<AppState> for Sessions {
    fn from_ref(state: &AppState) -> Sessions {
        Sessions {
            pool: state.pool.clone(),
            secure: state.config.cookie_secure,
        }
    }
}
