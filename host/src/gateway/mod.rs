//! HTTP-triggered functions: the API-gateway role of the reference
//! architecture (API Management or an HTTP-request trigger in front of a
//! queue), on the host's own front door.
//!
//! Read [`Gateway`] first. A function deployed with an HTTP trigger
//! ([`HttpTrigger`]) answers requests to `/api/{route}` ([`route`]). Before
//! its component runs, the gateway checks the caller by the trigger's
//! `auth` ([`caller`]: SAS, API key, JWT bearer token or anonymous) and
//! takes one request from the caller's rate limit ([`rate_limit`]: 429 with
//! `Retry-After` when spent). The handler is a standard
//! `wasi:http/incoming-handler` component that sees the request with an
//! `x-sluice-principal` header naming the caller; like any invocation it
//! runs with the function's deadline, memory cap and concurrency limit,
//! inherits the caller's `traceparent`, and is recorded as a step of the
//! transaction (by `x-correlation-id`, else the trace id).

pub mod caller;
mod jwt;
mod rate_limit;
pub mod route;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{HeaderMap, Method, StatusCode, Uri, header};

pub use caller::{Caller, CallerError};
pub use route::{RESERVED, RouteTemplate, validate_trigger};

use crate::access::Access;
use crate::capability::{HostContext, HostServices, Invocation};
use crate::clock;
use crate::functions::{DeployedFunction, FunctionSettings, Functions, HttpTrigger, Trigger};
use crate::runtime::{InvocationError, Scheme};
use crate::trace::{Step, StepKind, TraceParent};

/// Largest request body an HTTP-triggered function is given.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;
/// Largest response body the host takes from a handler.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// How long a request waits for one of the function's concurrency permits
/// before it is answered 503.
const PERMIT_WAIT: Duration = Duration::from_secs(5);
/// The header that tells a handler who called it; set by the host only.
pub const PRINCIPAL_HEADER: &str = "x-sluice-principal";
/// The header that carries the invocation id back to the caller.
pub const INVOCATION_HEADER: &str = "x-sluice-invocation-id";

/// Why a request to an HTTP-triggered function was not served.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The route exists for other methods.
    #[error("{method} is not allowed on {path}; allowed: {}", allowed.join(", "))]
    MethodNotAllowed {
        /// The method asked for.
        method: Method,
        /// The request path.
        path: String,
        /// What the routes there serve.
        allowed: Vec<String>,
    },
    /// The caller was refused.
    #[error(transparent)]
    Caller(#[from] CallerError),
    /// The caller's rate limit is spent.
    #[error("rate limit of function `{function}` exceeded for this caller; retry in {} s", retry_after.as_secs().max(1))]
    RateLimited {
        /// The function.
        function: String,
        /// When a request would be allowed again.
        retry_after: Duration,
    },
    /// Every concurrency permit stayed taken.
    #[error("function `{0}` is at its concurrency limit; retry shortly")]
    Busy(String),
    /// The handler failed (details are in the host's log, not in the answer).
    #[error(
        "function `{function}` failed (invocation {invocation_id}); the host log has the details"
    )]
    Failed {
        /// The function.
        function: String,
        /// The invocation, for finding the log lines.
        invocation_id: String,
        /// What went wrong.
        error: InvocationError,
    },
}

