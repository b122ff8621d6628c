//! HTTP-triggered functions on the front door: routes under `/api/`, auth
//! by SAS, API key or JWT (against a real JWKS endpoint), per-caller rate
//! limits, failures, and the trace of what a request caused.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::order_flow::deploy_order_flow;
use crate::support::{ACCEPT_ORDER, BUSY, HTTP_PROBE, Host, SLUICE, component};

const PARTNER_A_KEY: &str = "partner-a-0123456789abcdef";
const PARTNER_B_KEY: &str = "partner-b-0123456789abcdef";

/// Deploys the probe at `/api/probe/{*rest}` with `options` appended to the query.
async fn deploy_probe(host: &Host, name: &str, options: &str) {
    let r = host
        .deploy(
            name,
            &component(HTTP_PROBE),
            &format!("route=probe/{{*rest}}{options}"),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
}

async fn set_api_keys(host: &Host, function: &str) {
    let r = host
        .put_json(
            &format!("/api/functions/{function}/settings"),
            json!({ "apiKeys": { "partner-a": PARTNER_A_KEY, "partner-b": PARTNER_B_KEY } }),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}

/// A client that sends no credentials of its own.
fn anonymous() -> reqwest::Client {
    reqwest::Client::new()
}

/// A GET to `path` without credentials (add them per test).
fn get(host: &Host, path: &str) -> reqwest::RequestBuilder {
    anonymous().get(host.at(path))
}

/// A POST to `path` without credentials (add them per test).
fn post(host: &Host, path: &str) -> reqwest::RequestBuilder {
    anonymous().post(host.at(path))
}

async fn error_of(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[tokio::test]
async fn http_handler_enqueues_the_request_and_answers_202_for_a_valid_api_key() {
    let host = Host::start().await;
    host.create_queue("accepted", json!({})).await;
    set_api_keys(&host, "probe").await;
    deploy_probe(&host, "probe", "&methods=POST,GET&auth=apiKey").await;
    let r = post(&host, "/api/probe/enqueue")
        .header("x-functions-key", PARTNER_A_KEY)
        .body("order A-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(r.headers().contains_key("x-sluice-invocation-id"));
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["sequenceNumber"], 1);
    let queued = host.wait_for_messages("accepted", 1).await;
    assert_eq!(queued[0]["body"], "order A-1");
    // The handler was told who called: the key's name.
    assert_eq!(queued[0]["subject"], "partner-a", "{}", queued[0]);

    // `?code=` works as well, and the principal header cannot be forged.
    let r = get(
        &host,
        &format!("/api/probe/echo?q=a%20b&code={PARTNER_B_KEY}"),
    )
    .header("x-sluice-principal", "admin")
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["principal"], "partner-b");
    assert_eq!(echo["q"], "a b");
    assert_eq!(echo["path"], "/api/probe/echo");

    // Denied: no key, a wrong key. Nothing more is enqueued.
    for (key, why) in [
        (None, "x-functions-key"),
        (Some("not-the-key-at-all-0000"), "does not match"),
    ] {
        let mut request = post(&host, "/api/probe/enqueue").body("sneaky");
        if let Some(key) = key {
            request = request.header("x-functions-key", key);
        }
        let (status, message) = error_of(request.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}");
        assert!(message.contains(why), "{message}");
    }
    assert_eq!(host.peek("accepted").await.len(), 1);

    // The settings show key names, never keys.
    let settings = host.get_json("/api/functions/probe/settings").await;
    assert_eq!(settings["apiKeys"], json!(["partner-a", "partner-b"]));
    assert!(!settings.to_string().contains(PARTNER_A_KEY));
}

#[tokio::test]
async fn sas_is_the_default_auth_and_needs_the_send_right_on_the_route() {
    let host = Host::start().await;
    deploy_probe(&host, "probe", "").await;

    let r = get(&host, "/api/probe/echo").send().await.unwrap();
    assert_eq!(r.status(), 401);

    // The host's own client carries the root policy's token.
    let r = host
        .http
        .get(host.at("/api/probe/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["principal"], "RootManageSharedAccessKey");

    // A policy with Listen only proves who it is but may not call: 403.
    let r = host
        .http
        .put(host.at("/api/policies/reader?rights=Listen"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let reader: Value = r.json().await.unwrap();
    let connection_string = reader["connectionString"].as_str().unwrap().to_string();
    let output = std::process::Command::new(SLUICE)
        .args([
            "sas",
            "token",
            "--url",
            &host.url,
            "--with",
            &connection_string,
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let token = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let (status, message) = error_of(
        get(&host, "/api/probe/echo")
            .header("authorization", token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(message.contains("Send"), "{message}");
}

/// An OpenID issuer on a local port: discovery document and JWK set.
struct Issuer {
    url: String,
    key: rcgen::KeyPair,
    kid: &'static str,
}

impl Issuer {
    async fn start() -> Issuer {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let point = key.public_key_raw().to_vec(); // 0x04 || x || y
        let kid = "key-1";
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        let url = format!("http://{address}");
        let jwks = json!({ "keys": [{
            "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]});
        let discovery = json!({ "issuer": url, "jwks_uri": format!("{url}/keys") });
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (jwks, discovery) = (jwks.clone(), discovery.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let body = match request.uri().path() {
                            "/.well-known/openid-configuration" => discovery.to_string(),
                            "/keys" => jwks.to_string(),
                            _ => String::new(),
                        };
                        async move {
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(if body.is_empty() { 404 } else { 200 })
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Issuer { url, key, kid }
    }

    fn token(&self, claims: Value, kid: &str) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(kid.to_string());
        let key = jsonwebtoken::EncodingKey::from_ec_der(&self.key.serialize_der());
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn jwt_bearer_tokens_are_checked_against_the_issuers_published_keys() {
    let host = Host::start().await;
    let issuer = Issuer::start().await;
    deploy_probe(
        &host,
        "probe",
        &format!("&auth=jwt&issuer={}&audiences=api://orders", issuer.url),
    )
    .await;
    let call = |token: Option<String>| {
        let mut request = get(&host, "/api/probe/echo");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let good =
        json!({ "iss": issuer.url, "aud": "api://orders", "sub": "user-42", "exp": now() + 600 });

    let r = call(Some(issuer.token(good.clone(), issuer.kid)))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["principal"], "user-42");

    let r = call(None).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");

    let denied = [
        (json!({ "exp": now() - 3600 }), issuer.kid, "expired"),
        (json!({ "aud": "api://other" }), issuer.kid, "audience"),
        (
            json!({ "iss": "https://evil.example/" }),
            issuer.kid,
            "issuer",
        ),
        (json!({}), "unknown-key", "no key `unknown-key`"),
    ];
    for (changes, kid, why) in denied {
        let mut claims = good.clone();
        for (k, v) in changes.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let r = call(Some(issuer.token(claims, kid))).await.unwrap();
        assert_eq!(r.status(), 401, "{why}");
        let challenge = r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(challenge.contains("invalid_token"), "{challenge}");
        let (_, message) = error_of(r).await;
        assert!(message.contains(why), "{why}: {message}");
    }
    // A token signed by another key with the issuer's key id.
    let forger = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(issuer.kid.to_string());
    let forged = jsonwebtoken::encode(
        &header,
        &good,
        &jsonwebtoken::EncodingKey::from_ec_der(&forger.serialize_der()),
    )
    .unwrap();
    let (status, message) = error_of(call(Some(forged)).await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(message.contains("signature"), "{message}");
}

#[tokio::test]
async fn a_caller_past_its_rate_limit_gets_429_with_retry_after_while_others_are_served() {
    let host = Host::start().await;
    set_api_keys(&host, "probe").await;
    deploy_probe(&host, "probe", "&auth=apiKey&rateLimit=2/60").await;
    let call = |key: &'static str| {
        get(&host, "/api/probe/echo")
            .header("x-functions-key", key)
            .send()
    };
    assert_eq!(call(PARTNER_A_KEY).await.unwrap().status(), 200);
    assert_eq!(call(PARTNER_A_KEY).await.unwrap().status(), 200);
    let r = call(PARTNER_A_KEY).await.unwrap();
    assert_eq!(r.status(), 429);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    // Another key has a budget of its own.
    assert_eq!(call(PARTNER_B_KEY).await.unwrap().status(), 200);
}

#[tokio::test]
async fn routes_are_matched_by_method_and_conflicting_reserved_or_mismatched_deploys_are_refused() {
    let host = Host::start().await;
    deploy_probe(&host, "probe", "&methods=POST&auth=anonymous").await;

    let r = get(&host, "/api/probe/echo").send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let r = post(&host, "/api/probe/echo").send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Paths no route matches are still the management API's.
    let r = get(&host, "/api/nothing").send().await.unwrap();
    assert_eq!(r.status(), 401);

    let bytes = std::fs::read(component(HTTP_PROBE)).unwrap();
    let deploy = |query: String, bytes: Vec<u8>| {
        host.http
            .put(host.at(&format!("/api/functions/other?{query}")))
            .body(bytes)
            .send()
    };
    let (status, message) = error_of(
        deploy("route=probe/{*all}&methods=POST".into(), bytes.clone())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        message.contains("already served by function `probe`"),
        "{message}"
    );
    // Another method on the same route is fine.
    let r = deploy("route=probe/{*all}&methods=DELETE".into(), bytes.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let (status, message) = error_of(
        deploy("route=queues/{q}".into(), bytes.clone())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message.contains("management API"), "{message}");

    host.create_queue("jobs", json!({})).await;
    let (status, message) =
        error_of(deploy("queue=jobs".into(), bytes.clone()).await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message.contains("an HTTP component"), "{message}");
    let busy = std::fs::read(component(BUSY)).unwrap();
    let (status, message) = error_of(deploy("route=jobs".into(), busy).await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message.contains("http_handler"), "{message}");
}

#[tokio::test]
async fn a_failing_handler_answers_500_and_a_spinning_one_504_while_others_are_served() {
    let host = Host::start().await;
    deploy_probe(&host, "probe", "&auth=anonymous&timeoutSecs=1").await;

    let (status, message) = error_of(post(&host, "/api/probe/panic").send().await.unwrap()).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(message.contains("failed (invocation"), "{message}");
    assert!(
        !message.contains("probe asked to panic"),
        "details stay in the log: {message}"
    );

    let spinning = tokio::spawn({
        let url = host.at("/api/probe/spin");
        async move { anonymous().post(url).send().await.unwrap().status() }
    });
    // Served meanwhile.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = post(&host, "/api/probe/echo").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(spinning.await.unwrap(), StatusCode::GATEWAY_TIMEOUT);
    assert!(host.log().contains("probe asked to panic"));
}

#[tokio::test]
async fn an_http_call_continues_the_callers_trace_and_is_recorded_with_what_it_sent() {
    let host = Host::start().await;
    host.create_queue("accepted", json!({})).await;
    deploy_probe(&host, "probe", "&auth=anonymous").await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = post(&host, "/api/probe/echo")
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    let echo: Value = r.json().await.unwrap();
    let seen = echo["traceparent"].as_str().unwrap();
    assert!(seen.starts_with(&format!("00-{trace_id}-")), "{seen}");
    assert!(!seen.contains("00f067aa0ba902b7"), "a child span: {seen}");

    let r = post(&host, "/api/probe/enqueue")
        .header("x-correlation-id", "order-77")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let queued = host.wait_for_messages("accepted", 1).await;
    assert_eq!(queued[0]["correlationId"], "order-77", "{}", queued[0]);
    let trace = host.get_json("/api/traces/order-77").await;
    let steps = trace["steps"].as_array().unwrap();
    assert_eq!(steps[0]["kind"], "invoke", "{trace}");
    assert_eq!(steps[0]["entity"], "POST /api/probe/enqueue");
    assert_eq!(steps[0]["outcome"], "202");
    assert!(
        steps
            .iter()
            .any(|s| s["kind"] == "send" && s["entity"] == "accepted"),
        "{trace}"
    );
}

#[tokio::test]
async fn orders_posted_to_the_front_door_flow_through_to_fulfilment() {
    let host = Host::start().await;
    deploy_order_flow(&host).await;
    let r = host
        .put_json(
            "/api/functions/accept-order/settings",
            json!({ "apiKeys": { "shop": PARTNER_A_KEY } }),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = host
        .deploy(
            "accept-order",
            &component(ACCEPT_ORDER),
            "route=orders&methods=POST&auth=apiKey",
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let place_order = |body: &'static str| {
        post(&host, "/api/orders")
            .header("x-functions-key", PARTNER_A_KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = place_order(r#"{"id":"H-1","customer":"ada","lines":[{"sku":"BOOK-1","quantity":2,"unit_price_cents":1500}]}"#)
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap()["accepted"], "H-1");
    assert_eq!(place_order("not json").await.unwrap().status(), 400);
    assert_eq!(
        place_order(r#"{"id":"H-2","lines":[]}"#)
            .await
            .unwrap()
            .status(),
        422
    );

    let fulfilled = host.wait_for_messages("fulfilled-orders", 1).await;
    let event: Value = serde_json::from_str(fulfilled[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(event["data"]["id"], "H-1", "{event}");
    assert_eq!(event["data"]["total_cents"], 3000);
}

#[tokio::test]
async fn an_unreachable_issuer_is_answered_503_without_internal_detail() {
    let host = Host::start().await;
    let issuer = Issuer::start().await;
    // Nothing listens on port 9 of this machine.
    deploy_probe(
        &host,
        "probe",
        &format!(
            "&auth=jwt&issuer={}&audiences=*&jwksUri=http://127.0.0.1:9/keys",
            issuer.url
        ),
    )
    .await;
    let token = issuer.token(
        json!({ "iss": issuer.url, "aud": "anything", "sub": "u", "exp": now() + 600 }),
        issuer.kid,
    );
    let (status, message) = error_of(
        get(&host, "/api/probe/echo")
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(message.contains("retry later"), "{message}");
    assert!(!message.contains("127.0.0.1:9"), "{message}");
    assert!(host.log().contains("cannot fetch the issuer's keys"));
}
