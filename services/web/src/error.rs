//! The API's error policy, in one place: every failure is JSON
//! `{"error":{"code":"…","message":"…"}}` with the status that says what happened. Internal
//! details are logged, never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("not logged in")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0} is not allowed here")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("too many requests; retry in {retry_after} s")]
    TooManyRequests { retry_after: u64 },
    #[error("service unavailable")]
    Unavailable(String),
    #[error("too busy; retry in {retry_after} s")]
    Busy { retry_after: u64 },
    #[error("the request took longer than {0} s")]
    Timeout(u64),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) | ApiError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::TooManyRequests { .. } => "rate_limited",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Busy { .. } => "busy",
            ApiError::Timeout(_) => "timeout",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                ApiError::Unavailable(e.to_string())
            }
            // Class 22, data exception, of the kinds a value the request carried causes: the
            // request's fault, said in words of the API (PostgreSQL's own name its encoding
            // and types). Any other data exception comes of what the server holds: a 500.
            sqlx::Error::Database(db)
                if let Some(what) = db.code().and_then(|c| unstorable(&c)) =>
            {
                tracing::debug!(error = %db, "a value of the request cannot be stored");
                ApiError::BadRequest(format!("a value cannot be stored: {what}"))
            }
            // lock_not_available: a lock waited for past the statement's lock_timeout (a
            // password change left open holds its user's logins so). Asking again later helps.
            sqlx::Error::Database(db) if db.code().as_deref() == Some("55P03") => {
                ApiError::Busy { retry_after: 5 }
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

/// What is wrong with a value the request carried, for a PostgreSQL data exception a
/// request's value causes; `None` for any other error code.
fn unstorable(code: &str) -> Option<&'static str> {
    Some(match code {
        // character_not_in_repertoire (U+0000 in text), untranslatable_character (in JSON)
        "22021" | "22P05" => "a text holds the character U+0000",
        "22003" => "a number is out of range",
        "22001" => "a text is too long",
        "22007" | "22008" => "a time is out of range",
        "22P02" => "a value is not of its type",
        _ => return None,
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(e) => tracing::error!(error = format!("{e:#}"), "request failed"),
            ApiError::Unavailable(e) => tracing::warn!(error = %e, "dependency unavailable"),
            _ => {}
        }
        let body = Json(json!({"error": {"code": self.code(), "message": self.to_string()}}));
        let mut response = (self.status(), body).into_response();
        if let ApiError::TooManyRequests { retry_after } | ApiError::Busy { retry_after } = self
            && let Ok(v) = retry_after.to_string().parse()
        {
            response.headers_mut().insert("retry-after", v);
        }
        response
    }
}

/// The answer to a request whose handler panicked: the API's 500, logged with the panic's
/// message, rather than a connection closed without a word. A panic is a defect; this keeps
/// its client answered and its request counted.
pub fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    ApiError::Internal(anyhow::anyhow!("handler panicked: {message}")).into_response()
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use tower::ServiceExt as _;

    async fn boom() -> &'static str {
        panic!("a defect")
    }

    #[tokio::test]
    async fn a_handler_that_panics_is_answered_with_the_apis_500() {
        let app = Router::new().route("/boom", get(boom)).layer(
            tower_http::catch_panic::CatchPanicLayer::custom(super::panicked),
        );
        let request = Request::get("/boom").body(Body::empty()).unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "internal", "{body}");
        assert!(
            !body.to_string().contains("a defect"),
            "the panic's message stays in the log: {body}"
        );
    }
}
