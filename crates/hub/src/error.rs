//! API errors: an HTTP status and a JSON body `{"error": {"code": "...", "message": "..."}}` whose
//! code is stable (clients branch on it; the message is for people).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use strata_remote::RemoteError;

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable code.
    pub code: &'static str,
    /// What went wrong and what to do, for a person.
    pub message: String,
    /// Extra JSON fields (the current version of a 409 "pull first").
    pub extra: Option<serde_json::Value>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: None,
        }
    }

    /// 400 `invalid`.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid", message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "no valid API key: send `Authorization: Bearer shub_…` (create keys with `stratahub keys create` or POST /v1/keys)",
        )
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 404 for a project that does not exist or that the caller may not see.
    pub fn no_project(owner: &str, name: &str) -> ApiError {
        ApiError::not_found(format!(
            "no project {owner}/{name} (or your key is not a member of it)"
        ))
    }

    /// 413 `too_large`.
    pub fn too_large(limit: u64) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is larger than this hub's limit of {limit} bytes (stratahub serve --max-blob-bytes)"),
        )
    }

    /// 500 `internal`.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// 503 `busy`: a document kept changing under a read-modify-write.
    pub fn busy() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "too many concurrent changes to the same record; try again",
        )
    }

    /// With extra JSON fields in the error object.
    pub fn with_extra(mut self, extra: serde_json::Value) -> ApiError {
        self.extra = Some(extra);
        self
    }
}

impl From<RemoteError> for ApiError {
    /// Storage errors: the caller's own mistakes keep their meaning, the storage's failures are 502
    /// or 503 (the hub's storage, not the client, is at fault).
    fn from(e: RemoteError) -> ApiError {
        let msg = e.report();
        let (status, code) = match &e {
            RemoteError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            RemoteError::AlreadyExists(_) => (StatusCode::PRECONDITION_FAILED, "already_exists"),
            RemoteError::Conflict(_) => (StatusCode::PRECONDITION_FAILED, "conflict"),
            RemoteError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
            RemoteError::Transient(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            RemoteError::Corrupt(_) => (StatusCode::BAD_GATEWAY, "corrupt"),
            _ => (StatusCode::BAD_GATEWAY, "storage"),
        };
        if status.is_server_error() {
            tracing::warn!(error = %msg, "storage error");
        }
        ApiError::new(status, code, msg)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut err = serde_json::json!({"code": self.code, "message": self.message});
        if let (Some(serde_json::Value::Object(extra)), Some(obj)) =
            (self.extra, err.as_object_mut())
        {
            for (k, v) in extra {
                obj.insert(k, v);
            }
        }
        let body = serde_json::json!({ "error": err });
        (
            self.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}
