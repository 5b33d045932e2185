//! The server's error answers: every 4xx and 5xx it sends is an [`ApiError`], answered as a
//! status and a JSON [`ErrorBody`] naming the problem, with `Retry-After` where waiting helps.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

/// An error answer: a status and a message naming the problem. Built by one constructor per
/// status the server sends.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u64>,
}

/// The JSON body of every error answer: `{"error": "…"}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

impl ApiError {
    fn with(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A 400: the request asks for something this server cannot make.
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::with(StatusCode::BAD_REQUEST, message)
    }

    /// A 404: no such route.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::with(StatusCode::NOT_FOUND, message)
    }

    /// A 405: the route exists, the method does not.
    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::with(StatusCode::METHOD_NOT_ALLOWED, message)
    }

    /// A 406: no format the client accepts.
    pub fn not_acceptable(message: impl Into<String>) -> ApiError {
        ApiError::with(StatusCode::NOT_ACCEPTABLE, message)
    }

    /// A 408: the body did not arrive in time.
    pub fn timeout(message: impl Into<String>) -> ApiError {
        ApiError::with(StatusCode::REQUEST_TIMEOUT, message)
    }

    /// A 413: the body is over the limit.
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::with(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    /// A 500.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::with(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// A 503 with `Retry-After: retry_after`.
    pub fn unavailable(message: impl Into<String>, retry_after: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::with(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody {
            error: self.message,
        });
        let mut resp = (self.status, body).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}
