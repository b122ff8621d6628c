//! HTTP-triggered handlers: a [`Request`] comes in from the host's front
//! door, a [`Response`] goes out.
//!
//! Mark a plain function with [`http_handler`](crate::http_handler); the
//! component then exports the standard `wasi:http/incoming-handler`, and the
//! host routes the function's route to it (`sluice deploy --route orders`
//! serves `/api/orders`). The host checks the caller's credentials and rate
//! limit before the handler runs, and tells it who called in the
//! `x-sluice-principal` header.
//!
//! ```no_run
//! use serde::Deserialize;
//! use sluice_sdk::http::{Request, Response};
//! use sluice_sdk::send::{send, OutgoingMessage};
//!
//! #[derive(Deserialize)]
//! struct Order { id: String, total_cents: u64 }
//!
//! #[sluice_sdk::http_handler]
//! fn accept(request: Request) -> sluice_sdk::Result<Response> {
//!     let Ok(order) = request.json::<Order>() else {
//!         return Ok(Response::problem(400, "the body must be an order as JSON"));
//!     };
//!     if order.total_cents == 0 {
//!         return Ok(Response::problem(422, "total_cents must be above zero"));
//!     }
//!     send("orders", &OutgoingMessage::bytes(request.body().to_vec()).with_message_id(&order.id))?;
//!     Response::json(202, &serde_json::json!({ "accepted": order.id }))
//! }
//! # fn main() {}
//! ```
//!
//! Bodies are read whole before the handler runs and written whole after it
//! returns; the host caps both (see the README's limits).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__private::http_bindings::wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use crate::__private::http_bindings::wasi::io::streams::StreamError;
use crate::error::{Error, Result};

/// An HTTP request, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    path_with_query: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Request {
    /// A request, e.g. for unit tests of a handler.
    ///
    /// ```
    /// use sluice_sdk::http::Request;
    ///
    /// let request = Request::new("POST", "/api/orders?dry-run=1")
    ///     .with_header("content-type", "application/json")
    ///     .with_body(br#"{"id":"A-1"}"#.to_vec());
    /// assert_eq!(request.path(), "/api/orders");
    /// assert_eq!(request.query_param("dry-run").as_deref(), Some("1"));
    /// ```
    pub fn new(method: impl Into<String>, path_with_query: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            path_with_query: path_with_query.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    /// The method, upper case (`GET`, `POST`, ...).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The path, without the query (`/api/orders/42`).
    pub fn path(&self) -> &str {
        self.path_with_query
            .split_once('?')
            .map_or(self.path_with_query.as_str(), |(path, _)| path)
    }

    /// The query string without `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.path_with_query.split_once('?').map(|(_, query)| query)
    }

    /// One query parameter, percent-decoded (`+` is a space); the first
    /// when repeated.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query()?
            .split('&')
            .filter_map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(key) == name).then(|| percent_decode(value))
            })
            .next()
    }

    /// One header as text (case-insensitive name); the first when repeated,
    /// `None` when absent or not UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }

    /// Every header, in order.
    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    /// The caller the host authenticated: an API key's name, a SAS key
    /// name, a JWT's subject, or `anonymous`.
    pub fn principal(&self) -> Option<&str> {
        self.header("x-sluice-principal")
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(&self.body)
            .map_err(|e| Error::msg(format!("the request body is not UTF-8: {e}")))
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::msg(format!("the request body is not the expected JSON: {e}")))
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], escaped) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 2;
            }
            (b'+', None) => out.push(b' '),
            (other, None) => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Response {
    /// An empty response with this status.
    ///
    /// ```
    /// use sluice_sdk::http::Response;
    ///
    /// let response = Response::new(204).with_header("cache-control", "no-store");
    /// assert_eq!(response.status(), 204);
    /// ```
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A JSON response (`content-type: application/json`).
    ///
    /// ```
    /// use sluice_sdk::http::Response;
    ///
    /// let response = Response::json(202, &serde_json::json!({ "accepted": "A-1" })).unwrap();
    /// assert_eq!(response.body(), br#"{"accepted":"A-1"}"#);
    /// ```
    pub fn json<T: Serialize>(status: u16, value: &T) -> Result<Self> {
        let body = serde_json::to_vec(value)?;
        Ok(Self::new(status)
            .with_header("content-type", "application/json")
            .with_body(body))
    }

    /// A plain-text response (`content-type: text/plain; charset=utf-8`).
    pub fn text(status: u16, text: impl Into<String>) -> Self {
        Self::new(status)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(text.into().into_bytes())
    }

    /// An error response in the host's own shape,
    /// `{"error":{"code":"<status>","message":"..."}}`, so callers read
    /// handler errors and host errors alike.
    ///
    /// ```
    /// use sluice_sdk::http::Response;
    ///
    /// let response = Response::problem(422, "total_cents must be above zero");
    /// assert_eq!(response.status(), 422);
    /// ```
    pub fn problem(status: u16, message: &str) -> Self {
        let body = serde_json::json!({
            "error": { "code": status.to_string(), "message": message }
        });
        Self::new(status)
            .with_header("content-type", "application/json")
            .with_body(body.to_string().into_bytes())
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Every header, in order.
    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// What an `#[http_handler]` function may return: a [`Response`], or a
/// `Result` of one. `Err` answers a plain 500 and writes the error's text to
/// the host's log (internal details never reach the caller); answer with
/// [`Response::problem`] to tell the caller what is wrong.
pub trait IntoResponse {
    /// The response to send.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl<R: IntoResponse> IntoResponse for Result<R, Error> {
    fn into_response(self) -> Response {
        match self {
            Ok(response) => response.into_response(),
            Err(error) => {
                log_failure(&error);
                Response::problem(
                    500,
                    "the handler failed; the host log has the details (see x-sluice-invocation-id)",
                )
            }
        }
    }
}

/// Writes a handler's error to the host's log (only a component has one).
fn log_failure(error: &Error) {
    #[cfg(target_family = "wasm")]
    crate::log::error(format!("HTTP handler failed: {error}"));
    #[cfg(not(target_family = "wasm"))]
    let _ = error;
}

/// Reads an incoming request whole.
pub(crate) fn read_request(request: IncomingRequest) -> Result<Request> {
    let method = match request.method() {
        Method::Get => "GET".to_string(),
        Method::Head => "HEAD".to_string(),
        Method::Post => "POST".to_string(),
        Method::Put => "PUT".to_string(),
        Method::Delete => "DELETE".to_string(),
        Method::Connect => "CONNECT".to_string(),
        Method::Options => "OPTIONS".to_string(),
        Method::Trace => "TRACE".to_string(),
        Method::Patch => "PATCH".to_string(),
        Method::Other(other) => other,
    };
    let path_with_query = request.path_with_query().unwrap_or_else(|| "/".to_string());
    let headers = request.headers().entries();
    let incoming = request
        .consume()
        .map_err(|()| Error::msg("the request body was already taken"))?;
    let body = read_body(&incoming)?;
    // Trailers are not offered to handlers.
    drop(IncomingBody::finish(incoming));
    Ok(Request {
        method,
        path_with_query,
        headers,
        body,
    })
}

fn read_body(incoming: &IncomingBody) -> Result<Vec<u8>> {
    let stream = incoming
        .stream()
        .map_err(|()| Error::msg("the request body stream was already taken"))?;
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(body),
            Err(StreamError::LastOperationFailed(error)) => {
                return Err(Error::msg(format!(
                    "cannot read the request body: {}",
                    error.to_debug_string()
                )));
            }
        }
    }
}

