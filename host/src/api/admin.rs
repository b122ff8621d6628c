//! The Service Bus management API: Atom entries over HTTP, as
//! `ServiceBusAdministrationClient` and Service Bus tools speak it.
//!
//! | request | does |
//! |---|---|
//! | `PUT /{name}` + `QueueDescription` / `TopicDescription` entry | create a queue or topic (201; 409 if it exists); with `If-Match`, update it (200; 404 if missing) |
//! | `GET`, `DELETE /{name}` | a queue or topic, with its runtime counts |
//! | `PUT`, `GET`, `DELETE /{topic}/Subscriptions/{sub}` | a subscription (its default rule may come inside) |
//! | `PUT`, `GET`, `DELETE /{topic}/Subscriptions/{sub}/Rules/{rule}` | a rule |
//! | `GET /$Resources/Queues`, `/$Resources/Topics`, `/{topic}/Subscriptions`, `.../Rules` | feeds (`$skip`, `$top`) |
//!
//! The XML itself is read and written by [`super::atom`]; this module maps
//! it to the broker. Counts come from the broker (active, dead-lettered,
//! scheduled; transfers are immediate here, so always 0). A `PUT` with
//! `If-Match` (the SDKs' `UpdateQueue`, `UpdateTopic`, `UpdateSubscription`)
//! changes an existing entity's options in place: 200, or 404 when there is
//! none; sessions and duplicate detection cannot be switched on or off (400).

use hyper::{Method, StatusCode, header};

use super::atom::{self, EntityCounts, RuleDescription, RuleFilterXml};
use super::{ApiError, ApiRequest, ApiResult};
use crate::broker::filter::{CorrelationFilter, RuleFilter};
use crate::broker::{QueueInfo, QueueProperties, TopicProperties};
use crate::services::Sluice;

/// Largest management body.
const MAX_ENTRY_BYTES: usize = 256 * 1024;

fn xml(status: StatusCode, body: String) -> ApiResult {
    let mut response = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/atom+xml;type=entry;charset=utf-8"),
    );
    Ok(response)
}

fn bad(e: atom::AtomError) -> ApiError {
    ApiError::bad_request(e.to_string())
}

fn counts(info: &QueueInfo) -> EntityCounts {
    EntityCounts {
        active: info.active_message_count as u64,
        dead_letter: info.dead_letter_message_count as u64,
        scheduled: info.scheduled_message_count as u64,
        transfer: 0,
        transfer_dead_letter: 0,
        size_in_bytes: info.size_in_bytes,
        message_count: info.message_count as u64,
    }
}

fn resolved_queue(p: &QueueProperties) -> atom::ResolvedQueue {
    atom::ResolvedQueue {
        lock_duration_secs: p.lock_duration_secs,
        requires_duplicate_detection: p.requires_duplicate_detection,
        requires_session: p.requires_session,
        default_message_time_to_live_secs: p.default_message_time_to_live_secs,
        dead_lettering_on_message_expiration: p.dead_lettering_on_message_expiration,
        duplicate_detection_history_time_window_secs: p
            .duplicate_detection_history_time_window_secs,
        max_delivery_count: p.max_delivery_count,
        forward_to: p.forward_to.clone(),
        forward_dead_lettered_messages_to: p.forward_dead_lettered_messages_to.clone(),
        max_message_size_in_kilobytes: (p.max_message_size_bytes / 1024) as u64,
        ..atom::ResolvedQueue::default()
    }
}

fn resolved_subscription(p: &QueueProperties) -> atom::ResolvedSubscription {
    atom::ResolvedSubscription {
        lock_duration_secs: p.lock_duration_secs,
        requires_session: p.requires_session,
        default_message_time_to_live_secs: p.default_message_time_to_live_secs,
        dead_lettering_on_message_expiration: p.dead_lettering_on_message_expiration,
        max_delivery_count: p.max_delivery_count,
        forward_to: p.forward_to.clone(),
        forward_dead_lettered_messages_to: p.forward_dead_lettered_messages_to.clone(),
        ..atom::ResolvedSubscription::default()
    }
}

