//! `/api/...`: Sluice's JSON management API (what the CLI speaks).
//!
//! | request                                         | does                                |
//! |-------------------------------------------------|-------------------------------------|
//! | `GET /api/functions`                            | list functions                      |
//! | `PUT /api/functions/{name}?queue=Q`             | deploy (body: component bytes)      |
//! | `PUT /api/functions/{name}?topic=T&eventTypes=a,b` | deploy with a topic trigger      |
//! | `PUT /api/functions/{name}?route=R&methods=POST&auth=apiKey&rateLimit=100/60` | deploy with an HTTP trigger (`/api/R`; auth `sas`, `apiKey`, `jwt` with `issuer`, `audiences`, `jwksUri`, or `anonymous`) |
//! | `GET`, `DELETE /api/functions/{name}`           | show, delete                        |
//! | `GET /api/functions/{name}/versions`            | every version (hash, size, deploy time, trigger, limits) |
//! | `POST /api/functions/{name}/rollback[?version=N]` | deploy version N (default: the previous) again, as a new version |
//! | `GET`, `PUT /api/functions/{name}/settings`     | config and secrets (`{"config":{..},"secrets":{..}}`; secret values never shown) |
//! | `GET /api/queues`, `PUT`/`GET`/`DELETE /api/queues/{name}` | queues (PUT body: properties JSON, optional) |
//! | `GET /api/messages/{entity}?from=1&max=32`      | peek (e.g. `fulfil/$DeadLetterQueue`) |
//! | `/api/topics/...`                               | Event Grid topics, keys, subscriptions, dead letters ([`event_grid`]) |
//! | `/api/servicebus/topics/...`                    | Service Bus topics, subscriptions, rules ([`bus_topics`]) |
//! | `/api/receive`, `/api/resubmit`, `/api/sessions/...` | data-plane extras ([`data`])   |
//! | `GET /api/traces/{id}`                          | the recorded steps of one transaction, by correlation or trace id ([`crate::trace`]) |
//!
//! Deploy options (query): `maxConcurrency`, `timeoutSecs`, `memoryMib`, `maxLogKib`,
//! `maxMessageBatchSize`.

use hyper::{Method, StatusCode};
use serde_json::json;

use super::{ApiError, ApiRequest, ApiResult, MAX_DEFINITION_BYTES, empty, json};
use super::{bus_topics, data, event_grid};
use crate::auth::{Policy, PolicyScope, Right, sas};
use crate::broker::{EntityPath, QueueProperties};
use crate::functions::{FunctionLimits, FunctionSettings, Trigger};
use crate::services::Sluice;

/// Largest component upload.
const MAX_COMPONENT_BYTES: usize = 64 * 1024 * 1024;
/// Largest settings body (256 entries of up to 64 KiB fit in principle;
/// this keeps one request bounded).
const MAX_SETTINGS_BYTES: usize = 4 * 1024 * 1024;
/// Most messages one peek returns.
const MAX_PEEK: usize = 1000;

