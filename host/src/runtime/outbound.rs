//! Outbound HTTP for guests (`wasi:http/outgoing-handler`), denied by default.
//!
//! A function reaches only the hosts on its allow-list (its settings'
//! `allowedHosts`): `api.example.com` (any port), `127.0.0.1:8080` (that
//! port), `*.example.com` (any subdomain). Any other request fails with
//! wasi:http's `HTTP-request-denied` before a connection is made.

use std::sync::Arc;

use wasmtime_wasi_http::{RequestOptions, WasiHttpHooks};

/// The allow-list a guest's requests are checked against.
#[derive(Clone, Debug, Default)]
pub(super) struct OutboundPolicy {
    /// Named in the warning about a denied request.
    function: String,
    allowed_hosts: Arc<[String]>,
}

/// The future `send_request` hands back to wasmtime-wasi-http.
type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                ),
                wasmtime_wasi_http::Error,
            >,
        > + Send,
>;

impl OutboundPolicy {
    /// A policy allowing `function` exactly these hosts.
    pub(super) fn allowing(function: &str, hosts: &[String]) -> OutboundPolicy {
        OutboundPolicy {
            function: function.to_string(),
            allowed_hosts: hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }

    /// Whether a request to `host` (and `port`, if the URI has one) is allowed.
    pub(super) fn allows(&self, host: &str, port: Option<u16>) -> bool {
        let host = host.to_ascii_lowercase();
        self.allowed_hosts.iter().any(|entry| {
            let (pattern, entry_port) = match entry.rsplit_once(':') {
                Some((h, p)) if p.parse::<u16>().is_ok() => (h, p.parse::<u16>().ok()),
                _ => (entry.as_str(), None),
            };
            let host_ok = match pattern.strip_prefix("*.") {
                Some(domain) => host.ends_with(&format!(".{domain}")),
                None => host == pattern,
            };
            host_ok && entry_port.is_none_or(|p| port == Some(p))
        })
    }
}

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> SendFuture {
        _ = fut;
        let uri = request.uri();
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri.port_u16();
        if !self.allows(&host, port) {
            tracing::warn!(target: "sluice::guest", function = %self.function, %host, ?port, "outbound HTTP denied: not on the function's allowedHosts");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_allowed_by_default() {
        assert!(!OutboundPolicy::default().allows("example.com", None));
    }

    #[test]
    fn hosts_ports_and_wildcards_match_as_documented() {
        let policy = OutboundPolicy::allowing(
            "f",
            &[
                "API.example.com".into(),
                "127.0.0.1:8080".into(),
                "*.internal.test".into(),
            ],
        );
        assert!(policy.allows("api.example.com", Some(443)));
        assert!(policy.allows("127.0.0.1", Some(8080)));
        assert!(!policy.allows("127.0.0.1", Some(8081)));
        assert!(policy.allows("crm.internal.test", None));
        assert!(!policy.allows("internal.test", None));
        assert!(!policy.allows("evil-example.com", None));
    }
}