/// The SDKs send forwarding targets as full URLs (`sb://ns/queue`); the broker wants the path.
fn entity_of(target: Option<String>) -> Option<String> {
    target.map(|t| match t.split_once("://") {
        Some((_, rest)) => rest
            .split_once('/')
            .map_or("", |(_, path)| path)
            .trim_matches('/')
            .to_string(),
        None => t.trim_matches('/').to_string(),
    })
}

fn kilobytes(kb: u64) -> usize {
    usize::try_from(kb.saturating_mul(1024)).unwrap_or(usize::MAX)
}

/// A queue's options from its `QueueDescription` (absent fields: defaults).
fn queue_properties(d: atom::ResolvedQueue) -> QueueProperties {
    QueueProperties {
        max_delivery_count: d.max_delivery_count,
        lock_duration_secs: d.lock_duration_secs,
        max_message_size_bytes: kilobytes(d.max_message_size_in_kilobytes),
        default_message_time_to_live_secs: d.default_message_time_to_live_secs,
        dead_lettering_on_message_expiration: d.dead_lettering_on_message_expiration,
        requires_duplicate_detection: d.requires_duplicate_detection,
        duplicate_detection_history_time_window_secs: d
            .duplicate_detection_history_time_window_secs,
        requires_session: d.requires_session,
        forward_to: entity_of(d.forward_to),
        forward_dead_lettered_messages_to: entity_of(d.forward_dead_lettered_messages_to),
    }
}

/// A topic's options from its `TopicDescription` (absent fields: defaults).
fn topic_properties(d: atom::ResolvedTopic) -> TopicProperties {
    TopicProperties {
        default_message_time_to_live_secs: d.default_message_time_to_live_secs,
        requires_duplicate_detection: d.requires_duplicate_detection,
        duplicate_detection_history_time_window_secs: d
            .duplicate_detection_history_time_window_secs,
        max_message_size_bytes: kilobytes(d.max_message_size_in_kilobytes),
    }
}

/// A subscription's options from its `SubscriptionDescription`; what the
/// description does not carry (message size, duplicate detection) comes
/// from `rest`.
fn subscription_properties(
    d: atom::ResolvedSubscription,
    rest: QueueProperties,
) -> QueueProperties {
    QueueProperties {
        max_delivery_count: d.max_delivery_count,
        lock_duration_secs: d.lock_duration_secs,
        default_message_time_to_live_secs: d.default_message_time_to_live_secs,
        dead_lettering_on_message_expiration: d.dead_lettering_on_message_expiration,
        requires_session: d.requires_session,
        forward_to: entity_of(d.forward_to),
        forward_dead_lettered_messages_to: entity_of(d.forward_dead_lettered_messages_to),
        ..rest
    }
}

fn rule_filter(description: &RuleDescription) -> Result<RuleFilter, ApiError> {
    if description.action_sql.is_some() {
        return Err(ApiError::bad_request(
            "SQL rule actions are not supported; give the rule a filter only",
        ));
    }
    Ok(match &description.filter {
        RuleFilterXml::True => RuleFilter::True,
        RuleFilterXml::False => RuleFilter::False,
        RuleFilterXml::Sql(expression) => {
            RuleFilter::sql(expression).map_err(|e| ApiError::bad_request(e.to_string()))?
        }
        RuleFilterXml::Correlation {
            correlation_id,
            message_id,
            to,
            reply_to,
            label,
            session_id,
            content_type,
            properties,
        } => RuleFilter::Correlation(CorrelationFilter {
            correlation_id: correlation_id.clone(),
            message_id: message_id.clone(),
            subject: label.clone(),
            to: to.clone(),
            reply_to: reply_to.clone(),
            content_type: content_type.clone(),
            session_id: session_id.clone(),
            properties: properties.iter().cloned().collect(),
        }),
    })
}

