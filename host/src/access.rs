//! Shared access policies, kept durably: the host's keys.
//!
//! [`Access`] owns the policies a host accepts tokens from (namespace-wide
//! or for one entity), stored in the `entities` tree under `policy/`. On
//! first start it creates `RootManageSharedAccessKey` (Manage, namespace),
//! as Azure does, so a new host is secure by default; `sluice serve` prints
//! its connection string and writes it beside the data.

use std::sync::{Arc, RwLock};

use crate::auth::{Policy, PolicyScope, Right};
use crate::store::{Store, StoreError};

/// The policy every host starts with.
pub const ROOT_POLICY: &str = "RootManageSharedAccessKey";

/// Why a policy operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// No policy by that name (and scope).
    #[error("shared access policy `{0}` does not exist")]
    NotFound(String),
    /// A policy by that name and scope exists.
    #[error("shared access policy `{0}` already exists")]
    Exists(String),
    /// The name or rights are not acceptable.
    #[error("invalid shared access policy: {0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The policies of one host.
pub struct Access {
    store: Store,
    /// Replaced whole on a change, so a request's check takes a reference,
    /// not a copy of every policy and key.
    policies: RwLock<Arc<Vec<Policy>>>,
}

fn key(policy: &Policy) -> String {
    match &policy.scope {
        PolicyScope::Namespace => format!("policy/$namespace/{}", policy.name),
        PolicyScope::Entity(entity) => format!("policy/{entity}/{}", policy.name),
    }
}

impl Access {
    /// Loads the policies; creates the root policy if there is none yet.
    pub async fn open(store: Store) -> Result<Access, AccessError> {
        let mut policies = Vec::new();
        for entry in store.entities().scan_prefix("policy/") {
            let (k, v) = entry.map_err(StoreError::from)?;
            let policy: Policy = serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
                tree: "entities",
                detail: format!("policy `{}`: {e}", String::from_utf8_lossy(&k)),
            })?;
            policies.push(policy);
        }
        let access = Access {
            store,
            policies: RwLock::new(Arc::new(policies)),
        };
        if access.root().is_none() {
            let root = Policy::generate(
                ROOT_POLICY,
                &[Right::Manage, Right::Send, Right::Listen],
                PolicyScope::Namespace,
            );
            access.add(root).await?;
            tracing::info!("created the {ROOT_POLICY} policy");
        }
        Ok(access)
    }

    /// The namespace root policy.
    pub fn root(&self) -> Option<Policy> {
        self.policies
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|p| p.name == ROOT_POLICY && p.scope == PolicyScope::Namespace)
            .cloned()
    }

    /// Every policy (keys included: callers decide what to show).
    pub fn policies(&self) -> Arc<Vec<Policy>> {
        self.policies
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stores a new policy.
    pub async fn add(&self, policy: Policy) -> Result<Policy, AccessError> {
        let valid_name = (1..=256).contains(&policy.name.len())
            && policy
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid_name {
            return Err(AccessError::Invalid(format!(
                "name `{}` must be 1 to 256 letters, digits, `-`, `_` or `.`",
                policy.name
            )));
        }
        if policy.rights.is_empty() {
            return Err(AccessError::Invalid(
                "give at least one right: Send, Listen or Manage".into(),
            ));
        }
        {
            let mut policies = self.policies.write().unwrap_or_else(|e| e.into_inner());
            if policies
                .iter()
                .any(|p| p.name == policy.name && p.scope == policy.scope)
            {
                return Err(AccessError::Exists(policy.name.clone()));
            }
            let json = serde_json::to_vec(&policy).map_err(|e| StoreError::Corrupt {
                tree: "entities",
                detail: e.to_string(),
            })?;
            self.store
                .entities()
                .insert(key(&policy), json)
                .map_err(StoreError::from)?;
            Arc::make_mut(&mut policies).push(policy.clone());
        }
        self.store.commit().await?;
        Ok(policy)
    }

    /// Removes a policy; tokens signed with its keys stop working at once.
    pub async fn remove(&self, name: &str, scope: &PolicyScope) -> Result<(), AccessError> {
        {
            let mut policies = self.policies.write().unwrap_or_else(|e| e.into_inner());
            let Some(at) = policies
                .iter()
                .position(|p| p.name == name && &p.scope == scope)
            else {
                return Err(AccessError::NotFound(name.to_string()));
            };
            let removed = Arc::make_mut(&mut policies).remove(at);
            self.store
                .entities()
                .remove(key(&removed))
                .map_err(StoreError::from)?;
        }
        self.store.commit().await?;
        Ok(())
    }
}
