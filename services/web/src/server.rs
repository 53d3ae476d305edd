//! Routes, shared state and the layers every response passes through: request metrics and
//! spans, compression, cache and security headers.

use std::time::Instant;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::compression::CompressionLayer;
use tower_http::services::{ServeDir, ServeFile};
use tracing::Instrument as _;
use utoipa::OpenApi as _;

use crate::api::{ApiQuery, NoParams};
use crate::metrics::RouteLabel;
use crate::state::AppState;
use crate::{account, api, openapi};

/// Content Security Policy: no inline script, no framing, and connections only to this site
/// and the configured gateways.
pub fn csp(gateway_urls: &[String]) -> String {
    let mut connect = vec!["'self'".to_owned()];
    for url in gateway_urls {
        // A gateway URL's origin: scheme, host and port (`wss://gw.example.com`).
        if let Some((scheme, rest)) = url.split_once("://") {
            let authority = rest.split('/').next().unwrap_or_default();
            if !authority.is_empty() {
                let origin = format!("{scheme}://{authority}");
                if !connect.contains(&origin) {
                    connect.push(origin);
                }
            }
        }
    }
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src {}; font-src 'self'; object-src 'none'; base-uri 'none'; \
form-action 'self'; frame-ancestors 'none'",
        connect.join(" ")
    )
}

/// Headers every response carries, computed once from the configuration.
#[derive(Clone)]
struct SecurityHeaders {
    csp: HeaderValue,
    /// Set when cookies are `Secure`, that is, when the site is served over HTTPS.
    hsts: Option<HeaderValue>,
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/v2/login", post(account::login))
        .route("/api/v2/logout", post(account::logout))
        .route("/api/v2/me", get(account::whoami))
        .route("/api/v2/ws-ticket", get(account::ws_ticket))
        .route("/api/v2/devices", get(api::devices::list))
        .route("/api/v2/devices/{device_id}", get(api::devices::get))
        .route(
            "/api/v2/devices/{device_id}/telemetry",
            get(api::devices::telemetry),
        )
        .route("/api/v2/alerts", get(api::alerts::list))
        .route("/api/v2/fleet", get(api::fleet::get))
        .route(
            "/api/v2/events",
            post(api::events::publish).get(api::events::list),
        )
        .route(
            "/api/v2/publish-keys",
            post(api::publish_keys::create).get(api::publish_keys::list),
        )
        .route(
            "/api/v2/publish-keys/{key_id}",
            axum::routing::delete(api::publish_keys::revoke),
        )
        .route("/api/v2/openapi.json", get(openapi_json))
        .layer(middleware::from_fn(same_origin_writes))
        .layer(axum::extract::DefaultBodyLimit::max(api::MAX_BODY_BYTES))
        .with_state(state.clone());

    let root = &state.config.web_root;
    let index = root.join("index.html");
    // Unknown paths under /api get a JSON 404, and under /assets a plain one (a page of another
    // build asking for its own hashed file must not get, and cache, the app's page in its
    // place); anything else is the dashboard (a single-page app, so unknown paths serve
    // index.html).
    // A directory is not served (no index of it, and no redirect to its path with a slash
    // added, which for `//assets` would send the browser to the host `assets`).
    let files = ServeDir::new(root).append_index_html_on_directories(false);
    let app_page = files.clone().fallback(ServeFile::new(&index));
    let fallback = move |request: Request| {
        let (files, app_page) = (files.clone(), app_page.clone());
        async move {
            let path = request.uri().path();
            if path.starts_with("/api/") {
                return api_not_found().await.into_response();
            }
            let served = if path.starts_with("/assets/") {
                tower::ServiceExt::oneshot(files, request).await
            } else {
                tower::ServiceExt::oneshot(app_page, request).await
            };
            match served {
                Ok(response) => response.into_response(),
                Err(never) => match never {},
            }
        }
    };

