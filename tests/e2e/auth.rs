//! Shared access signatures at the front door: who may do what.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Host, SLUICE};

/// A token made by `sluice sas token` with another connection string.
fn token_with(
    host: &Host,
    connection_string: &str,
    resource: Option<&str>,
    ttl_secs: i64,
) -> String {
    let mut command = std::process::Command::new(SLUICE);
    command
        .args([
            "sas",
            "token",
            "--url",
            &host.url,
            "--with",
            connection_string,
        ])
        .arg(format!("--ttl-secs={ttl_secs}"));
    if let Some(resource) = resource {
        command.args(["--resource", resource]);
    }
    let output = command.output().expect("run sluice sas token");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

async fn create_policy(host: &Host, name: &str, rights: &str, entity: Option<&str>) -> String {
    let mut url = host.at(&format!("/api/policies/{name}?rights={rights}"));
    if let Some(entity) = entity {
        url.push_str(&format!("&entity={entity}"));
    }
    let r = host.http.put(url).send().await.expect("create policy");
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.expect("json");
    body["connectionString"]
        .as_str()
        .expect("connection string")
        .to_string()
}

#[tokio::test]
async fn requests_without_a_valid_token_are_refused_with_401() {
    let host = Host::start().await;
    host.create_queue("private", json!({})).await;
    let anonymous = reqwest::Client::new();

    let r = anonymous
        .post(host.at("/private/messages"))
        .body("x")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body = r.text().await.expect("body");
    assert!(body.starts_with("<Error><Code>401</Code>"), "{body}");

    let r = anonymous
        .get(host.at("/api/queues"))
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "Unauthorized");

    // A tampered signature, and an expired token.
    let token = host.token().replace("&sig=", "&sig=A");
    let r = anonymous
        .post(host.at("/private/messages"))
        .header("authorization", token)
        .body("x")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let expired = token_with(&host, &host.connection_string(), None, -10);
    let r = anonymous
        .post(host.at("/private/messages"))
        .header("authorization", expired)
        .body("x")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.expect("body").contains("expired"));

    // Liveness needs no credentials.
    assert_eq!(
        anonymous
            .get(host.at("/health"))
            .send()
            .await
            .expect("health")
            .status(),
        StatusCode::OK
    );
    assert!(
        host.peek("private").await.is_empty(),
        "nothing refused got in"
    );
}

#[tokio::test]
async fn rights_decide_what_a_valid_token_may_do() {
    let host = Host::start().await;
    host.create_queue("orders", json!({})).await;
    host.create_queue("payroll", json!({})).await;
    let sender = create_policy(&host, "shop", "Send", None).await;
    let reader = create_policy(&host, "orders-reader", "Listen", Some("orders")).await;
    let client = reqwest::Client::new();

    let send_token = token_with(&host, &sender, None, 600);
    let r = client
        .post(host.at("/orders/messages"))
        .header("authorization", &send_token)
        .body("o1")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    // Send does not include Listen or Manage: 403, not 401.
    let r = client
        .post(host.at("/orders/messages/head?timeout=0"))
        .header("authorization", &send_token)
        .send()
        .await
        .expect("receive");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = client
        .put(host.at("/api/queues/new"))
        .header("authorization", &send_token)
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // An entity-scoped Listen policy reads its queue only.
    let orders_url = format!("{}/orders", host.url);
    let read_token = token_with(&host, &reader, Some(&orders_url), 600);
    let r = client
        .post(host.at("/orders/messages/head?timeout=0"))
        .header("authorization", &read_token)
        .send()
        .await
        .expect("receive");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = client
        .post(host.at("/payroll/messages/head?timeout=0"))
        .header("authorization", &read_token)
        .send()
        .await
        .expect("receive");
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "a token for /orders does not cover /payroll"
    );

    // Scheme, host and port may differ behind a proxy: the path decides.
    let proxied = token_with(
        &host,
        &sender,
        Some("https://sluice.example.com:443/orders"),
        600,
    );
    let r = client
        .post(host.at("/orders/messages"))
        .header("authorization", proxied)
        .body("o2")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);

    // Deleting a policy revokes its tokens at once.
    assert_eq!(
        host.http
            .delete(host.at("/api/policies/shop"))
            .send()
            .await
            .expect("delete")
            .status(),
        StatusCode::OK
    );
    let r = client
        .post(host.at("/orders/messages"))
        .header("authorization", &send_token)
        .body("o3")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(host.peek("orders").await.len(), 2);

    let policies: Vec<Value> = host
        .http
        .get(host.at("/api/policies"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert!(
        policies.iter().all(|p| p.get("primaryKey").is_none()),
        "listings never show keys"
    );
}