fn rule_description(filter: &RuleFilter) -> RuleDescription {
    let filter = match filter {
        RuleFilter::True => RuleFilterXml::True,
        RuleFilter::False => RuleFilterXml::False,
        RuleFilter::Sql(sql) => RuleFilterXml::Sql(sql.expression().to_string()),
        RuleFilter::Correlation(c) => RuleFilterXml::Correlation {
            correlation_id: c.correlation_id.clone(),
            message_id: c.message_id.clone(),
            to: c.to.clone(),
            reply_to: c.reply_to.clone(),
            label: c.subject.clone(),
            session_id: c.session_id.clone(),
            content_type: c.content_type.clone(),
            properties: c
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        },
    };
    RuleDescription {
        filter,
        action_sql: None,
        name: None,
    }
}

/// `$skip` / `$top` paging of a listing.
fn page<T>(request: &ApiRequest, items: Vec<T>) -> Result<Vec<T>, ApiError> {
    let skip: usize = request.query_number("$skip")?.unwrap_or(0);
    let top: usize = request.query_number("$top")?.unwrap_or(100);
    Ok(items.into_iter().skip(skip).take(top).collect())
}

pub(super) async fn route(sluice: &Sluice, request: ApiRequest) -> ApiResult {
    let base = request.base_url();
    let segments = request.segments.clone();
    let lower: Vec<String> = segments.iter().map(|s| s.to_ascii_lowercase()).collect();
    let method = request.method.clone();
    let broker = &sluice.broker;
    match (
        lower
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
        &method,
    ) {
        (["$resources", "queues"], &Method::GET) => {
            let queues: Vec<QueueInfo> = broker
                .list_queues()
                .into_iter()
                .filter(|q| !q.name.contains("/subscriptions/"))
                .collect();
            let entries = page(&request, queues)?
                .iter()
                .map(|q| {
                    atom::queue_entry(
                        &base,
                        &q.name,
                        &resolved_queue(&q.properties),
                        &counts(q),
                        q.created_at_ms,
                        q.created_at_ms,
                    )
                })
                .collect::<Vec<_>>();
            xml(
                StatusCode::OK,
                atom::feed(&format!("{base}/$Resources/Queues"), "Queues", &entries),
            )
        }
        (["$resources", "topics"], &Method::GET) => {
            let entries = page(&request, broker.list_topics())?
                .iter()
                .map(|t| topic_entry(&base, t))
                .collect::<Vec<_>>();
            xml(
                StatusCode::OK,
                atom::feed(&format!("{base}/$Resources/Topics"), "Topics", &entries),
            )
        }
        ([_], &Method::GET) => {
            let name = &segments[0];
            if let Ok(q) = broker.queue_info(name) {
                return xml(
                    StatusCode::OK,
                    atom::queue_entry(
                        &base,
                        name,
                        &resolved_queue(&q.properties),
                        &counts(&q),
                        q.created_at_ms,
                        q.created_at_ms,
                    ),
                );
            }
            Ok(xml(
                StatusCode::OK,
                topic_entry(&base, &broker.get_topic(name)?),
            )?)
        }
        ([_], &Method::PUT) => {
            let name = segments[0].clone();
            // `If-Match` is how the SDKs' UpdateQueue/UpdateTopic say "change it".
            let update = request.headers.contains_key(header::IF_MATCH);
            if sluice.events.has_topic(&name) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!("an Event Grid topic named `{name}` exists"),
                ));
            }
            let body = request.body(MAX_ENTRY_BYTES).await?;
            let body = String::from_utf8_lossy(&body).into_owned();
            match atom::description_kind(&body).map_err(bad)? {
                atom::DescriptionKind::Queue => {
                    let properties =
                        queue_properties(atom::parse_queue(&body).map_err(bad)?.resolve());
                    let (status, q) = if update {
                        (
                            StatusCode::OK,
                            broker.update_queue(&name, properties).await?,
                        )
                    } else {
                        (
                            StatusCode::CREATED,
                            broker.create_queue(&name, properties).await?,
                        )
                    };
                    xml(
                        status,
                        atom::queue_entry(
                            &base,
                            &name,
                            &resolved_queue(&q.properties),
                            &counts(&q),
                            q.created_at_ms,
                            q.created_at_ms,
                        ),
                    )
                }
                atom::DescriptionKind::Topic => {
                    let properties =
                        topic_properties(atom::parse_topic(&body).map_err(bad)?.resolve());
                    let (status, t) = if update {
                        (
                            StatusCode::OK,
                            broker.update_topic(&name, properties).await?,
                        )
                    } else {
                        (
                            StatusCode::CREATED,
                            broker.create_topic(&name, properties).await?,
                        )
                    };
                    xml(status, topic_entry(&base, &t))
                }
                other => Err(ApiError::bad_request(format!(
                    "PUT /{name} takes a QueueDescription or TopicDescription, not {other:?}"
                ))),
            }
        }
        ([_], &Method::DELETE) => {
            let name = &segments[0];
            match broker.delete_queue(name).await {
                Ok(()) => {}
                Err(crate::broker::BrokerError::QueueNotFound(_)) => {
                    broker.delete_topic(name).await?
                }
                Err(e) => return Err(e.into()),
            }
            xml(StatusCode::OK, String::new())
        }
        ([_, "subscriptions"], &Method::GET) => {
            let topic = &segments[0];
            let entries = page(&request, broker.list_subscriptions(topic)?)?
                .iter()
                .map(|s| subscription_entry(&base, s))
                .collect::<Vec<_>>();
            xml(
                StatusCode::OK,
                atom::feed(
                    &format!("{base}/{topic}/Subscriptions"),
                    "Subscriptions",
                    &entries,
                ),
            )
        }
        ([_, "subscriptions", _], &Method::GET) => xml(
            StatusCode::OK,
            subscription_entry(
                &base,
                &broker.subscription_info(&segments[0], &segments[2])?,
            ),
        ),
        ([_, "subscriptions", _], &Method::PUT) => {
            let (topic, name) = (segments[0].clone(), segments[2].clone());
            let update = request.headers.contains_key(header::IF_MATCH);
            let body = request.body(MAX_ENTRY_BYTES).await?;
            let parsed = atom::parse_subscription(&String::from_utf8_lossy(&body)).map_err(bad)?;
            if update {
                // UpdateSubscription: options only; rules have their own entries.
                let current = broker.subscription_info(&topic, &name)?;
                let properties =
                    subscription_properties(parsed.resolve(), current.queue.properties);
                broker
                    .update_queue(
                        &crate::broker::topic::subscription_queue(&topic, &name),
                        properties,
                    )
                    .await?;
                return xml(
                    StatusCode::OK,
                    subscription_entry(&base, &broker.subscription_info(&topic, &name)?),
                );
            }
            let default_rule = parsed.default_rule.clone();
            let properties = subscription_properties(parsed.resolve(), QueueProperties::default());
            if let Some(rule) = &default_rule {
                rule_filter(rule)?; // refuse before creating anything
            }
            broker
                .create_subscription(&topic, &name, properties)
                .await?;
            if let Some(rule) = default_rule {
                let rule_name = rule
                    .name
                    .clone()
                    .unwrap_or_else(|| crate::broker::topic::DEFAULT_RULE.to_string());
                broker
                    .delete_rule(&topic, &name, crate::broker::topic::DEFAULT_RULE)
                    .await?;
                broker
                    .put_rule(&topic, &name, &rule_name, rule_filter(&rule)?, true)
                    .await?;
            }
            xml(
                StatusCode::CREATED,
                subscription_entry(&base, &broker.subscription_info(&topic, &name)?),
            )
        }
        ([_, "subscriptions", _], &Method::DELETE) => {
            broker
                .delete_subscription(&segments[0], &segments[2])
                .await?;
            xml(StatusCode::OK, String::new())
        }
        ([_, "subscriptions", _, "rules"], &Method::GET) => {
            let (topic, sub) = (&segments[0], &segments[2]);
            let info = broker.subscription_info(topic, sub)?;
            let entries = page(&request, info.rules)?
                .iter()
                .map(|r| {
                    atom::rule_entry(
                        &base,
                        topic,
                        sub,
                        &r.name,
                        &rule_description(&r.filter),
                        info.queue.created_at_ms,
                    )
                })
                .collect::<Vec<_>>();
            xml(
                StatusCode::OK,
                atom::feed(
                    &format!("{base}/{topic}/Subscriptions/{sub}/Rules"),
                    "Rules",
                    &entries,
                ),
            )
        }
        ([_, "subscriptions", _, "rules", _], &Method::GET) => {
            let (topic, sub, name) = (&segments[0], &segments[2], &segments[4]);
            let info = broker.subscription_info(topic, sub)?;
            let rule = info.rules.iter().find(|r| &r.name == name).ok_or_else(|| {
                ApiError::not_found(format!(
                    "rule `{name}` does not exist on `{topic}/subscriptions/{sub}`"
                ))
            })?;
            xml(
                StatusCode::OK,
                atom::rule_entry(
                    &base,
                    topic,
                    sub,
                    name,
                    &rule_description(&rule.filter),
                    info.queue.created_at_ms,
                ),
            )
        }
        ([_, "subscriptions", _, "rules", _], &Method::PUT) => {
            let (topic, sub, name) = (
                segments[0].clone(),
                segments[2].clone(),
                segments[4].clone(),
            );
            let replace = request.headers.contains_key(header::IF_MATCH);
            let body = request.body(MAX_ENTRY_BYTES).await?;
            let description = atom::parse_rule(&String::from_utf8_lossy(&body)).map_err(bad)?;
            let rule = broker
                .put_rule(&topic, &sub, &name, rule_filter(&description)?, replace)
                .await?;
            let status = if replace {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            xml(
                status,
                atom::rule_entry(
                    &base,
                    &topic,
                    &sub,
                    &name,
                    &rule_description(&rule.filter),
                    crate::clock::now_ms(),
                ),
            )
        }
        ([_, "subscriptions", _, "rules", _], &Method::DELETE) => {
            broker
                .delete_rule(&segments[0], &segments[2], &segments[4])
                .await?;
            xml(StatusCode::OK, String::new())
        }
        _ => Err(ApiError::not_found(format!(
            "no such endpoint: {} {}",
            method, request.path
        ))),
    }
}

fn topic_entry(base: &str, t: &crate::broker::TopicInfo) -> String {
    let resolved = atom::ResolvedTopic {
        default_message_time_to_live_secs: t.properties.default_message_time_to_live_secs,
        requires_duplicate_detection: t.properties.requires_duplicate_detection,
        duplicate_detection_history_time_window_secs: t
            .properties
            .duplicate_detection_history_time_window_secs,
        max_message_size_in_kilobytes: (t.properties.max_message_size_bytes / 1024) as u64,
        ..atom::ResolvedTopic::default()
    };
    atom::topic_entry(
        base,
        &t.name,
        &resolved,
        &EntityCounts::default(),
        t.subscription_count as u64,
        t.created_at_ms,
        t.created_at_ms,
    )
}

fn subscription_entry(base: &str, s: &crate::broker::SubscriptionInfo) -> String {
    atom::subscription_entry(
        base,
        &s.topic,
        &s.name,
        &resolved_subscription(&s.queue.properties),
        &counts(&s.queue),
        s.queue.created_at_ms,
        s.queue.created_at_ms,
    )
}