pub(super) async fn route(sluice: &Sluice, request: ApiRequest) -> ApiResult {
    let segments: Vec<String> = request.segments[1..].to_vec();
    let method = request.method.clone();
    let path = request.path.clone();
    match (segments.first().map(String::as_str), &segments[1..]) {
        (Some("functions"), []) if method == Method::GET => {
            json(StatusCode::OK, &sluice.functions.list())
        }
        (Some("functions"), [name]) => function(sluice, name, request).await,
        (Some("functions"), [name, settings]) if settings == "settings" => {
            function_settings(sluice, name, request).await
        }
        (Some("functions"), [name, versions])
            if versions == "versions" && method == Method::GET =>
        {
            json(StatusCode::OK, &sluice.functions.versions(name)?)
        }
        (Some("functions"), [name, rollback])
            if rollback == "rollback" && method == Method::POST =>
        {
            let version = request.query_number("version")?;
            json(StatusCode::OK, &sluice.rollback(name, version).await?)
        }
        (Some("queues"), []) if method == Method::GET => {
            json(StatusCode::OK, &sluice.broker.list_queues())
        }
        (Some("queues"), name) if !name.is_empty() => queue(sluice, &name.join("/"), request).await,
        (Some("messages"), entity) if !entity.is_empty() && method == Method::GET => {
            peek(sluice, &EntityPath::parse(&entity.join("/")), &request)
        }
        (Some("topics"), rest) => {
            let rest = rest.to_vec();
            event_grid::route(sluice, &rest, request).await
        }
        (Some("receive"), []) => data::receive(sluice, request).await,
        (Some("resubmit"), []) => data::resubmit(sluice, request).await,
        (Some("sessions"), [action]) => {
            let action = action.clone();
            data::sessions(sluice, &action, request).await
        }
        (Some("servicebus"), [kind, rest @ ..]) if kind == "topics" => {
            let rest = rest.to_vec();
            bus_topics::route(sluice, &rest, request).await
        }
        (Some("policies"), []) if method == Method::GET => {
            let policies: Vec<_> = sluice
                .access
                .policies()
                .iter()
                .map(|p| json!({ "name": p.name, "rights": p.rights, "scope": p.scope }))
                .collect();
            json(StatusCode::OK, &policies)
        }
        (Some("policies"), [name]) => policy(sluice, name, request).await,
        (Some("traces"), [id]) if method == Method::GET => {
            let steps = sluice.traces.steps(id)?;
            if steps.is_empty() {
                return Err(ApiError::not_found(format!(
                    "no steps recorded for correlation or trace id `{id}` (steps are kept {} h)",
                    crate::trace::RETENTION.as_secs() / 3600
                )));
            }
            let mut trace_ids: Vec<&str> =
                steps.iter().filter_map(|s| s.trace_id.as_deref()).collect();
            trace_ids.sort_unstable();
            trace_ids.dedup();
            json(
                StatusCode::OK,
                &json!({ "id": id, "traceIds": trace_ids, "steps": steps }),
            )
        }
        (
            Some(
                "functions" | "queues" | "messages" | "sessions" | "servicebus" | "policies"
                | "traces",
            ),
            _,
        ) => Err(ApiError::method_not_allowed(&method, &path)),
        _ => Err(ApiError::not_found(format!(
            "no such endpoint: {path}; the management API has /api/functions, /api/queues, /api/messages and /api/topics"
        ))),
    }
}

/// `GET`/`PUT /api/functions/{name}/settings`: config and secrets (secret
/// values are accepted, never shown).
async fn function_settings(sluice: &Sluice, name: &str, request: ApiRequest) -> ApiResult {
    match request.method {
        Method::GET => json(StatusCode::OK, &sluice.functions.settings(name).redacted()),
        Method::PUT => {
            let body = request.body(MAX_SETTINGS_BYTES).await?;
            let settings: FunctionSettings = serde_json::from_slice(&body).map_err(|e| {
                ApiError::bad_request(format!(
                    "invalid settings: {e}; expected {{\"config\": {{\"k\": \"v\"}}, \"secrets\": {{\"k\": \"v\"}}}}"
                ))
            })?;
            sluice.functions.put_settings(name, settings).await?;
            json(StatusCode::OK, &sluice.functions.settings(name).redacted())
        }
        ref method => Err(ApiError::method_not_allowed(method, &request.path)),
    }
}

