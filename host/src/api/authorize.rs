//! Which right each request needs, checked against the host's policies.
//!
//! | request                                   | right  | resource checked      |
//! |-------------------------------------------|--------|-----------------------|
//! | `GET /health`                             | none   |                       |
//! | `POST /{entity}/messages` (send)          | Send   | `/{entity}`           |
//! | other `/{entity}/messages...` (receive, settle) | Listen | `/{entity}`     |
//! | `POST /topics/{t}/api/events` (publish)   | a topic key, or Send | the request path |
//! | `GET /api/topics/{t}/subscriptions/{s}/validate?code=` | the code itself | |
//! | `GET /api/messages/{entity}` (peek), `/api/receive?entity=`, `/api/sessions/*?queue=` | Listen | `/{entity}` |
//! | `/api/{route}` of an HTTP-triggered function | the function's own auth ([`crate::gateway`]) | |
//! | everything else (`/api/...`, management)  | Manage | the request path      |
//!
//! Credentials: `Authorization: SharedAccessSignature sr=..&sig=..&se=..&skn=..`
//! (Service Bus SAS) everywhere; on the publish endpoint also the topic's
//! own keys, as Event Grid clients send them: `aeg-sas-key: <key>` or
//! `aeg-sas-token: r=..&e=..&s=..` ([`crate::auth::event_grid`]).
//! A missing or invalid token is 401; a valid one without the right is 403.

use hyper::{Method, StatusCode};

use super::{ApiError, ApiRequest};
use crate::auth::{AuthError, Right, event_grid, sas};
use crate::clock;
use crate::services::Sluice;

/// The right a request needs and the entity path it is checked against.
pub(super) fn required(request: &ApiRequest) -> Option<(Right, String)> {
    let segments = &request.segments;
    let first = segments.first().map(|s| s.to_ascii_lowercase());
    let entity_from_query = |name: &str| {
        request
            .query
            .get(name)
            .map(|e| format!("/{}", e.trim_matches('/')))
    };
    match first.as_deref() {
        None | Some("health") => None,
        Some("api") if is_validation_url(request) => None,
        Some("api") => {
            let second = segments.get(1).map(String::as_str);
            let listen = match second {
                Some("messages") if request.method == Method::GET => {
                    Some(format!("/{}", segments[2..].join("/")))
                }
                Some("receive") => entity_from_query("entity"),
                Some("sessions") => entity_from_query("queue"),
                _ => None,
            };
            match listen {
                Some(path) => Some((Right::Listen, path)),
                None => Some((Right::Manage, request.path.clone())),
            }
        }
        Some("topics") if super::publish::is_publish_path(segments) => {
            Some((Right::Send, request.path.clone()))
        }
        _ => match segments
            .iter()
            .rposition(|s| s.eq_ignore_ascii_case("messages"))
        {
            Some(at) if at > 0 => {
                let entity = format!("/{}", segments[..at].join("/"));
                let send = request.method == Method::POST && at + 1 == segments.len();
                Some((if send { Right::Send } else { Right::Listen }, entity))
            }
            _ => Some((Right::Manage, request.path.clone())),
        },
    }
}

/// Checks the request's credentials; `Ok` when it may proceed.
pub(super) fn authorize(sluice: &Sluice, request: &ApiRequest) -> Result<(), ApiError> {
    let Some((right, path)) = required(request) else {
        return Ok(());
    };
    let now = clock::now_ms() / 1000;
    if super::publish::is_publish_path(&request.segments)
        && let Some(result) = topic_key_auth(sluice, request, now)
    {
        return result;
    }
    let header = request.header("authorization").unwrap_or_default();
    let result = sas::parse_sas_token(header).and_then(|token| {
        sas::verify_service_bus(&token, &sluice.access.policies(), &path, right, now)
    });
    match result {
        Ok(_) => Ok(()),
        Err(e) => Err(auth_error(&e)),
    }
}

/// A webhook's manual validation: a GET whose `code` is the credential
/// (checked by the events service).
fn is_validation_url(request: &ApiRequest) -> bool {
    let s = &request.segments;
    request.method == Method::GET
        && s.len() == 6
        && s[1] == "topics"
        && s[3] == "subscriptions"
        && s[5] == "validate"
}

/// Checks `aeg-sas-key` / `aeg-sas-token` on a publish; `None` when the
/// request carries neither (Service Bus SAS applies then).
fn topic_key_auth(sluice: &Sluice, request: &ApiRequest, now: i64) -> Option<Result<(), ApiError>> {
    let key = request.header("aeg-sas-key");
    let token = request.header("aeg-sas-token");
    if key.is_none() && token.is_none() {
        return None;
    }
    let topic = &request.segments[1];
    let keys = match sluice.events.keys(topic) {
        Ok(keys) => [keys.key1, keys.key2],
        Err(e) => return Some(Err(e.into())),
    };
    let result = match (key, token) {
        (Some(key), _) => event_grid::verify_topic_key(key, &keys),
        (None, Some(token)) => {
            event_grid::verify_event_grid_token(token, &keys, &request.path, now)
        }
        (None, None) => return None,
    };
    Some(result.map_err(|e| auth_error(&e)))
}

fn auth_error(e: &AuthError) -> ApiError {
    match e.status() {
        403 => ApiError::new(StatusCode::FORBIDDEN, "Forbidden", e.to_string()),
        _ => ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", e.to_string()),
    }
}