impl GatewayError {
    /// The status to answer with.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::Caller(CallerError::Missing(_) | CallerError::Invalid(_)) => {
                StatusCode::UNAUTHORIZED
            }
            GatewayError::Caller(CallerError::Forbidden(_)) => StatusCode::FORBIDDEN,
            GatewayError::Caller(CallerError::KeysUnavailable(_)) | GatewayError::Busy(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            GatewayError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::Failed {
                error: InvocationError::Timeout(_),
                ..
            } => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Failed {
                error: InvocationError::NoResponse(_) | InvocationError::ResponseTooLarge(_),
                ..
            } => StatusCode::BAD_GATEWAY,
            GatewayError::Failed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::MethodNotAllowed { .. } => "MethodNotAllowed",
            GatewayError::Caller(CallerError::Forbidden(_)) => "Forbidden",
            GatewayError::Caller(CallerError::KeysUnavailable(_)) => "IssuerKeysUnavailable",
            GatewayError::Caller(_) => "Unauthorized",
            GatewayError::RateLimited { .. } => "TooManyRequests",
            GatewayError::Busy(_) => "FunctionBusy",
            GatewayError::Failed {
                error: InvocationError::Timeout(_),
                ..
            } => "FunctionTimeout",
            GatewayError::Failed { .. } => "FunctionFailed",
        }
    }

    /// Headers the answer needs (`Retry-After`, `Allow`, `WWW-Authenticate`).
    pub fn headers(&self, auth_is_bearer: bool) -> Vec<(header::HeaderName, String)> {
        match self {
            GatewayError::RateLimited { retry_after, .. } => {
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                vec![(header::RETRY_AFTER, secs.max(1).to_string())]
            }
            GatewayError::Busy(_) => vec![(header::RETRY_AFTER, "1".into())],
            GatewayError::MethodNotAllowed { allowed, .. } => {
                vec![(header::ALLOW, allowed.join(", "))]
            }
            GatewayError::Caller(CallerError::Missing(_)) if auth_is_bearer => {
                vec![(header::WWW_AUTHENTICATE, "Bearer".into())]
            }
            GatewayError::Caller(CallerError::Invalid(why)) if auth_is_bearer => vec![(
                header::WWW_AUTHENTICATE,
                format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\"",
                    why.replace(['"', '\\'], "'")
                ),
            )],
            _ => Vec::new(),
        }
    }
}

/// One request to the front door, as the gateway needs it.
pub struct HttpCall {
    /// `http` or `https`, as the client connected.
    pub scheme: &'static str,
    /// The method.
    pub method: Method,
    /// The request URI as received (path and query).
    pub uri: Uri,
    /// The request headers.
    pub headers: HeaderMap,
    /// The body, read whole (at most [`MAX_REQUEST_BYTES`]).
    pub body: Bytes,
    /// The client's address.
    pub peer: Option<IpAddr>,
    /// The `code` query parameter (an API key), if any.
    pub code: Option<String>,
}

/// A request that passed auth and its rate limit.
pub struct Admission {
    /// Who called.
    pub caller: Caller,
    /// The function's settings it was admitted with; the invocation sees the same.
    settings: Arc<FunctionSettings>,
}

/// Routes, authenticates, rate-limits and invokes HTTP-triggered functions.
pub struct Gateway {
    functions: Arc<Functions>,
    services: HostServices,
    access: Arc<Access>,
    keys: jwt::KeySets,
    limits: rate_limit::RateLimits,
}

impl Gateway {
    /// A gateway over the deployed functions.
    pub fn new(functions: Arc<Functions>, services: HostServices, access: Arc<Access>) -> Gateway {
        Gateway {
            functions,
            services,
            access,
            keys: jwt::KeySets::new(),
            limits: rate_limit::RateLimits::new(),
        }
    }

