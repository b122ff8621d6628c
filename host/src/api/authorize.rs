//! Which right each request needs, checked against the host's policies.
//!
//! | request                                   | right  | resource checked      |
//! |-------------------------------------------|--------|-----------------------|
//! | `GET /health`                             | none   |                       |
//! | `POST /{entity}/messages` (send)          | Send   | `/{entity}`           |
//! | other `/{entity}/messages...` (receive, settle) | Listen | `/{entity}`     |
//! | `POST /topics/{t}/api/events` (publish)   | Send   | the request path      |
//! | `GET /api/messages/{entity}` (peek), `/api/receive?entity=`, `/api/sessions/*?queue=` | Listen | `/{entity}` |
//! | everything else (`/api/...`, management)  | Manage | the request path      |
//!
//! Credentials: `Authorization: SharedAccessSignature sr=..&sig=..&se=..&skn=..`
//! (Service Bus SAS; `aeg-sas-token` / `aeg-sas-key` arrive with topic keys).
//! A missing or invalid token is 401; a valid one without the right is 403.

use hyper::{Method, StatusCode};

use super::{ApiError, ApiRequest};
use crate::auth::{AuthError, Right, sas};
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
    let header = request.header("authorization").unwrap_or_default();
    let now = clock::now_ms() / 1000;
    let result = sas::parse_sas_token(header).and_then(|token| {
        sas::verify_service_bus(&token, &sluice.access.policies(), &path, right, now)
    });
    match result {
        Ok(_) => Ok(()),
        Err(e) => Err(auth_error(&e)),
    }
}

fn auth_error(e: &AuthError) -> ApiError {
    match e.status() {
        403 => ApiError::new(StatusCode::FORBIDDEN, "Forbidden", e.to_string()),
        _ => ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", e.to_string()),
    }
}
