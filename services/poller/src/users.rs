//! Passes changes to users (deleted, role changed) on to the gateways, which close those users'
//! connections within moments instead of at their tickets' expiry.
//!
//! Plain NATS messages on `pulse.v1.<tenant_id>.users`: a gateway that misses one (it was
//! disconnected) still ends the connection when the ticket expires, and the web service refuses
//! a fresh ticket at once.

use pulse_proto::UserChanged;
use pulse_proto::subject::users_subject;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::changes::ChangeFeed;

/// Forwards user changes until `stop` is cancelled.
pub async fn forward(feed: ChangeFeed, nats: async_nats::Client, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = feed.users_changed() => {}
        }
        let changes = feed.take_users();
        for change in &changes {
            let span = tracing::info_span!(
                "user_change", tenant = %change.tenant_id, user = %change.user_id
            );
            publish(&nats, change).instrument(span).await;
        }
        if !changes.is_empty()
            && let Err(e) = nats.flush().await
        {
            tracing::warn!(error = %e, "cannot flush user changes");
        }
    }
}

/// Sends one user change to the gateways.
async fn publish(nats: &async_nats::Client, change: &UserChanged) {
    let subject = users_subject(&change.tenant_id);
    let payload = match serde_json::to_vec(change) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a user change");
            return;
        }
    };
    if let Err(e) = nats.publish(subject, payload.into()).await {
        tracing::warn!(error = %e, "cannot publish a user change");
    }
    tracing::info!(change = ?change.change, "user changed; gateways close its connections");
}
