//! Turns axum's plain-text extractor rejections (malformed JSON, a wrong content type, a
//! bad path or query parameter) into RFC 9457 problems, so every admin error has the
//! documented shape.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use steward_gateway::problem::Problem;

/// Longest rejection text kept as the problem's detail.
const MAX_DETAIL: usize = 500;

fn kind(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
        _ => "client_error",
    }
}

/// Rewrites a 4xx response that is not already a problem.
pub async fn as_problem(resp: Response) -> Response {
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !status.is_client_error()
        || !(content_type.is_empty() || content_type.starts_with("text/plain"))
    {
        return resp;
    }
    let allow = resp.headers().get(header::ALLOW).cloned();
    let bytes = axum::body::to_bytes(resp.into_body(), 16 * 1024)
        .await
        .unwrap_or_default();
    let detail: String = String::from_utf8_lossy(&bytes)
        .chars()
        .take(MAX_DETAIL)
        .collect();
    let title = status.canonical_reason().unwrap_or("Client error");
    let mut problem = Problem::new(status, kind(status), title);
    if !detail.trim().is_empty() {
        problem = problem.detail(detail);
    }
    let mut out = problem.into_response();
    if let Some(allow) = allow {
        out.headers_mut().insert(header::ALLOW, allow);
    }
    if out.headers().get(header::CONTENT_TYPE).is_none() {
        out.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
    }
    out
}
