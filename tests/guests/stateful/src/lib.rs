//! Test guest: runs the key-value, config and secrets capabilities as the
//! message body says and sends what it saw to the queue `results`.
//!
//! | body                     | does, and sends                                    |
//! |--------------------------|----------------------------------------------------|
//! | `count`                  | increments `count` by compare-and-swap; the new value |
//! | `remember:K=V:TTL_MS`    | sets K (TTL 0: none); `ok`                         |
//! | `recall:K`               | reads K; its value or `(unset)`                    |
//! | `forget:K`               | deletes K; `true` if it was set                    |
//! | `settings`               | config `greeting`, the number of config entries, the length of secret `api-key` (never the secret) |
//! | `schedule:MS`            | sends `later` to `results`, delivered no earlier than MS ms from now |
//! | `session:ID`             | sends `in session` to the session queue `session-results`, session ID |

use std::time::Duration;

use sluice_sdk::send::{OutgoingMessage, send};
use sluice_sdk::{Error, Message, Result, config, kv, log};

#[sluice_sdk::message_handler]
fn stateful(message: Message) -> Result<()> {
    let body = message.text()?;
    let reply = match body.split_once(':') {
        None if body == "count" => count()?,
        None if body == "settings" => settings(),
        Some(("remember", rest)) => {
            let (pair, ttl) = rest.rsplit_once(':').unwrap_or((rest, "0"));
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let ttl: u64 = ttl.parse().unwrap_or(0);
            kv::set(key, value.as_bytes(), (ttl > 0).then(|| Duration::from_millis(ttl)))?;
            "ok".to_string()
        }
        Some(("recall", key)) => match kv::get(key)? {
            Some(value) => String::from_utf8_lossy(&value).into_owned(),
            None => "(unset)".to_string(),
        },
        Some(("forget", key)) => kv::delete(key)?.to_string(),
        Some(("schedule", ms)) => {
            let delay = Duration::from_millis(ms.parse().unwrap_or(0));
            send("results", &OutgoingMessage::text("later").with_delay(delay))?;
            return Ok(());
        }
        Some(("session", id)) => {
            send(
                "session-results",
                &OutgoingMessage::text("in session").with_session_id(id),
            )?;
            return Ok(());
        }
        _ => {
            return Err(Error::dead_letter(
                "UnknownCommand",
                format!("no such command: {body}"),
            ));
        }
    };
    send("results", &OutgoingMessage::text(reply).with_subject(body))?;
    Ok(())
}

/// Increments the counter; retries when another invocation got in between.
fn count() -> Result<String> {
    loop {
        let current = kv::get("count")?;
        let next = current
            .as_deref()
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        if kv::compare_and_swap("count", current.as_deref(), next.to_string().as_bytes(), None)? {
            return Ok(next.to_string());
        }
    }
}

fn settings() -> String {
    let greeting = config::get("greeting").unwrap_or_else(|| "(unset)".into());
    let entries = config::all().len();
    let secret_len = config::secret("api-key").map_or(0, |s| s.len());
    log::write(
        log::Level::Info,
        "read settings",
        &[("secret_len", &secret_len)],
    );
    format!("greeting={greeting};config_entries={entries};secret_len={secret_len}")
}
