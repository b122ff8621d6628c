//! `/api/servicebus/topics/...`: Service Bus topics, subscriptions and rules as JSON.
//!
//! | request | does |
//! |---|---|
//! | `GET /api/servicebus/topics` | list topics |
//! | `PUT`/`GET`/`DELETE /api/servicebus/topics/{t}` | a topic (PUT body: topic properties JSON, optional) |
//! | `GET /api/servicebus/topics/{t}/subscriptions` | its subscriptions, with counts and rules |
//! | `PUT`/`GET`/`DELETE /api/servicebus/topics/{t}/subscriptions/{s}` | a subscription (PUT body: queue properties JSON, optional) |
//! | `PUT`/`DELETE /api/servicebus/topics/{t}/subscriptions/{s}/rules/{r}` | a rule (PUT body: a filter, e.g. `{"type":"sql","expression":"sys.Label = 'x'"}`) |
//!
//! Messages are sent to `POST /{t}/messages` and received from
//! `/{t}/subscriptions/{s}/messages/head`, as with Service Bus.

use hyper::{Method, StatusCode};

use super::{ApiError, ApiRequest, ApiResult, MAX_DEFINITION_BYTES, definition, empty, json};
use crate::broker::filter::RuleFilter;
use crate::broker::{QueueProperties, TopicProperties};
use crate::services::Sluice;

pub(super) async fn route(sluice: &Sluice, segments: &[String], request: ApiRequest) -> ApiResult {
    let broker = &sluice.broker;
    let method = request.method.clone();
    match (segments, method) {
        ([], Method::GET) => json(StatusCode::OK, &broker.list_topics()),
        ([topic], Method::GET) => json(StatusCode::OK, &broker.get_topic(topic)?),
        ([topic], Method::PUT) => {
            if sluice.events.has_topic(topic) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!("an Event Grid topic named `{topic}` exists; entity names are shared"),
                ));
            }
            let topic = topic.clone();
            let properties: TopicProperties = definition(request, "topic properties").await?;
            json(
                StatusCode::CREATED,
                &broker.create_topic(&topic, properties).await?,
            )
        }
        ([topic], Method::DELETE) => {
            broker.delete_topic(topic).await?;
            empty(StatusCode::OK)
        }
        ([topic, subs], Method::GET) if subs == "subscriptions" => {
            json(StatusCode::OK, &broker.list_subscriptions(topic)?)
        }
        ([topic, subs, name], Method::GET) if subs == "subscriptions" => {
            json(StatusCode::OK, &broker.subscription_info(topic, name)?)
        }
        ([topic, subs, name], Method::PUT) if subs == "subscriptions" => {
            let (topic, name) = (topic.clone(), name.clone());
            let properties: QueueProperties =
                definition(request, "subscription properties").await?;
            json(
                StatusCode::CREATED,
                &broker
                    .create_subscription(&topic, &name, properties)
                    .await?,
            )
        }
        ([topic, subs, name], Method::DELETE) if subs == "subscriptions" => {
            broker.delete_subscription(topic, name).await?;
            empty(StatusCode::OK)
        }
        ([topic, subs, name, rules, rule], Method::PUT)
            if subs == "subscriptions" && rules == "rules" =>
        {
            let (topic, name, rule) = (topic.clone(), name.clone(), rule.clone());
            let body = request.body(MAX_DEFINITION_BYTES).await?;
            let filter: RuleFilter = serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("invalid rule filter: {e}")))?;
            json(
                StatusCode::OK,
                &broker.put_rule(&topic, &name, &rule, filter, true).await?,
            )
        }
        ([topic, subs, name, rules, rule], Method::DELETE)
            if subs == "subscriptions" && rules == "rules" =>
        {
            broker.delete_rule(topic, name, rule).await?;
            empty(StatusCode::OK)
        }
        (_, method) => Err(ApiError::method_not_allowed(&method, &request.path)),
    }
}