    let headers = SecurityHeaders {
        csp: HeaderValue::from_str(&csp(&state.config.gateway_urls))
            .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'")),
        hsts: state
            .config
            .cookie_secure
            .then(|| HeaderValue::from_static("max-age=31536000; includeSubDomains")),
    };
    let timeout = state.config.http_timeout;
    let in_flight = state.config.http_max_in_flight;
    Router::new()
        .merge(api)
        // The ops endpoints live on their own port (PULSE_WEB_OPS_ADDR); asked for here they
        // are a plain 404, not the dashboard's page.
        .route("/healthz", get(ops_not_here))
        .route("/readyz", get(ops_not_here))
        .route("/metrics", get(ops_not_here))
        // A known path asked with another method: the JSON error, beside the `Allow` header.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(fallback)
        .layer(middleware::from_fn(cache_headers))
        .layer(CompressionLayer::new())
        // Every request has a deadline (408), and at most so many run at once: more are
        // refused at once with 503 instead of queueing without bound. Both answer with the
        // API's JSON error.
        .layer(
            tower::ServiceBuilder::new()
                .layer(HandleErrorLayer::new(
                    move |e: tower::BoxError| async move {
                        if e.is::<tower::timeout::error::Elapsed>() {
                            crate::error::ApiError::Timeout(timeout.as_secs())
                        } else {
                            crate::error::ApiError::Busy { retry_after: 1 }
                        }
                    },
                ))
                .timeout(timeout)
                .load_shed()
                // One count for the whole router: a per-route limit would multiply it.
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(in_flight)),
        )
        // Inside the metrics and headers: a panicking handler's 500 is counted and dressed
        // like any other answer.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            crate::error::panicked,
        ))
        .layer(middleware::from_fn_with_state(headers, security_headers))
        .layer(middleware::from_fn_with_state(state, observe))
}

async fn openapi_json(_: ApiQuery<NoParams>) -> Response {
    axum::Json(openapi::ApiDoc::openapi()).into_response()
}

async fn ops_not_here() -> crate::error::ApiError {
    crate::error::ApiError::NotFound("ops endpoint on this port (see PULSE_WEB_OPS_ADDR); it")
}

async fn method_not_allowed(method: axum::http::Method) -> crate::error::ApiError {
    crate::error::ApiError::MethodNotAllowed(method.to_string())
}

async fn api_not_found() -> crate::error::ApiError {
    crate::error::ApiError::NotFound("route")
}

/// A request that changes something (any method but `GET`, `HEAD` and `OPTIONS`) that a
/// browser says came from another origin (`Sec-Fetch-Site` other than `same-origin`, or
/// `none` for what the user did directly) is refused with 403 before it is read.
/// `SameSite=Strict` keeps the session cookie off other sites' requests, but a sibling
/// subdomain is the same site: without this, its page could log a user out, or use the
/// session otherwise. A request without the header (a backend, curl) is not a browser's.
async fn same_origin_writes(request: Request, next: Next) -> Response {
    let safe = matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    let site = request
        .headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok());
    match site {
        Some(site) if !safe && site != "same-origin" && site != "none" => {
            crate::error::ApiError::Forbidden(
                "a request from another origin may not change anything",
            )
            .into_response()
        }
        _ => next.run(request).await,
    }
}

/// Hashed build assets never change: cache them for a year. Everything else (an asset that is
/// not there too) is revalidated, so a deploy is picked up at the next load.
async fn cache_headers(request: Request, next: Next) -> Response {
    let asset = request.uri().path().starts_with("/assets/");
    let mut response = next.run(request).await;
    let found = response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED;
    let value = if asset && found {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    if !response.headers().contains_key(header::CACHE_CONTROL) {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    }
    response
}

async fn security_headers(
    State(headers): State<SecurityHeaders>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, headers.csp);
    if let Some(hsts) = headers.hsts {
        h.insert(header::STRICT_TRANSPORT_SECURITY, hsts);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// A span and metrics per request, labelled by route template (never by raw path, which
/// would let clients create unbounded label values).
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| {
            if request.uri().path().starts_with("/api/") {
                "api_unmatched".into()
            } else {
                "static".into()
            }
        });
    let span = tracing::info_span!("request", method = %request.method(), route = %route);
    let started = Instant::now();
    let response = next.run(request).instrument(span).await;
    let label = RouteLabel {
        route,
        status: response.status().as_u16(),
    };
    state.metrics.requests.get_or_create(&label).inc();
    state
        .metrics
        .request_seconds
        .get_or_create(&label)
        .observe(started.elapsed().as_secs_f64());
    response
}
