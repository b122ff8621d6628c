//! `/api/{route}` of HTTP-triggered functions: the request goes to the
//! [`crate::gateway`] whole, its answer comes back as the function wrote it.
//!
//! Routes never start with a management segment (`functions`, `queues`,
//! ...: [`crate::gateway::RESERVED`]), so a function cannot shadow the
//! management API. Refusals (401, 403, 405, 429, 503, 504) are JSON errors
//! like the rest of the API, with `WWW-Authenticate`, `Allow` or
//! `Retry-After` where they apply. The body is read only after the caller
//! passed auth and its rate limit, within [`BODY_READ_TIMEOUT`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

use super::{ApiError, ApiRequest, ApiResult};
use crate::functions::{DeployedFunction, HttpAuth, Trigger};
use crate::gateway::{GatewayError, HttpCall, MAX_REQUEST_BYTES, RESERVED};
use crate::services::Sluice;

/// How long a caller may take to send the request body.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A route's match for `/api/...`: `None` when the path is the
/// management API's or no HTTP trigger's.
pub(super) fn find(
    sluice: &Sluice,
    request: &ApiRequest,
) -> Option<Result<Arc<DeployedFunction>, GatewayError>> {
    let second = request.segments.get(1)?.to_ascii_lowercase();
    if RESERVED.contains(&second.as_str()) {
        return None;
    }
    sluice
        .gateway
        .find(&request.method, &request.segments[1..], &request.path)
}

/// Serves the request with the function found.
pub(super) async fn serve(
    sluice: &Sluice,
    found: Result<Arc<DeployedFunction>, GatewayError>,
    request: ApiRequest,
) -> ApiResult {
    let function = found.map_err(|e| refusal(e, false))?;
    let bearer = matches!(
        &function.record.trigger,
        Trigger::Http(t) if matches!(t.auth, HttpAuth::Jwt(_))
    );
    let mut call = HttpCall {
        scheme: request.scheme,
        method: request.method.clone(),
        uri: request.uri.clone(),
        headers: request.headers.clone(),
        peer: request.peer.map(|p| p.ip()),
        code: request.query.get("code").cloned(),
        body: Bytes::new(),
    };
    let admission = sluice
        .gateway
        .admit(&function, &call)
        .await
        .map_err(|e| refusal(e, bearer))?;
    call.body = tokio::time::timeout(BODY_READ_TIMEOUT, request.body(MAX_REQUEST_BYTES))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "RequestTimeout",
                format!(
                    "the request body did not arrive within {} s",
                    BODY_READ_TIMEOUT.as_secs()
                ),
            )
        })??;
    let response = sluice
        .gateway
        .invoke(&function, admission, call)
        .await
        .map_err(|e| refusal(e, bearer))?;
    let (parts, body) = response.into_parts();
    Ok(Response::from_parts(parts, Full::new(body)))
}

fn refusal(error: GatewayError, bearer: bool) -> ApiError {
    let status = error.status();
    if status.is_server_error() {
        tracing::debug!(error = %error, "HTTP-triggered function failed");
    }
    let headers = error.headers(bearer);
    let mut api = ApiError::new(status, error.code(), error.to_string());
    for (name, value) in headers {
        api = api.with_header(name, value);
    }
    api
}
