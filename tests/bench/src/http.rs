//! The HTTP/1.1 client of the Sluice hot paths (send, receive, complete):
//! hyper's connection API behind a plain pool of keep-alive connections.
//!
//! Why not `reqwest` there: on these 2-core machines the client shares the
//! CPUs with the server it measures, and `reqwest` spent about 40 µs of CPU
//! per request (URL parsing, header maps, a timer per request, its pool),
//! more than the server's own work; `lapin` and `async-nats` spend a
//! fraction of that per message. This client sends the same requests on
//! the wire: the same paths, headers and bodies, one request per message,
//! over keep-alive connections as any Service Bus REST client would.
//! Management calls stay on `reqwest`.

use std::net::SocketAddr;
use std::sync::Mutex;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Keep-alive connections to one host, opened on demand and reused.
pub(crate) struct Pool {
    addr: SocketAddr,
    host: HeaderValue,
    authorization: HeaderValue,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

/// An answer: its status and whole body.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
}

impl Pool {
    /// A pool for `url` (`http://host:port`), every request signed with `token`.
    pub(crate) fn new(url: &str, token: &str) -> anyhow::Result<Pool> {
        let authority = url
            .strip_prefix("http://")
            .with_context(|| format!("the lean client speaks plain http only, not {url}"))?
            .trim_end_matches('/');
        let addr: SocketAddr = authority
            .parse()
            .with_context(|| format!("{authority} is not an ip:port"))?;
        Ok(Pool {
            addr,
            host: authority
                .parse()
                .context("the host is not a header value")?,
            authorization: token
                .parse()
                .context("the SAS token is not a header value")?,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends one request on an idle connection (or a new one) and reads the
    /// whole answer; the connection goes back to the pool afterwards.
    pub(crate) async fn request(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&'static str>,
        body: Bytes,
    ) -> anyhow::Result<Answer> {
        let mut connection = match self.take_idle() {
            Some(connection) => connection,
            None => self.connect().await?,
        };
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.host.clone())
            .header(AUTHORIZATION, self.authorization.clone());
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        let request = request
            .body(Full::new(body))
            .with_context(|| format!("building a request for {path}"))?;
        let response = connection
            .send_request(request)
            .await
            .with_context(|| format!("request to {path} failed"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the answer of {path}"))?
            .to_bytes();
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(connection);
        Ok(Answer { status, body })
    }

    /// Like [`Pool::request`], failing unless the status is one of `ok`.
    pub(crate) async fn expect(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&'static str>,
        body: Bytes,
        ok: &[StatusCode],
        what: &str,
    ) -> anyhow::Result<Answer> {
        let answer = self.request(method, path, content_type, body).await?;
        if !ok.contains(&answer.status) {
            bail!(
                "{what}: {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            );
        }
        Ok(answer)
    }

    /// An idle connection that can take a request now; closed ones are dropped.
    fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(connection) = idle.pop() {
            if connection.is_ready() {
                return Some(connection);
            }
        }
        None
    }

    async fn connect(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let stream = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        tokio::spawn(async move {
            // Ends when the pool drops the sender or the server closes.
            let _ = connection.await;
        });
        Ok(sender)
    }
}
