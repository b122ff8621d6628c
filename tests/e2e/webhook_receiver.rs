//! A real HTTP endpoint for webhook tests: it answers Event Grid's
//! validation handshake and the CloudEvents abuse-protection `OPTIONS` as
//! told, answers notifications with scripted statuses, and records every
//! request it gets.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// One request the endpoint got.
#[derive(Clone, Debug)]
pub(crate) struct Recorded {
    pub(crate) method: String,
    /// Header names lower-cased.
    pub(crate) headers: HashMap<String, String>,
    pub(crate) body: Value,
}

impl Recorded {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The events a notification carried (one CloudEvent or an array).
    pub(crate) fn events(&self) -> Vec<Value> {
        match &self.body {
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        }
    }
}

/// How the endpoint answers.
pub(crate) struct Behaviour {
    /// Echo `validationCode` in the handshake (else answer 200 without it).
    pub(crate) echo_validation_code: bool,
    /// Answer the abuse-protection `OPTIONS` with `WebHook-Allowed-Origin`.
    pub(crate) allow_origin: bool,
    /// Statuses for the next notifications; 200 once used up.
    pub(crate) statuses: VecDeque<u16>,
    /// Answer notifications with this status forever (overrides `statuses`).
    pub(crate) always: Option<u16>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            echo_validation_code: true,
            allow_origin: true,
            statuses: VecDeque::new(),
            always: None,
        }
    }
}

#[derive(Default)]
struct State {
    behaviour: Behaviour,
    requests: Vec<Recorded>,
}

/// The running endpoint; stops with the test's runtime.
pub(crate) struct WebhookReceiver {
    pub(crate) url: String,
    state: Arc<Mutex<State>>,
}

impl WebhookReceiver {
    pub(crate) async fn start(behaviour: Behaviour) -> WebhookReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the webhook receiver");
        let url = format!(
            "http://{}/hooks/events",
            listener.local_addr().expect("address")
        );
        let state = Arc::new(Mutex::new(State {
            behaviour,
            requests: Vec::new(),
        }));
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| answer(state.clone(), request));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        WebhookReceiver { url, state }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes how notifications are answered from now on.
    pub(crate) fn answer_always(&self, status: Option<u16>) {
        self.state().behaviour.always = status;
    }

    /// Every request so far.
    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// Event deliveries so far (not handshakes).
    pub(crate) fn notifications(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.header("aeg-event-type") == Some("Notification"))
            .collect()
    }

    /// The events delivered so far, across notifications.
    pub(crate) fn delivered_events(&self) -> Vec<Value> {
        self.notifications()
            .iter()
            .flat_map(Recorded::events)
            .collect()
    }

    /// Waits until `count` notifications came, then returns them.
    pub(crate) async fn wait_for_notifications(&self, count: usize) -> Vec<Recorded> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.notifications();
            if got.len() >= count {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} notifications, expected {count}: {:#?}",
                got.len(),
                self.requests()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `count` events were delivered, then returns them.
    pub(crate) async fn wait_for_events(&self, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.delivered_events();
            if got.len() >= count {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} events delivered, expected {count}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn answer(
    state: Arc<Mutex<State>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().to_string();
    let headers: HashMap<String, String> = request
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let bytes = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let recorded = Recorded {
        method: method.clone(),
        headers,
        body,
    };
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    state.requests.push(recorded.clone());
    let respond = |status: u16, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
        response
    };
    if method == "OPTIONS" {
        let origin = recorded
            .header("webhook-request-origin")
            .unwrap_or_default()
            .to_string();
        if !state.behaviour.allow_origin {
            return Ok(respond(403, String::new()));
        }
        let mut response = respond(200, String::new());
        response.headers_mut().insert(
            "WebHook-Allowed-Origin",
            origin
                .parse()
                .unwrap_or(hyper::header::HeaderValue::from_static("*")),
        );
        return Ok(response);
    }
    if recorded.header("aeg-event-type") == Some("SubscriptionValidation") {
        let code = recorded.body[0]["data"]["validationCode"].clone();
        let body = if state.behaviour.echo_validation_code {
            json!({ "validationResponse": code }).to_string()
        } else {
            String::new()
        };
        return Ok(respond(200, body));
    }
    let status = match state.behaviour.always {
        Some(status) => status,
        None => state.behaviour.statuses.pop_front().unwrap_or(200),
    };
    Ok(respond(status, String::new()))
}