/// Writes a response whole; a response the host cannot take (a bad header
/// name, say) becomes a 500 that says why.
pub(crate) fn write_response(response: Response, out: ResponseOutparam) {
    let (response, (outgoing, body)) = match prepare(&response) {
        Ok(parts) => (response, parts),
        Err(reason) => {
            let fallback = Response::problem(500, &reason);
            match prepare(&fallback) {
                Ok(parts) => (fallback, parts),
                // Nothing was set: the host answers 500 for a missing response.
                Err(_) => return,
            }
        }
    };
    let Ok(stream) = body.write() else {
        return;
    };
    ResponseOutparam::set(out, Ok(outgoing));
    // wasi:io allows at most 4096 bytes per blocking write.
    for chunk in response.body.chunks(4096) {
        if stream.blocking_write_and_flush(chunk).is_err() {
            return; // The caller went away.
        }
    }
    drop(stream);
    let _ = OutgoingBody::finish(body, None);
}

fn prepare(response: &Response) -> std::result::Result<(OutgoingResponse, OutgoingBody), String> {
    let fields = Fields::from_list(&response.headers)
        .map_err(|e| format!("the handler's response has an invalid header: {e:?}"))?;
    let outgoing = OutgoingResponse::new(fields);
    outgoing.set_status_code(response.status).map_err(|()| {
        format!(
            "the handler's response status {} is invalid",
            response.status
        )
    })?;
    let body = outgoing
        .body()
        .map_err(|()| "the response body was already taken".to_string())?;
    Ok((outgoing, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_percent_decoded() {
        let request = Request::new("GET", "/api/search?q=a%20b+c&empty&x=%zz");
        assert_eq!(request.query_param("q").as_deref(), Some("a b c"));
        assert_eq!(request.query_param("empty").as_deref(), Some(""));
        assert_eq!(request.query_param("x").as_deref(), Some("%zz"));
        assert_eq!(request.query_param("missing"), None);
    }

    #[test]
    fn headers_are_found_case_insensitively() {
        let request = Request::new("GET", "/").with_header("X-Sluice-Principal", "partner-a");
        assert_eq!(request.principal(), Some("partner-a"));
    }

    #[test]
    fn an_error_result_answers_500_without_its_text() {
        let result: Result<Response> = Err(Error::msg("db password rejected"));
        let response = result.into_response();
        assert_eq!(response.status(), 500);
        let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("host log"), "{message}");
        assert!(!message.contains("password"), "{message}");
    }
}