    /// The function serving `method` on `/api/{segments}`: `None` when no
    /// HTTP route matches the path (the management API answers then),
    /// an error when routes match but none serves the method.
    pub fn find(
        &self,
        method: &Method,
        segments: &[String],
        path: &str,
    ) -> Option<Result<Arc<DeployedFunction>, GatewayError>> {
        let mut matching: Vec<(Vec<u8>, Arc<DeployedFunction>)> = self
            .functions
            .all()
            .into_iter()
            .filter_map(|function| {
                let Trigger::Http(trigger) = &function.record.trigger else {
                    return None;
                };
                let template = RouteTemplate::parse(&trigger.route).ok()?;
                template
                    .matches(segments)
                    .then(|| (template.specificity(), function.clone()))
            })
            .collect();
        if matching.is_empty() {
            return None;
        }
        matching.sort_by(|a, b| a.0.cmp(&b.0));
        let serves = |function: &DeployedFunction| match &function.record.trigger {
            Trigger::Http(t) => {
                t.methods.is_empty() || t.methods.iter().any(|m| m == method.as_str())
            }
            _ => false,
        };
        if let Some((_, function)) = matching.iter().find(|(_, f)| serves(f)) {
            return Some(Ok(function.clone()));
        }
        let mut allowed: Vec<String> = matching
            .iter()
            .filter_map(|(_, f)| match &f.record.trigger {
                Trigger::Http(t) => Some(t.methods.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        allowed.sort();
        allowed.dedup();
        Some(Err(GatewayError::MethodNotAllowed {
            method: method.clone(),
            path: path.to_string(),
            allowed,
        }))
    }

    /// Refuses an HTTP trigger whose route and methods are already served by
    /// another function (the same shape: both would match the same paths).
    pub fn check_route_free(&self, name: &str, trigger: &HttpTrigger) -> Result<(), String> {
        let template = RouteTemplate::parse(&trigger.route)?;
        for function in self.functions.all() {
            let Trigger::Http(other) = &function.record.trigger else {
                continue;
            };
            if function.record.name == name {
                continue;
            }
            let Ok(other_template) = RouteTemplate::parse(&other.route) else {
                continue;
            };
            if template.same_shape(&other_template)
                && route::methods_overlap(&trigger.methods, &other.methods)
            {
                return Err(format!(
                    "route `{}` is already served by function `{}` (route `{}`) for {}",
                    trigger.route,
                    function.record.name,
                    other.route,
                    if other.methods.is_empty() {
                        "every method".to_string()
                    } else {
                        other.methods.join(", ")
                    }
                ));
            }
        }
        Ok(())
    }

    /// Forgets what the gateway keeps for a deleted function.
    pub fn forget(&self, name: &str) {
        self.limits.forget(name);
    }

    /// Admits a request to `function`: checks the caller and takes one
    /// request from its rate limit. Runs before the body is read, so refused
    /// callers cannot make the host read a body.
    pub async fn admit(
        &self,
        function: &DeployedFunction,
        call: &HttpCall,
    ) -> Result<Admission, GatewayError> {
        let Trigger::Http(trigger) = &function.record.trigger else {
            // `find` hands out HTTP-triggered functions only.
            return Err(GatewayError::MethodNotAllowed {
                method: call.method.clone(),
                path: call.uri.path().to_string(),
                allowed: Vec::new(),
            });
        };
        let name = function.record.name.as_str();
        let settings = self.functions.settings(name);
        let credentials = caller::Credentials {
            headers: &call.headers,
            code: call.code.as_deref(),
            path: call.uri.path(),
            peer: call.peer,
        };
        let caller = caller::authenticate(
            &trigger.auth,
            &credentials,
            &settings,
            &self.access.policies(),
            &self.keys,
            clock::now_ms() / 1000,
        )
        .await?;
        if let Some(limit) = trigger.rate_limit {
            self.limits
                .check(name, limit, &caller.rate_key)
                .map_err(|retry_after| GatewayError::RateLimited {
                    function: name.to_string(),
                    retry_after,
                })?;
        }
        Ok(Admission { caller, settings })
    }

    /// Invokes `function` for an admitted request.
    pub async fn invoke(
        &self,
        function: &DeployedFunction,
        admission: Admission,
        call: HttpCall,
    ) -> Result<http::Response<Bytes>, GatewayError> {
        let name = function.record.name.as_str();
        let Admission { caller, settings } = admission;
        // Taken once the body is in, so slow uploads never hold a permit.
        let _permit =
            tokio::time::timeout(PERMIT_WAIT, function.concurrency.clone().acquire_owned())
                .await
                .ok()
                .and_then(Result::ok)
                .ok_or_else(|| GatewayError::Busy(name.to_string()))?;
        let strip_authorization = matches!(
            &function.record.trigger,
            Trigger::Http(t) if t.auth == crate::functions::HttpAuth::Sas
        );
        let trace = call
            .headers
            .get(crate::trace::TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(TraceParent::parse)
            .unwrap_or_else(TraceParent::new_root)
            .child();
        let correlation_id = call
            .headers
            .get("x-correlation-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .map_or_else(|| trace.trace_id.clone(), str::to_string);
        let invocation_id = uuid::Uuid::new_v4().simple().to_string();
        let request = guest_request(&call, &caller, &trace, strip_authorization);
        let host = HostContext::new(
            Invocation {
                function: name.to_string(),
                invocation_id: invocation_id.clone(),
                correlation_id: Some(correlation_id.clone()),
                log_budget: function.record.limits.log_budget_bytes(),
                settings,
                trace: trace.clone(),
            },
            self.services.clone(),
        );
        let span = tracing::info_span!("http", function = name, version = function.record.version, invocation = %invocation_id, path = call.uri.path());
        let stamp = self.services.traces.stamp();
        let started = Instant::now();
        let result = tracing::Instrument::instrument(
            self.functions.runtime().serve_http(
                &function.handler,
                function.record.limits.invocation(),
                host,
                request,
                if call.scheme == "https" {
                    Scheme::Https
                } else {
                    Scheme::Http
                },
                MAX_RESPONSE_BYTES,
            ),
            span.clone(),
        )
        .await;
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        let (outcome, reason) = match &result {
            Ok(response) => (response.status().as_u16().to_string(), None),
            Err(e) => {
                let _enter = span.enter();
                tracing::warn!(error = %e, duration_ms, "HTTP handler failed");
                ("error".to_string(), Some(e.to_string()))
            }
        };
        self.services.traces.record_stamped(
            &correlation_id,
            &Step {
                correlation_id: String::new(),
                at: clock::to_rfc3339(stamp.at_ms),
                kind: StepKind::Invoke,
                function: Some(name.to_string()),
                entity: format!("{} {}", call.method, call.uri.path()),
                outcome,
                reason,
                duration_ms,
                delivery_count: None,
                trace_id: Some(trace.trace_id.clone()),
            },
            stamp,
        );
        let mut response = result.map_err(|error| GatewayError::Failed {
            function: name.to_string(),
            invocation_id: invocation_id.clone(),
            error,
        })?;
        if let Ok(value) = header::HeaderValue::from_str(&invocation_id) {
            response.headers_mut().insert(INVOCATION_HEADER, value);
        }
        Ok(response)
    }
}

/// The request the handler sees: as received, with the caller named by
/// the host (never by the client), its credentials removed (the API key
/// header and `code` parameter; a SAS token, which is reusable across the
/// namespace; a bearer token stays, for the handler's own claim checks),
/// and the invocation's `traceparent`.
fn guest_request(
    call: &HttpCall,
    caller: &Caller,
    trace: &TraceParent,
    strip_authorization: bool,
) -> http::Request<Bytes> {
    let mut headers = call.headers.clone();
    headers.remove("x-functions-key");
    headers.remove(PRINCIPAL_HEADER);
    if strip_authorization {
        headers.remove(header::AUTHORIZATION);
    }
    if let Ok(value) = header::HeaderValue::from_str(&caller.principal) {
        headers.insert(PRINCIPAL_HEADER, value);
    }
    if let Ok(value) = header::HeaderValue::from_str(&trace.header()) {
        headers.insert(crate::trace::TRACEPARENT, value);
    }
    // wasi:http needs an authority; HTTP/1.0 clients may send no Host.
    if !headers.contains_key(header::HOST) {
        headers.insert(header::HOST, header::HeaderValue::from_static("localhost"));
    }
    let query: Vec<&str> = call
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty() && *pair != "code" && !pair.starts_with("code="))
        .collect();
    let path_and_query = if query.is_empty() {
        call.uri.path().to_string()
    } else {
        format!("{}?{}", call.uri.path(), query.join("&"))
    };
    let mut request = http::Request::new(call.body.clone());
    *request.method_mut() = call.method.clone();
    *request.uri_mut() = path_and_query
        .parse()
        .unwrap_or_else(|_| Uri::from_static("/"));
    *request.headers_mut() = headers;
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handler_never_sees_the_callers_key_or_a_forged_principal() {
        let mut headers = HeaderMap::new();
        headers.insert("x-functions-key", "secret".parse().unwrap());
        headers.insert(PRINCIPAL_HEADER, "admin".parse().unwrap());
        headers.insert(
            header::AUTHORIZATION,
            "SharedAccessSignature sr=x".parse().unwrap(),
        );
        let call = HttpCall {
            scheme: "http",
            method: Method::POST,
            uri: "/api/orders?code=secret&dry=1".parse().unwrap(),
            headers,
            body: Bytes::new(),
            peer: None,
            code: Some("secret".into()),
        };
        let caller = Caller {
            principal: "shop".into(),
            rate_key: "key:shop".into(),
        };
        let request = guest_request(&call, &caller, &TraceParent::new_root(), true);
        assert_eq!(request.uri(), "/api/orders?dry=1");
        assert_eq!(request.headers()[PRINCIPAL_HEADER], "shop");
        assert!(!request.headers().contains_key("x-functions-key"));
        assert!(!request.headers().contains_key(header::AUTHORIZATION));
        assert!(request.headers().contains_key(crate::trace::TRACEPARENT));
    }
}
