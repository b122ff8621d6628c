//! `/api/topics/...`: Event Grid topics, their keys, event subscriptions and
//! their dead letters, as JSON.
//!
//! | request | does |
//! |---|---|
//! | `GET /api/topics` | list topics with their endpoints |
//! | `PUT /api/topics/{t}` | create (body optional: `{"inputSchema": "CloudEventSchemaV1_0"}`) |
//! | `GET`, `DELETE /api/topics/{t}` | show (with subscriptions), delete |
//! | `POST /api/topics/{t}/listKeys` | the topic's two access keys |
//! | `POST /api/topics/{t}/regenerateKey` | body `{"keyName": "key1"}`: a new key1 (or key2) |
//! | `GET /api/topics/{t}/subscriptions` | its subscriptions |
//! | `PUT`/`GET`/`DELETE /api/topics/{t}/subscriptions/{s}` | a subscription (PUT: 201 created, 200 updated; webhooks are validated first) |
//! | `GET /api/topics/{t}/subscriptions/{s}/validate?code=` | a webhook's manual validation (the validation URL) |
//! | `GET /api/topics/{t}/subscriptions/{s}/deadLetters?max=N` | dead-lettered events with Event Grid's metadata |
//! | `POST /api/topics/{t}/subscriptions/{s}/deadLetters/resubmit?max=N` | deliver them again |

use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiRequest, ApiResult, MAX_DEFINITION_BYTES, definition, empty, json};
use crate::broker::EntityPath;
use crate::events::{SubscriptionSpec, TopicOptions, dead_letter};
use crate::services::Sluice;

/// Most dead letters one listing returns.
const MAX_LISTED: usize = 1000;

pub(super) async fn route(sluice: &Sluice, segments: &[String], request: ApiRequest) -> ApiResult {
    let method = request.method.clone();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (segments.as_slice(), &method) {
        ([], &Method::GET) => {
            let base = request.base_url();
            let topics: Vec<_> = sluice
                .events
                .list_topics()
                .into_iter()
                .map(|t| {
                    json!({
                        "name": t.name,
                        "endpoint": endpoint(&base, &t.name),
                        "inputSchema": t.input_schema,
                        "subscriptions": t.subscriptions,
                    })
                })
                .collect();
            json(StatusCode::OK, &topics)
        }
        ([name], _) => topic(sluice, name, request).await,
        ([name, "listKeys"], &Method::POST | &Method::GET) => {
            json(StatusCode::OK, &sluice.events.keys(name)?)
        }
        ([name, "regenerateKey"], &Method::POST) => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase", deny_unknown_fields)]
            struct Regenerate {
                key_name: String,
            }
            let body = request.body(MAX_DEFINITION_BYTES).await?;
            let regenerate: Regenerate = serde_json::from_slice(&body).map_err(|e| {
                ApiError::bad_request(format!(
                    "invalid regenerateKey request: {e}; expected {{\"keyName\": \"key1\"}} or {{\"keyName\": \"key2\"}}"
                ))
            })?;
            json(
                StatusCode::OK,
                &sluice
                    .events
                    .regenerate_key(name, &regenerate.key_name)
                    .await?,
            )
        }
        ([topic, "subscriptions"], &Method::GET) => {
            json(StatusCode::OK, &sluice.events.subscriptions(topic)?)
        }
        ([topic, "subscriptions", name], _) => subscription(sluice, topic, name, request).await,
        ([topic, "subscriptions", name, "validate"], &Method::GET) => {
            let code = request.query.get("code").cloned().unwrap_or_default();
            let validated = sluice.validate_subscription(topic, name, &code).await?;
            json(
                StatusCode::OK,
                &json!({
                    "message": "Webhook successfully validated as a result of user's validate URL trigger.",
                    "provisioningState": validated.provisioning_state,
                }),
            )
        }
        ([topic, "subscriptions", name, "deadLetters"], &Method::GET) => {
            let queue = sluice.events.subscription(topic, name)?.delivery_queue;
            let max = request.query_number("max")?.unwrap_or(100).min(MAX_LISTED);
            let from = request.query_number("from")?.unwrap_or(0);
            let listed: Vec<_> = sluice
                .broker
                .peek(&EntityPath::dead_letter(&queue), from, max)?
                .iter()
                .map(dead_letter::render)
                .collect();
            json(StatusCode::OK, &listed)
        }
        ([topic, "subscriptions", name, "deadLetters", "resubmit"], &Method::POST) => {
            let queue = sluice.events.subscription(topic, name)?.delivery_queue;
            let max = request.query_number("max")?.unwrap_or(usize::MAX);
            let moved = sluice.broker.resubmit_dead_letters(&queue, max).await?;
            json(
                StatusCode::OK,
                &json!({ "topic": topic, "subscription": name, "resubmitted": moved }),
            )
        }
        _ => Err(ApiError::method_not_allowed(&method, &request.path)),
    }
}

/// A topic's publish endpoint, as SDKs are configured with it.
fn endpoint(base: &str, topic: &str) -> String {
    format!("{base}/topics/{topic}/api/events")
}

async fn topic(sluice: &Sluice, name: &str, request: ApiRequest) -> ApiResult {
    let base = request.base_url();
    match request.method {
        Method::GET => {
            let info = sluice.events.topic(name)?;
            let subscriptions = sluice.events.subscriptions(name)?;
            json(
                StatusCode::OK,
                &json!({
                    "name": name,
                    "endpoint": endpoint(&base, name),
                    "inputSchema": info.input_schema,
                    "subscriptions": subscriptions,
                }),
            )
        }
        Method::PUT => {
            let options: TopicOptions = definition(request, "topic").await?;
            let info = sluice.events.create_topic(name, options).await?;
            json(
                StatusCode::CREATED,
                &json!({
                    "name": name,
                    "endpoint": endpoint(&base, name),
                    "inputSchema": info.input_schema,
                }),
            )
        }
        Method::DELETE => {
            sluice.delete_topic(name).await?;
            empty(StatusCode::OK)
        }
        ref method => Err(ApiError::method_not_allowed(method, &request.path)),
    }
}

async fn subscription(sluice: &Sluice, topic: &str, name: &str, request: ApiRequest) -> ApiResult {
    match request.method {
        Method::GET => json(StatusCode::OK, &sluice.events.subscription(topic, name)?),
        Method::DELETE => json(
            StatusCode::OK,
            &sluice.delete_subscription(topic, name).await?,
        ),
        Method::PUT => {
            let base = request.base_url();
            let body = request.body(MAX_DEFINITION_BYTES).await?;
            let spec: SubscriptionSpec = serde_json::from_slice(&body).map_err(|e| {
                ApiError::bad_request(format!(
                    "invalid subscription: {e}; expected {{\"destination\": {{\"queue\": \"q\"}}, {{\"function\": \"f\"}} \
                     or {{\"webhook\": {{\"endpointUrl\": \"https://...\"}}}}, \"filter\": {{...}}}}"
                ))
            })?;
            let (subscription, created) = sluice.put_subscription(topic, name, spec, &base).await?;
            json(
                if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                &subscription,
            )
        }
        ref method => Err(ApiError::method_not_allowed(method, &request.path)),
    }
}
