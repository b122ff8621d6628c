//! The HTTP front door: one port, three families of routes.
//!
//! | path                                   | what                                   | module          |
//! |----------------------------------------|----------------------------------------|-----------------|
//! | `/api/{route}` of an HTTP trigger      | HTTP-triggered functions               | [`functions_http`] |
//! | `/api/...`                             | Sluice management (JSON)               | [`management`]  |
//! | `/topics/{topic}/api/events`           | Event Grid / CloudEvents publish       | [`publish`]     |
//! | `/api/topics/...`                      | Event Grid topics and subscriptions    | [`event_grid`]  |
//! | `/{entity}/messages[/head|/{seq}/{lock}]` | Service Bus REST data plane         | [`messaging`]   |
//! | `/{entity}`, `/$Resources/Queues`, ...  | Service Bus management (Atom XML)      | [`admin`]       |
//! | `/health`                              | liveness                               | here            |
//!
//! This is the only module that knows HTTP. Handlers return
//! `Result<Response, ApiError>`; errors become responses ([`error`]).

mod admin;
mod atom;
mod authorize;
mod bus_topics;
mod data;
pub mod error;
mod event_grid;
mod functions_http;
mod management;
mod messaging;
mod publish;
pub mod tls;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub use error::ApiError;

use crate::services::Sluice;

/// What a route handler returns.
pub type ApiResult = Result<Response<Full<Bytes>>, ApiError>;

/// A request taken apart for routing.
pub(crate) struct ApiRequest {
    /// `http` or `https`, as the client connected.
    pub(crate) scheme: &'static str,
    pub(crate) method: Method,
    /// The URI as received.
    pub(crate) uri: hyper::Uri,
    /// The client's address.
    pub(crate) peer: Option<std::net::SocketAddr>,
    pub(crate) path: String,
    /// Percent-decoded path segments.
    pub(crate) segments: Vec<String>,
    pub(crate) query: HashMap<String, String>,
    pub(crate) headers: HeaderMap,
    body: Incoming,
}

impl ApiRequest {
    /// Reads the whole body, refusing more than `limit` bytes with 413.
    pub(crate) async fn body(self, limit: usize) -> Result<Bytes, ApiError> {
        let too_large = || {
            ApiError::too_large(format!(
                "the request body exceeds the {limit}-byte limit of this endpoint"
            ))
        };
        if let Some(length) = self.headers.get(header::CONTENT_LENGTH) {
            let length: usize = length
                .to_str()
                .ok()
                .and_then(|l| l.parse().ok())
                .ok_or_else(|| ApiError::bad_request("Content-Length is not a number"))?;
            if length > limit {
                return Err(too_large());
            }
        }
        match Limited::new(self.body, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
            Err(e) => Err(ApiError::bad_request(format!(
                "cannot read the request body: {e}"
            ))),
        }
    }

    /// A header as text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Host` header, or the listen address when absent.
    pub(crate) fn host(&self) -> String {
        self.header("host").unwrap_or("localhost").to_string()
    }

    /// `http(s)://{Host}`: this host as the client addressed it.
    pub(crate) fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.host())
    }

    /// A numeric query parameter, with a clear error when malformed.
    pub(crate) fn query_number<T: std::str::FromStr>(
        &self,
        name: &str,
    ) -> Result<Option<T>, ApiError> {
        match self.query.get(name) {
            None => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!(
                    "query parameter `{name}` must be a number, got `{text}`"
                ))
            }),
        }
    }
}

/// Largest JSON definition body (entity properties, subscriptions).
pub(crate) const MAX_DEFINITION_BYTES: usize = 64 * 1024;

/// Reads a JSON definition body; an empty body is `T::default()`.
pub(crate) async fn definition<T: serde::de::DeserializeOwned + Default>(
    request: ApiRequest,
    what: &str,
) -> Result<T, ApiError> {
    let body = request.body(MAX_DEFINITION_BYTES).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid {what}: {e}")))
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, value: &impl serde::Serialize) -> ApiResult {
    let body = serde_json::to_vec(value).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            e.to_string(),
        )
    })?;
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// An empty response.
pub(crate) fn empty(status: StatusCode) -> ApiResult {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    Ok(response)
}

fn parse(
    request: Request<Incoming>,
    scheme: &'static str,
    peer: Option<std::net::SocketAddr>,
) -> ApiRequest {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let segments = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let query = parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(k), decode(v))
        })
        .collect();
    ApiRequest {
        scheme,
        method: parts.method,
        uri: parts.uri,
        peer,
        path,
        segments,
        query,
        headers: parts.headers,
        body,
    }
}

async fn route(sluice: Arc<Sluice>, request: ApiRequest) -> ApiResult {
    let first = request.segments.first().map(|s| s.to_ascii_lowercase());
    let service_bus = !matches!(first.as_deref(), None | Some("health" | "api" | "topics"));
    // A function's route checks its callers by its own auth, not the host's policies.
    if first.as_deref() == Some("api")
        && let Some(found) = functions_http::find(&sluice, &request)
    {
        return functions_http::serve(&sluice, found, request).await;
    }
    if let Err(e) = authorize::authorize(&sluice, &request) {
        return Err(if service_bus { e.xml() } else { e });
    }
    match first.as_deref() {
        None => Err(ApiError::not_found(
            "nothing here; see /api/queues, /api/topics or /api/functions",
        )),
        Some("health") => json(StatusCode::OK, &serde_json::json!({ "status": "ok" })),
        Some("api") => management::route(&sluice, request).await,
        Some("topics") if publish::is_publish_path(&request.segments) => {
            publish::route(&sluice, request).await
        }
        _ if request
            .segments
            .iter()
            .any(|s| s.eq_ignore_ascii_case("messages")) =>
        {
            messaging::route(&sluice, request)
                .await
                .map_err(ApiError::xml)
        }
        _ => admin::route(&sluice, request).await.map_err(ApiError::xml),
    }
}

/// Serves the API on `listener` until `shutdown` resolves; over TLS when
/// given an acceptor ([`tls::acceptor`]).
pub async fn serve(
    listener: TcpListener,
    sluice: Arc<Sluice>,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let sluice = sluice.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let result = match tls {
                None => serve_connection(TokioIo::new(stream), sluice, "http", peer).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => {
                        serve_connection(TokioIo::new(stream), sluice, "https", peer).await
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                },
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// Serves the requests of one connection.
async fn serve_connection<IO>(
    io: TokioIo<IO>,
    sluice: Arc<Sluice>,
    scheme: &'static str,
    peer: std::net::SocketAddr,
) -> Result<(), hyper::Error>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let sluice = sluice.clone();
        async move {
            let method = request.method().clone();
            let path = request.uri().path().to_string();
            let response = route(sluice, parse(request, scheme, Some(peer))).await.unwrap_or_else(|e| {
                if e.status.is_server_error() {
                    tracing::warn!(%method, %path, status = e.status.as_u16(), message = %e.message, "request failed");
                } else {
                    tracing::debug!(%method, %path, status = e.status.as_u16(), message = %e.message, "request refused");
                }
                let mut response = e.into_response();
                // The request body may be unread (refused early): close
                // the connection rather than leave it unusable for reuse.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, header::HeaderValue::from_static("close"));
                response
            });
            Ok::<_, Infallible>(response)
        }
    });
    http1::Builder::new().serve_connection(io, service).await
}
