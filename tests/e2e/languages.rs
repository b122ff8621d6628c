//! Handlers written in Python and JavaScript, end to end: each example is built
//! by the real `sluice build` (which detects the language and installs
//! componentize-py or jco into the Sluice cache by itself), deployed on a queue
//! of a real host, and fed a valid order and malformed ones.
//!
//! These components embed a language runtime (CPython ~18 MB, SpiderMonkey
//! ~11 MB), so a debug host compiles each for ~10 s at deploy on 2 cores (20 s
//! and more when other tests compile at the same time). The deploy request has
//! no timeout and the message waits start after it returns, so the harness's
//! timeouts are enough. Each test prints its build, deploy and first-invocation
//! times (`--nocapture`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Host, SLUICE, order, repo_root};

const PYTHON_HANDLER: &str = "examples/python-handler";
const JS_HANDLER: &str = "examples/js-handler";

/// The queue the examples listen on (any name: it is the deploy's trigger).
const ORDERS: &str = "orders";
/// The queue the examples send to (fixed in their code).
const SHIPMENTS: &str = "shipments";

/// A built component, with what the build said about itself.
struct Built {
    path: PathBuf,
    elapsed: Duration,
    stderr: String,
}

/// Runs `sluice build <example> --out <tmp>/components/<name>.wasm`, like a user would.
fn sluice_build(example: &str) -> Built {
    let name = example.rsplit('/').next().unwrap_or(example);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("components")
        .join(format!("{name}.wasm"));
    let started = Instant::now();
    let output = Command::new(SLUICE)
        .arg("build")
        .arg(repo_root().join(example))
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run sluice build");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "sluice build {example} failed ({}):\n{stderr}",
        output.status
    );
    // The path alone on stdout, as for Rust handlers.
    let printed = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert_eq!(Path::new(&printed), out, "stdout: {printed}");
    Built {
        path: out,
        elapsed: started.elapsed(),
        stderr,
    }
}

/// Builds `example`, deploys it on `orders`, sends one valid order and two
/// malformed ones, and checks what the handler did with each.
async fn ships_valid_orders_and_dead_letters_bad_ones(
    example: &str,
    handled_by: &str,
    toolchain: &str,
) {
    let built = sluice_build(example);
    assert!(
        built.stderr.contains(&format!("built with {toolchain}")),
        "the build names its toolchain:\n{}",
        built.stderr
    );
    let size = std::fs::metadata(&built.path).expect("component").len();

    let host = Host::start().await;
    host.create_queue(ORDERS, json!({})).await;
    host.create_queue(SHIPMENTS, json!({})).await;
    let deploying = Instant::now();
    let r = host.deploy(handled_by, &built.path, "queue=orders").await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let deployed = deploying.elapsed();

    let r = host.send(ORDERS, &order("A-1").to_string()).await;
    assert_eq!(r.status(), 201);
    let shipped = host.wait_for_messages(SHIPMENTS, 1).await;
    let first_invocation = deploying.elapsed();
    eprintln!(
        "{example}: build {:.1} s, component {:.1} MB, deploy {:.1} s, deploy to first shipment {:.1} s",
        built.elapsed.as_secs_f64(),
        size as f64 / 1e6,
        deployed.as_secs_f64(),
        first_invocation.as_secs_f64(),
    );
    let body: Value = serde_json::from_str(shipped[0]["body"].as_str().expect("text body"))
        .expect("the shipment is JSON");
    assert_eq!(body, json!({ "order": "A-1", "handled_by": handled_by }));

    // Not JSON at all, and JSON without an order id: both are dead-lettered at once.
    for bad in ["this is not an order", r#"{"customer": "contoso"}"#] {
        let r = host.send(ORDERS, bad).await;
        assert_eq!(r.status(), 201);
    }
    let dead = host
        .wait_for_messages(&format!("{ORDERS}/$DeadLetterQueue"), 2)
        .await;
    let mut bodies: Vec<&str> = dead
        .iter()
        .map(|m| {
            assert_eq!(m["deadLetterReason"], "InvalidOrder", "{m:#}");
            let description = m["deadLetterDescription"].as_str().unwrap_or_default();
            assert!(!description.is_empty(), "a description says why: {m:#}");
            // Dead-lettered by the handler on the first delivery, not by retries.
            assert_eq!(m["deliveryCount"], 1, "{m:#}");
            m["body"].as_str().expect("text body")
        })
        .collect();
    bodies.sort_unstable();
    assert_eq!(
        bodies,
        ["this is not an order", r#"{"customer": "contoso"}"#]
    );

    // Nothing more was shipped, nothing is left to retry, and the handler's log
    // record (the `log` import) reached the host's log.
    host.wait_for_messages(ORDERS, 0).await;
    assert_eq!(host.peek(SHIPMENTS).await.len(), 1);
    let log = host.log();
    assert!(
        log.contains("shipping order") && log.contains("order=A-1"),
        "the handler's log record is in the host log:\n{log}"
    );
}

#[tokio::test]
async fn python_handler_built_by_sluice_build_completes_orders_and_dead_letters_bad_ones() {
    ships_valid_orders_and_dead_letters_bad_ones(
        PYTHON_HANDLER,
        "python",
        "componentize-py 0.25.1",
    )
    .await;
}

#[tokio::test]
async fn javascript_handler_built_by_sluice_build_completes_orders_and_dead_letters_bad_ones() {
    ships_valid_orders_and_dead_letters_bad_ones(
        JS_HANDLER,
        "javascript",
        "jco 1.17.0 + componentize-js 0.19.3",
    )
    .await;
}

#[test]
fn sluice_build_of_a_directory_in_no_known_language_says_what_it_looked_for() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("main.py"), "print('hi')\n").expect("write");
    let output = Command::new(SLUICE)
        .arg("build")
        .arg(dir.path())
        .output()
        .expect("run sluice build");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("looked for Cargo.toml (Rust), package.json (JavaScript), app.py (Python) and found none"),
        "{stderr}"
    );
}