async fn function(sluice: &Sluice, name: &str, request: ApiRequest) -> ApiResult {
    match request.method {
        Method::GET => match sluice.functions.get(name) {
            Some(f) => json(StatusCode::OK, &f.record),
            None => Err(ApiError::not_found(format!(
                "function `{name}` does not exist"
            ))),
        },
        Method::DELETE => json(StatusCode::OK, &sluice.delete_function(name).await?),
        Method::PUT => {
            let trigger = Trigger::from_query(&request.query).map_err(ApiError::bad_request)?;
            let defaults = FunctionLimits::default();
            let limits = FunctionLimits {
                max_concurrency: request
                    .query_number("maxConcurrency")?
                    .unwrap_or(defaults.max_concurrency),
                timeout_secs: request
                    .query_number("timeoutSecs")?
                    .unwrap_or(defaults.timeout_secs),
                memory_mib: request
                    .query_number("memoryMib")?
                    .unwrap_or(defaults.memory_mib),
                max_log_kib: request
                    .query_number("maxLogKib")?
                    .unwrap_or(defaults.max_log_kib),
                max_message_batch_size: request
                    .query_number("maxMessageBatchSize")?
                    .unwrap_or(defaults.max_message_batch_size),
            };
            let existed = sluice.functions.get(name).is_some();
            let body = request.body(MAX_COMPONENT_BYTES).await?;
            if body.is_empty() {
                return Err(ApiError::bad_request(
                    "the request body must be the component (.wasm) bytes",
                ));
            }
            let record = sluice.deploy(name, body.to_vec(), trigger, limits).await?;
            json(
                if existed {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                },
                &record,
            )
        }
        ref method => Err(ApiError::method_not_allowed(method, &request.path)),
    }
}

async fn queue(sluice: &Sluice, name: &str, request: ApiRequest) -> ApiResult {
    match request.method {
        Method::GET => json(StatusCode::OK, &sluice.broker.queue_info(name)?),
        Method::DELETE => {
            sluice.broker.delete_queue(name).await?;
            empty(StatusCode::OK)
        }
        Method::PUT => {
            let body = request.body(MAX_DEFINITION_BYTES).await?;
            let properties: QueueProperties = if body.iter().all(u8::is_ascii_whitespace) {
                QueueProperties::default()
            } else {
                serde_json::from_slice(&body)
                    .map_err(|e| ApiError::bad_request(format!("invalid queue properties: {e}")))?
            };
            json(
                StatusCode::CREATED,
                &sluice.broker.create_queue(name, properties).await?,
            )
        }
        ref method => Err(ApiError::method_not_allowed(method, &request.path)),
    }
}

fn peek(sluice: &Sluice, entity: &EntityPath, request: &ApiRequest) -> ApiResult {
    let from = request.query_number("from")?.unwrap_or(0);
    let max = request.query_number("max")?.unwrap_or(32).min(MAX_PEEK);
    let messages: Vec<_> = sluice
        .broker
        .peek(entity, from, max)?
        .iter()
        .map(|m| data::message_view(m.sequence_number, Some(m.state), &m.record, None))
        .collect();
    json(StatusCode::OK, &messages)
}

async fn policy(sluice: &Sluice, name: &str, request: ApiRequest) -> ApiResult {
    let scope = match request.query.get("entity") {
        Some(entity) => PolicyScope::Entity(entity.trim_matches('/').to_string()),
        None => PolicyScope::Namespace,
    };
    match request.method {
        Method::PUT => {
            let rights = request
                .query
                .get("rights")
                .ok_or_else(|| {
                    ApiError::bad_request("give `?rights=Send,Listen,Manage` (any of them)")
                })?
                .split(',')
                .map(|r| match r.trim().to_ascii_lowercase().as_str() {
                    "send" => Ok(Right::Send),
                    "listen" => Ok(Right::Listen),
                    "manage" => Ok(Right::Manage),
                    other => Err(ApiError::bad_request(format!(
                        "unknown right `{other}`; use Send, Listen or Manage"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let policy = sluice
                .access
                .add(Policy::generate(name, &rights, scope))
                .await?;
            let endpoint = format!("sb://{}/", request.host());
            json(
                StatusCode::CREATED,
                &json!({
                    "name": policy.name,
                    "rights": policy.rights,
                    "scope": policy.scope,
                    "primaryKey": policy.primary_key,
                    "secondaryKey": policy.secondary_key,
                    "connectionString": sas::connection_string(&endpoint, &policy),
                }),
            )
        }
        Method::DELETE => {
            sluice.access.remove(name, &scope).await?;
            empty(StatusCode::OK)
        }
        ref method => Err(ApiError::method_not_allowed(method, &request.path)),
    }
}
