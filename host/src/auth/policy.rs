//! Shared access policies: a name, two keys, a set of rights and a scope.
//!
//! This file owns the policy model as it is stored and configured (serde,
//! camelCase) and the rules "which rights does a policy grant" and "which
//! paths does its scope cover". Checking a presented token against policies
//! is [`super::sas`]'s job.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{path_segments, random_key, segments_cover};

/// A right a shared access policy can grant, as in Service Bus.
///
/// Serialised with Azure's spelling (`"Send"`, `"Listen"`, `"Manage"`), so
/// policies exported from Azure tooling read naturally.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Right {
    /// Send messages to queues and topics, publish events.
    Send,
    /// Receive, peek and settle messages.
    Listen,
    /// Create, change and delete entities; implies [`Right::Send`] and
    /// [`Right::Listen`].
    Manage,
}

impl fmt::Display for Right {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Send => "Send",
            Self::Listen => "Listen",
            Self::Manage => "Manage",
        })
    }
}

/// Where a policy applies: the whole namespace or one entity (and what lies
/// beneath it, e.g. a topic's subscriptions).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PolicyScope {
    /// Every entity of the host.
    Namespace,
    /// One entity path such as `"orders"` or `"mytopic/subscriptions/s1"`.
    Entity(String),
}

impl PolicyScope {
    /// Whether a request to `request_path` (e.g. `/orders/messages/head`,
    /// query allowed) falls inside this scope.
    ///
    /// Matching is by whole path segments and case-insensitive (clients
    /// capitalise `Messages`/`Head` freely), so entity `orders` covers
    /// `/Orders/messages` but not `/orders2/messages`. A path containing `.`
    /// or `..` segments is never covered: it could otherwise climb out of the
    /// entity after the prefix check.
    pub fn covers(&self, request_path: &str) -> bool {
        let Some(requested) = path_segments(request_path) else {
            return false;
        };
        match self {
            Self::Namespace => true,
            // The entity name is a path relative to the namespace root, never a
            // URL: `orders.v2` must not be mistaken for a host name.
            Self::Entity(entity) => {
                path_segments(entity).is_some_and(|granted| segments_cover(&granted, &requested))
            }
        }
    }
}

impl fmt::Display for PolicyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Namespace => f.write_str("/"),
            Self::Entity(entity) => write!(f, "/{}", entity.trim_start_matches('/')),
        }
    }
}

/// A shared access policy: clients prove they hold one of its keys by
/// signing tokens with it (Service Bus SAS).
///
/// `Debug` is written by hand and prints no key, so a policy can be logged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// The policy name clients send as `skn` (`SharedAccessKeyName`).
    pub name: String,
    /// The primary key, used as text (its UTF-8 bytes are the HMAC key).
    pub primary_key: String,
    /// The secondary key; both keys are always valid, so keys can be rotated
    /// one at a time without downtime.
    pub secondary_key: String,
    /// What holders of the keys may do.
    pub rights: Vec<Right>,
    /// Where holders of the keys may do it.
    pub scope: PolicyScope,
}

impl Policy {
    /// Creates a policy with two fresh random keys, each 32 random bytes in
    /// standard base64 (44 characters), the shape of Azure's keys.
    ///
    /// # Panics
    ///
    /// Only if the operating system's random source fails (see
    /// [`super::event_grid::generate_topic_key`]).
    pub fn generate(name: impl Into<String>, rights: &[Right], scope: PolicyScope) -> Policy {
        Policy {
            name: name.into(),
            primary_key: random_key(),
            secondary_key: random_key(),
            rights: rights.to_vec(),
            scope,
        }
    }

    /// Whether this policy grants `right`; [`Right::Manage`] implies the others,
    /// as in Service Bus.
    pub fn allows(&self, right: Right) -> bool {
        self.rights
            .iter()
            .any(|&held| held == right || held == Right::Manage)
    }

    /// The keys in the order they are tried: primary, then secondary.
    pub(super) fn keys(&self) -> [&str; 2] {
        [&self.primary_key, &self.secondary_key]
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("primary_key", &"<redacted>")
            .field("secondary_key", &"<redacted>")
            .field("rights", &self.rights)
            .field("scope", &self.scope)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manage_implies_send_and_listen() {
        let manage = Policy::generate("admin", &[Right::Manage], PolicyScope::Namespace);
        assert!(manage.allows(Right::Send));
        assert!(manage.allows(Right::Listen));
        assert!(manage.allows(Right::Manage));

        let send = Policy::generate("sender", &[Right::Send], PolicyScope::Namespace);
        assert!(send.allows(Right::Send));
        assert!(!send.allows(Right::Listen));
        assert!(!send.allows(Right::Manage));
    }

    #[test]
    fn generated_keys_look_like_azure_keys_and_differ() {
        let policy = Policy::generate("p", &[Right::Send], PolicyScope::Namespace);
        assert_eq!(policy.primary_key.len(), 44);
        assert!(policy.primary_key.ends_with('='));
        assert_ne!(policy.primary_key, policy.secondary_key);
    }

    #[test]
    fn debug_output_redacts_keys() {
        let policy = Policy::generate("p", &[Right::Send], PolicyScope::Namespace);
        let shown = format!("{policy:?}");
        assert!(!shown.contains(&policy.primary_key));
        assert!(!shown.contains(&policy.secondary_key));
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn policy_serialises_in_camel_case_with_azure_right_names() {
        let policy = Policy {
            name: "send-orders".into(),
            primary_key: "k1".into(),
            secondary_key: "k2".into(),
            rights: vec![Right::Send, Right::Listen],
            scope: PolicyScope::Entity("orders".into()),
        };
        let json = serde_json::to_value(&policy).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({
                "name": "send-orders",
                "primaryKey": "k1",
                "secondaryKey": "k2",
                "rights": ["Send", "Listen"],
                "scope": {"entity": "orders"}
            })
        );
        let back: Policy = serde_json::from_value(json).expect("deserialises");
        assert_eq!(back, policy);
        let ns = serde_json::to_value(PolicyScope::Namespace).expect("serialises");
        assert_eq!(ns, serde_json::json!("namespace"));
    }

    #[test]
    fn entity_scope_covers_its_subtree_on_segment_boundaries_only() {
        let orders = PolicyScope::Entity("orders".into());
        assert!(orders.covers("/orders"));
        assert!(orders.covers("/Orders/Messages/Head?timeout=60"));
        assert!(!orders.covers("/orders2/messages"));
        assert!(!orders.covers("/payments/messages"));
        assert!(!orders.covers("/orders/../payments/messages"));

        let sub = PolicyScope::Entity("mytopic/subscriptions/s1".into());
        assert!(sub.covers("/mytopic/subscriptions/s1/messages/head"));
        assert!(!sub.covers("/mytopic/subscriptions/s2/messages/head"));
        assert!(!sub.covers("/mytopic/messages"));

        // An entity name with a dot is a path, not a host name.
        assert!(PolicyScope::Entity("orders.v2".into()).covers("/orders.v2/messages"));
        assert!(!PolicyScope::Entity("orders.v2".into()).covers("/other/messages"));
    }
}
