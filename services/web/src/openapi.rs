//! The OpenAPI document served at `/api/v2/openapi.json`, generated from the handlers' own
//! annotations so it cannot drift from the routes (a test checks every documented path). The
//! schemas are collected from the types those annotations name, so none is listed here.

use utoipa::OpenApi;

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
    )
)]
pub struct ApiDoc;
