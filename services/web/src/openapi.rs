//! The OpenAPI document served at `/api/v2/openapi.json`, generated from the handlers' own
//! annotations so it cannot drift from the routes (a test checks every documented path). The
//! schemas are collected from the types those annotations name, so none is listed here.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{account, api};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Pulse API",
        version = "2",
        description = "Tenant-scoped REST API of Pulse. Live updates come over the gateway WebSocket; see proto/README.md."
    ),
    paths(
        account::login,
        account::logout,
        account::whoami,
        account::ws_ticket,
        api::devices::list,
        api::devices::get,
        api::devices::telemetry,
        api::alerts::list,
        api::fleet::get,
        api::events::publish,
        api::events::list,
        api::publish_keys::create,
        api::publish_keys::list,
        api::publish_keys::revoke,
    ),
    modifiers(&Credentials),
    security(("session" = []))
)]
pub struct ApiDoc;

/// The credentials the operations name: the session cookie every read takes, and the bearer
/// token a backend publishes with.
struct Credentials;

impl Modify for Credentials {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::session::COOKIE,
                "The session cookie `POST /api/v2/login` sets (httpOnly, SameSite=Strict); named \
                 `__Host-pulse_session` when the site is served over HTTPS \
                 (`PULSE_COOKIE_SECURE`).",
            ))),
        );
        components.add_security_scheme(
            "publish_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A tenant's publish key (`pulse_pk_…`, from `POST /api/v2/publish-keys`), \
                         or the deployment's `PULSE_PUBLISH_TOKEN`, which publishes for the \
                         tenant named in `tenant_id`.",
                    ))
                    .build(),
            ),
        );
    }
}
