//! Every failure on the request path becomes a response: a status code and
//! a message that says what is wrong. Nothing escapes as a dropped
//! connection.
//!
//! Management and Event Grid routes answer JSON in Azure's shape
//! (`{"error":{"code":"...","message":"..."}}`, which the Event Grid SDKs
//! read); Service Bus REST routes answer `<Error><Code>..</Code><Detail>..</Detail></Error>`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode, header};

use crate::access::AccessError;
use crate::broker::BrokerError;
use crate::broker::topic::TopicError;
use crate::events::EventsError;
use crate::functions::FunctionError;
use crate::keyvalue::KeyValueError;
use crate::runtime::PrepareError;
use crate::services::DeployError;
use crate::store::StoreError;

/// How an error is rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorFormat {
    /// Azure management / Event Grid JSON.
    Json,
    /// Service Bus REST XML.
    Xml,
}

/// A failed request.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Short machine-readable code.
    pub code: &'static str,
    /// What is wrong, for a human.
    pub message: String,
    /// How to render it.
    pub format: ErrorFormat,
    /// Extra response headers (`Retry-After`, `WWW-Authenticate`, ...).
    pub headers: Vec<(header::HeaderName, String)>,
}

impl ApiError {
    /// An error with this status, code and message (JSON).
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            format: ErrorFormat::Json,
            headers: Vec::new(),
        }
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: header::HeaderName, value: impl Into<String>) -> ApiError {
        self.headers.push((name, value.into()));
        self
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 404 Not Found.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    /// 405 Method Not Allowed.
    pub fn method_not_allowed(method: &hyper::Method, path: &str) -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} is not supported on {path}"),
        )
    }

    /// 413 Payload Too Large.
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge", message)
    }

    /// Renders as Service Bus XML instead of JSON.
    pub fn xml(mut self) -> ApiError {
        self.format = ErrorFormat::Xml;
        self
    }

    /// The HTTP response.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let (content_type, body) = match self.format {
            ErrorFormat::Json => (
                "application/json",
                serde_json::json!({ "error": { "code": self.code, "message": self.message } })
                    .to_string(),
            ),
            ErrorFormat::Xml => (
                "application/xml; charset=utf-8",
                super::atom::error_xml(self.status.as_u16(), &self.message),
            ),
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = self.status;
        if let Ok(value) = header::HeaderValue::from_str(content_type) {
            response.headers_mut().insert(header::CONTENT_TYPE, value);
        }
        for (name, value) in self.headers {
            if let Ok(value) = header::HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        store_error(&e)
    }
}

fn store_error(e: &StoreError) -> ApiError {
    tracing::error!(error = %e, "store failure on the request path");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "StoreUnavailable",
        e.to_string(),
    )
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        let message = e.to_string();
        match &e {
            AccessError::NotFound(_) => ApiError::not_found(message),
            AccessError::Exists(_) => ApiError::new(StatusCode::CONFLICT, "Conflict", message),
            AccessError::Invalid(_) => ApiError::bad_request(message),
            AccessError::Store(s) => store_error(s),
        }
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        let message = e.to_string();
        match &e {
            BrokerError::QueueNotFound(_) => ApiError::not_found(message),
            BrokerError::QueueExists(_) => ApiError::new(StatusCode::CONFLICT, "Conflict", message),
            BrokerError::InvalidName { .. } | BrokerError::InvalidProperty(_) => {
                ApiError::bad_request(message)
            }
            BrokerError::MessageTooLarge { .. } => ApiError::too_large(message),
            // Service Bus answers a lost lock with 410 Gone.
            BrokerError::LockLost { .. } => {
                ApiError::new(StatusCode::GONE, "MessageLockLost", message)
            }
            BrokerError::MessageNotFound { .. } => ApiError::not_found(message),
            BrokerError::Session(_) | BrokerError::ForwardLoop(_) => ApiError::bad_request(message),
            BrokerError::SessionLockLost { .. } => {
                ApiError::new(StatusCode::GONE, "SessionLockLost", message)
            }
            BrokerError::Topic(t) => match t {
                TopicError::TopicNotFound(_)
                | TopicError::SubscriptionNotFound { .. }
                | TopicError::RuleNotFound { .. } => ApiError::not_found(message),
                TopicError::SubscriptionExists { .. } | TopicError::RuleExists { .. } => {
                    ApiError::new(StatusCode::CONFLICT, "Conflict", message)
                }
                TopicError::InvalidFilter(_) | TopicError::InvalidProperty(_) => {
                    ApiError::bad_request(message)
                }
            },
            BrokerError::Store(s) => store_error(s),
        }
    }
}

impl From<EventsError> for ApiError {
    fn from(e: EventsError) -> Self {
        let message = e.to_string();
        match e {
            EventsError::TopicNotFound(_) | EventsError::SubscriptionNotFound { .. } => {
                ApiError::not_found(message)
            }
            EventsError::TopicExists(_) | EventsError::SubscriptionExists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "Conflict", message)
            }
            EventsError::InvalidName { .. }
            | EventsError::InvalidSubscription(_)
            | EventsError::InvalidEvent(_) => ApiError::bad_request(message),
            EventsError::ValidationFailed { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "WebhookValidationFailed", message)
            }
            EventsError::Broker(b) => b.into(),
            EventsError::Store(s) => store_error(&s),
        }
    }
}

impl From<FunctionError> for ApiError {
    fn from(e: FunctionError) -> Self {
        let message = e.to_string();
        match &e {
            FunctionError::NotFound(_) | FunctionError::VersionNotFound { .. } => {
                ApiError::not_found(message)
            }
            FunctionError::InvalidName(_)
            | FunctionError::InvalidLimits(_)
            | FunctionError::InvalidSettings(_) => ApiError::bad_request(message),
            FunctionError::TriggerMismatch { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "InvalidComponent", message)
            }
            FunctionError::Component(PrepareError::Invalid(_) | PrepareError::WrongWorld(_)) => {
                ApiError::new(StatusCode::BAD_REQUEST, "InvalidComponent", message)
            }
            FunctionError::Store(s) => store_error(s),
        }
    }
}

impl From<DeployError> for ApiError {
    fn from(e: DeployError) -> Self {
        match e {
            DeployError::TriggerQueueNotFound(_) | DeployError::TriggerTopicNotFound(_) => {
                ApiError::not_found(e.to_string())
            }
            DeployError::InvalidHttpTrigger(_) => ApiError::bad_request(e.to_string()),
            DeployError::RouteTaken(_) => {
                ApiError::new(StatusCode::CONFLICT, "RouteTaken", e.to_string())
            }
            DeployError::Function(f) => f.into(),
            DeployError::Events(ev) => ev.into(),
            DeployError::State(KeyValueError::Store(s)) => store_error(&s),
            DeployError::State(KeyValueError::Invalid(why)) => ApiError::bad_request(why),
        }
    }
}
