//! Deployed functions: their components, triggers and limits, durably.
//!
//! Read [`Functions`] first. A deploy validates the component against the
//! world and precompiles it once ([`Runtime::compile`]); the original bytes
//! and the compiled artifact are stored by content hash, so a restart loads
//! the artifact instead of compiling again (and recompiles only when the
//! engine changed). Redeploying a name makes a new version; invocations in
//! flight finish on the version they started with. A function's config and
//! secrets ([`FunctionSettings`]) live beside its deploys.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::clock;
use crate::runtime::{ComponentKind, ComponentPre, InvocationLimits, PrepareError, Runtime};
use crate::store::{Store, StoreError};

/// Invocations of one function that may run at once, by default.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 16;
/// Wall-clock deadline of one invocation, by default.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// Linear memory cap of one instance, by default.
pub const DEFAULT_MEMORY_MIB: u32 = 64;
/// Log volume one invocation may write (records, fields), by default.
pub const DEFAULT_MAX_LOG_KIB: u32 = 64;
/// Most messages one invocation of a batch handler gets, by default.
pub const DEFAULT_MAX_MESSAGE_BATCH_SIZE: u32 = 100;

/// Why a function operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FunctionError {
    /// No function by that name.
    #[error("function `{0}` does not exist")]
    NotFound(String),
    /// The name breaks the naming rules.
    #[error("invalid function name `{0}`: use 1 to 64 letters, digits, `-` or `_`")]
    InvalidName(String),
    /// A limit is out of range.
    #[error("invalid function limits: {0}")]
    InvalidLimits(String),
    /// No such version of the function.
    #[error("function `{name}` has no version {version}")]
    VersionNotFound {
        /// The function.
        name: String,
        /// The version asked for.
        version: u32,
    },
    /// Config or secrets break a limit.
    #[error("invalid function settings: {0}")]
    InvalidSettings(String),
    /// The component was refused.
    #[error(transparent)]
    Component(#[from] PrepareError),
    /// The component's world does not serve the trigger asked for.
    #[error("{trigger} needs {needs}, but the component is {got}{hint}")]
    TriggerMismatch {
        /// The trigger, described.
        trigger: &'static str,
        /// The kind of component it needs.
        needs: ComponentKind,
        /// The kind uploaded.
        got: ComponentKind,
        /// How to build the right one.
        hint: &'static str,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What makes a function run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Trigger {
    /// Every message arriving on this queue.
    Queue(String),
    /// Events published to a topic, through a subscription named after the function.
    Topic {
        /// The topic.
        topic: String,
        /// Only these event types; all when empty.
        #[serde(default)]
        event_types: Vec<String>,
    },
    /// Requests to a route on the host's front door (`/api/{route}`).
    Http(HttpTrigger),
}

impl Trigger {
    /// The trigger as the deploy API's query parameters (`PUT
    /// /api/functions/{name}?...`); [`Trigger::from_query`] reads them back.
    /// Both live here so the CLI and the API cannot drift apart.
    pub fn to_query(&self) -> Vec<(&'static str, String)> {
        match self {
            Trigger::Queue(queue) => vec![("queue", queue.clone())],
            Trigger::Topic { topic, event_types } => {
                let mut query = vec![("topic", topic.clone())];
                if !event_types.is_empty() {
                    query.push(("eventTypes", event_types.join(",")));
                }
                query
            }
            Trigger::Http(http) => {
                let mut query = vec![("route", http.route.clone())];
                if !http.methods.is_empty() {
                    query.push(("methods", http.methods.join(",")));
                }
                match &http.auth {
                    HttpAuth::Sas => query.push(("auth", "sas".into())),
                    HttpAuth::ApiKey => query.push(("auth", "apiKey".into())),
                    HttpAuth::Anonymous => query.push(("auth", "anonymous".into())),
                    HttpAuth::Jwt(jwt) => {
                        query.push(("auth", "jwt".into()));
                        query.push(("issuer", jwt.issuer.clone()));
                        if !jwt.audiences.is_empty() {
                            query.push(("audiences", jwt.audiences.join(",")));
                        }
                        if let Some(uri) = &jwt.jwks_uri {
                            query.push(("jwksUri", uri.clone()));
                        }
                    }
                }
                if let Some(limit) = &http.rate_limit {
                    query.push((
                        "rateLimit",
                        format!("{}/{}", limit.requests, limit.per_seconds),
                    ));
                }
                query
            }
        }
    }

    /// Reads the trigger from the deploy API's query parameters.
    pub fn from_query(
        query: &std::collections::HashMap<String, String>,
    ) -> Result<Trigger, String> {
        let list = |name: &str| -> Vec<String> {
            query
                .get(name)
                .map(|t| {
                    t.split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        match (query.get("queue"), query.get("topic"), query.get("route")) {
            (Some(queue), None, None) => Ok(Trigger::Queue(queue.clone())),
            (None, Some(topic), None) => Ok(Trigger::Topic {
                topic: topic.clone(),
                event_types: list("eventTypes"),
            }),
            (None, None, Some(route)) => {
                let auth = match query.get("auth").map(|a| a.to_ascii_lowercase()).as_deref() {
                    None | Some("sas") => HttpAuth::Sas,
                    Some("apikey") => HttpAuth::ApiKey,
                    Some("anonymous") => HttpAuth::Anonymous,
                    Some("jwt") => HttpAuth::Jwt(JwtAuth {
                        issuer: query
                            .get("issuer")
                            .cloned()
                            .ok_or("auth=jwt needs `issuer` (the tokens' `iss`, a URL)")?,
                        audiences: list("audiences"),
                        jwks_uri: query.get("jwksUri").cloned(),
                    }),
                    Some(other) => {
                        return Err(format!(
                            "unknown auth `{other}`; use sas, apiKey, jwt or anonymous"
                        ));
                    }
                };
                // `N` alone means N per minute, the default window.
                let rate_limit = match query.get("rateLimit") {
                    None => None,
                    Some(text) if text.contains('/') => Some(text.parse()?),
                    Some(text) => Some(format!("{text}/{}", RateLimit::default_window()).parse()?),
                };
                Ok(Trigger::Http(HttpTrigger {
                    route: route.clone(),
                    methods: list("methods")
                        .into_iter()
                        .map(|m| m.to_ascii_uppercase())
                        .collect(),
                    auth,
                    rate_limit,
                }))
            }
            _ => Err(
                "give exactly one trigger: `?queue=<queue>`, `?topic=<topic>[&eventTypes=a,b]` or `?route=<route>[&methods=POST&auth=apiKey]`"
                    .into(),
            ),
        }
    }

    /// The kind of component that usually serves this trigger.
    pub fn component_kind(&self) -> ComponentKind {
        match self {
            Trigger::Queue(_) | Trigger::Topic { .. } => ComponentKind::Handler,
            Trigger::Http(_) => ComponentKind::Http,
        }
    }

    /// Whether a component of `kind` can serve this trigger: a queue takes
    /// a batch handler too.
    pub fn accepts(&self, kind: ComponentKind) -> bool {
        kind == self.component_kind()
            || matches!(
                (self, kind),
                (Trigger::Queue(_), ComponentKind::BatchHandler)
            )
    }
}

/// An HTTP trigger: the function answers requests to `/api/{route}`, once
/// the caller passed `auth` and its rate limit ([`crate::gateway`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpTrigger {
    /// The route under `/api/`: literal segments, `{name}` for any one
    /// segment, and a last `{*rest}` for the rest of the path
    /// (`orders`, `orders/{id}`, `files/{*path}`).
    pub route: String,
    /// The methods served (upper case); every method when empty.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Who may call it.
    #[serde(default)]
    pub auth: HttpAuth,
    /// Requests one caller may make; unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "rate_limit")]
    pub rate_limit: Option<RateLimit>,
}

/// How an HTTP-triggered function checks its callers. Every kind but
/// `anonymous` answers 401 without credentials and 403 with credentials
/// that do not grant the call.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", deny_unknown_fields)]
pub enum HttpAuth {
    /// A Service Bus shared access signature (`Authorization:
    /// SharedAccessSignature ...`) with the Send right on the route's path:
    /// the host's own policies. The default: secure without setup.
    #[default]
    Sas,
    /// One of the function's API keys (its settings' `apiKeys`), in the
    /// `x-functions-key` header or the `code` query parameter, as Azure
    /// Functions takes them.
    #[serde(alias = "api_key")]
    ApiKey,
    /// An OAuth 2.0 / OpenID Connect bearer token (`Authorization: Bearer
    /// <JWT>`) signed by one of the issuer's public keys.
    Jwt(JwtAuth),
    /// Anyone; the rate limit then applies per client address.
    Anonymous,
}

/// Which bearer tokens a `jwt` HTTP trigger accepts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtAuth {
    /// The `iss` a token must carry, e.g. `https://login.example.com/`.
    pub issuer: String,
    /// One of these must be in the token's `aud` (at least one is
    /// required; `*` accepts any audience of the issuer).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Where the issuer's public keys (a JWK set) are fetched from; by
    /// default, the `jwks_uri` of `{issuer}/.well-known/openid-configuration`.
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "jwks_uri")]
    pub jwks_uri: Option<String>,
}

/// A per-caller budget: `requests` per `per_seconds`, refilled steadily
/// (a token bucket holding at most `requests`). Past it, 429 with `Retry-After`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    /// Requests allowed per window (1 ..= 1,000,000).
    pub requests: u32,
    /// The window in seconds (1 ..= 86,400).
    #[serde(default = "RateLimit::default_window", alias = "per_seconds")]
    pub per_seconds: u32,
}

impl RateLimit {
    fn default_window() -> u32 {
        60
    }
}

impl std::str::FromStr for RateLimit {
    type Err = String;

    /// `<requests>/<seconds>`, e.g. `100/60` (the CLI's and the API's form).
    fn from_str(text: &str) -> Result<RateLimit, String> {
        let (requests, seconds) = text
            .split_once('/')
            .ok_or("give `<requests>/<seconds>`, e.g. `100/60`")?;
        Ok(RateLimit {
            requests: requests.trim().parse().map_err(|_| {
                format!("rate limit `{text}`: `{requests}` is not a number of requests")
            })?,
            per_seconds: seconds.trim().parse().map_err(|_| {
                format!("rate limit `{text}`: `{seconds}` is not a number of seconds")
            })?,
        })
    }
}

/// Resource limits of a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FunctionLimits {
    /// Invocations that may run at once (1 ..= 1000).
    pub max_concurrency: u32,
    /// Deadline of one invocation in seconds (1 ..= 600).
    pub timeout_secs: u64,
    /// Memory cap of one instance in MiB (1 ..= 1024).
    pub memory_mib: u32,
    /// Log volume of one invocation in KiB (1 ..= 10240); past it, records are dropped.
    pub max_log_kib: u32,
    /// Most messages one invocation of a batch handler gets (1 ..= 256);
    /// a `handler` component always gets one.
    pub max_message_batch_size: u32,
}

impl Default for FunctionLimits {
    fn default() -> Self {
        FunctionLimits {
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            timeout_secs: DEFAULT_TIMEOUT_SECS,
            memory_mib: DEFAULT_MEMORY_MIB,
            max_log_kib: DEFAULT_MAX_LOG_KIB,
            max_message_batch_size: DEFAULT_MAX_MESSAGE_BATCH_SIZE,
        }
    }
}

impl FunctionLimits {
    fn validate(&self) -> Result<(), FunctionError> {
        let check = |ok: bool, what: String| {
            if ok {
                Ok(())
            } else {
                Err(FunctionError::InvalidLimits(what))
            }
        };
        check(
            (1..=1000).contains(&self.max_concurrency),
            format!(
                "maxConcurrency must be between 1 and 1000, got {}",
                self.max_concurrency
            ),
        )?;
        check(
            (1..=600).contains(&self.timeout_secs),
            format!(
                "timeoutSecs must be between 1 and 600, got {}",
                self.timeout_secs
            ),
        )?;
        check(
            (1..=1024).contains(&self.memory_mib),
            format!(
                "memoryMib must be between 1 and 1024, got {}",
                self.memory_mib
            ),
        )?;
        check(
            (1..=10240).contains(&self.max_log_kib),
            format!(
                "maxLogKib must be between 1 and 10240, got {}",
                self.max_log_kib
            ),
        )?;
        check(
            (1..=256).contains(&self.max_message_batch_size),
            format!(
                "maxMessageBatchSize must be between 1 and 256, got {}",
                self.max_message_batch_size
            ),
        )
    }

    /// Bytes of log one invocation may write.
    pub fn log_budget_bytes(&self) -> usize {
        usize::try_from(self.max_log_kib).unwrap_or(usize::MAX) << 10
    }

    /// The runtime's view of these limits.
    pub fn invocation(&self) -> InvocationLimits {
        InvocationLimits {
            timeout: Duration::from_secs(self.timeout_secs),
            memory_bytes: usize::try_from(self.memory_mib).unwrap_or(usize::MAX) << 20,
        }
    }
}

/// A deployed function as stored and listed.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionRecord {
    /// Its name.
    pub name: String,
    /// 1 for the first deploy, then one more per redeploy.
    pub version: u32,
    /// sha256 of the component, hex.
    pub component_hash: String,
    /// Size of the component in bytes.
    pub component_size: usize,
    /// When this version was deployed, RFC 3339.
    pub deployed_at: String,
    /// What makes it run.
    pub trigger: Trigger,
    /// Its limits.
    pub limits: FunctionLimits,
    /// Set when this version re-deployed an earlier one (a rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_from: Option<u32>,
}

/// A function's configuration and secrets, kept apart from its deploys (a
/// redeploy keeps them) and set before or after it is deployed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct FunctionSettings {
    /// Configuration values, readable by the handler (`config` capability).
    pub config: BTreeMap<String, String>,
    /// Secrets, readable by the handler (`secrets` capability), never shown
    /// by the API or logged by the host.
    pub secrets: BTreeMap<String, String>,
    /// Hosts the handler may call over outbound HTTP (`api.example.com`,
    /// `127.0.0.1:8080`, `*.example.com`); none by default.
    pub allowed_hosts: Vec<String>,
    /// API keys of an HTTP trigger with `apiKey` auth, by name (the name
    /// identifies the caller, e.g. for its rate limit); values never shown.
    pub api_keys: BTreeMap<String, String>,
}

/// Most entries of config plus secrets.
const MAX_SETTINGS: usize = 256;
/// Largest config or secret value, in bytes.
const MAX_SETTING_BYTES: usize = 64 * 1024;

impl FunctionSettings {
    fn validate(&self) -> Result<(), FunctionError> {
        if self
            .allowed_hosts
            .iter()
            .any(|h| h.is_empty() || h.contains('/'))
        {
            return Err(FunctionError::InvalidSettings(
                "allowedHosts: entries are host names, `host:port` or `*.domain`, without scheme or path".into(),
            ));
        }
        for (name, key) in &self.api_keys {
            if name.is_empty() || name.len() > 256 || key.len() < 16 || key.len() > 1024 {
                return Err(FunctionError::InvalidSettings(format!(
                    "apiKeys.{name}: a name is 1 to 256 bytes, a key 16 to 1024 bytes"
                )));
            }
        }
        if self.config.len() + self.secrets.len() + self.allowed_hosts.len() + self.api_keys.len()
            > MAX_SETTINGS
        {
            return Err(FunctionError::InvalidSettings(format!(
                "at most {MAX_SETTINGS} config and secret entries in all"
            )));
        }
        for (kind, map) in [("config", &self.config), ("secrets", &self.secrets)] {
            for (key, value) in map {
                if key.is_empty() || key.len() > 256 {
                    return Err(FunctionError::InvalidSettings(format!(
                        "{kind}: a key must be 1 to 256 bytes, got `{key}`"
                    )));
                }
                if value.len() > MAX_SETTING_BYTES {
                    return Err(FunctionError::InvalidSettings(format!(
                        "{kind}.{key}: a value may be at most {MAX_SETTING_BYTES} bytes"
                    )));
                }
            }
        }
        Ok(())
    }

    /// What the API shows: config values, secret and API key names only.
    pub fn redacted(&self) -> serde_json::Value {
        serde_json::json!({
            "config": self.config,
            "secrets": self.secrets.keys().collect::<Vec<_>>(),
            "allowedHosts": self.allowed_hosts,
            "apiKeys": self.api_keys.keys().collect::<Vec<_>>(),
        })
    }
}

fn settings_key(name: &str) -> String {
    format!("settings/{name}")
}

/// Every deployed version is kept (its component stays stored by hash), so
/// any of them can be rolled back to.
fn version_key(name: &str, version: u32) -> String {
    format!("version/{name}/{version:010}")
}

/// A function ready to invoke.
pub struct DeployedFunction {
    /// Its definition.
    pub record: FunctionRecord,
    /// The pre-linked component.
    pub handler: ComponentPre,
    /// Permits for concurrent invocations.
    pub concurrency: Arc<Semaphore>,
}

/// Owns every deployed function.
pub struct Functions {
    store: Store,
    runtime: Arc<Runtime>,
    deployed: RwLock<HashMap<String, Arc<DeployedFunction>>>,
    settings: RwLock<HashMap<String, Arc<FunctionSettings>>>,
}

fn validate_name(name: &str) -> Result<(), FunctionError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(FunctionError::InvalidName(name.to_string()))
    }
}

impl Functions {
    /// Loads every deployed function, from precompiled artifacts where possible.
    pub async fn open(store: Store, runtime: Arc<Runtime>) -> Result<Functions, FunctionError> {
        let mut settings = HashMap::new();
        for entry in store.entities().scan_prefix("settings/") {
            let (key, value) = entry.map_err(StoreError::from)?;
            let name = String::from_utf8_lossy(&key["settings/".len()..]).into_owned();
            let parsed: FunctionSettings =
                serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt {
                    tree: "entities",
                    detail: format!("settings of `{name}`: {e}"),
                })?;
            settings.insert(name, Arc::new(parsed));
        }
        let functions = Functions {
            store,
            runtime,
            deployed: RwLock::new(HashMap::new()),
            settings: RwLock::new(settings),
        };
        for entry in functions.store.functions().iter() {
            let (_, value) = entry.map_err(StoreError::from)?;
            let record: FunctionRecord =
                serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt {
                    tree: "functions",
                    detail: e.to_string(),
                })?;
            let handler = functions.load(&record.component_hash).await?;
            functions.install(record, handler);
        }
        Ok(functions)
    }

    fn compiled_key(&self, hash: &str) -> String {
        format!("{hash}/{}", self.runtime.compatibility_key())
    }

    /// Loads a stored component: the precompiled artifact, else compile again.
    async fn load(&self, hash: &str) -> Result<ComponentPre, FunctionError> {
        let key = self.compiled_key(hash);
        if let Some(compiled) = self.store.compiled().get(&key).map_err(StoreError::from)? {
            match self.runtime.load_precompiled(&compiled) {
                Ok(handler) => return Ok(handler),
                Err(e) => {
                    tracing::warn!(hash, error = %e, "precompiled artifact unusable; compiling again")
                }
            }
        }
        let bytes = self
            .store
            .components()
            .get(hash)
            .map_err(StoreError::from)?
            .ok_or_else(|| StoreError::Corrupt {
                tree: "components",
                detail: format!("component {hash} is missing"),
            })?;
        let (handler, compiled) = self.compile(bytes.to_vec()).await?;
        self.store
            .compiled()
            .insert(key, compiled)
            .map_err(StoreError::from)?;
        Ok(handler)
    }

    async fn compile(&self, bytes: Vec<u8>) -> Result<(ComponentPre, Vec<u8>), FunctionError> {
        let runtime = self.runtime.clone();
        // Compilation is CPU-bound; keep it off the async workers.
        tokio::task::spawn_blocking(move || runtime.compile(&bytes))
            .await
            .map_err(|e| PrepareError::Invalid(format!("compilation aborted: {e}")))?
            .map_err(FunctionError::from)
    }

    fn install(&self, record: FunctionRecord, handler: ComponentPre) -> Arc<DeployedFunction> {
        let function = Arc::new(DeployedFunction {
            concurrency: Arc::new(Semaphore::new(
                usize::try_from(record.limits.max_concurrency).unwrap_or(1),
            )),
            record,
            handler,
        });
        self.deployed
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(function.record.name.clone(), function.clone());
        function
    }

    /// Validates, precompiles and stores a component under `name` (a new
    /// version if the name exists). The trigger's target is checked by the caller.
    pub async fn deploy(
        &self,
        name: &str,
        component: Vec<u8>,
        trigger: Trigger,
        limits: FunctionLimits,
        rolled_back_from: Option<u32>,
    ) -> Result<Arc<DeployedFunction>, FunctionError> {
        validate_name(name)?;
        limits.validate()?;
        let hash = hex::encode(Sha256::digest(&component));
        let size = component.len();
        // A component deployed before (a redeploy, a rollback, the same
        // build under another name) reuses its precompiled artifact: the
        // warm path from upload to first invocation skips compilation.
        let cached = self
            .store
            .compiled()
            .get(self.compiled_key(&hash))
            .map_err(StoreError::from)?
            .and_then(|compiled| {
                let handler = self.runtime.load_precompiled(&compiled).ok()?;
                Some((handler, compiled.to_vec()))
            });
        let (handler, compiled) = match cached {
            Some(hit) => hit,
            None => self.compile(component.clone()).await?,
        };
        let needs = trigger.component_kind();
        if !trigger.accepts(handler.kind()) {
            return Err(FunctionError::TriggerMismatch {
                trigger: match trigger {
                    Trigger::Http(_) => "an HTTP trigger",
                    Trigger::Queue(_) => "a queue trigger",
                    Trigger::Topic { .. } => "a topic trigger",
                },
                needs,
                got: handler.kind(),
                hint: match needs {
                    ComponentKind::Http => {
                        " (mark the Rust handler with #[sluice_sdk::http_handler])"
                    }
                    ComponentKind::Handler => {
                        " (mark the Rust handler with #[sluice_sdk::message_handler] or #[sluice_sdk::event_handler])"
                    }
                    ComponentKind::BatchHandler => {
                        " (mark the Rust handler with #[sluice_sdk::message_batch_handler])"
                    }
                },
            });
        }
        let version = self.get(name).map_or(1, |f| f.record.version + 1);
        let record = FunctionRecord {
            name: name.to_string(),
            version,
            component_hash: hash.clone(),
            component_size: size,
            deployed_at: clock::to_rfc3339(clock::now_ms()),
            trigger,
            limits,
            rolled_back_from,
        };
        let json = serde_json::to_vec(&record).map_err(|e| StoreError::Corrupt {
            tree: "functions",
            detail: e.to_string(),
        })?;
        self.store
            .entities()
            .insert(version_key(name, version), json.clone())
            .map_err(StoreError::from)?;
        self.store
            .components()
            .insert(&hash, component)
            .map_err(StoreError::from)?;
        self.store
            .compiled()
            .insert(self.compiled_key(&hash), compiled)
            .map_err(StoreError::from)?;
        self.store
            .functions()
            .insert(name, json)
            .map_err(StoreError::from)?;
        self.store.commit().await?;
        Ok(self.install(record, handler))
    }

    /// Removes a function. Its component stays stored (others may share it).
    pub async fn delete(&self, name: &str) -> Result<FunctionRecord, FunctionError> {
        let removed = self
            .deployed
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
            .ok_or_else(|| FunctionError::NotFound(name.to_string()))?;
        self.store
            .functions()
            .remove(name)
            .map_err(StoreError::from)?;
        self.store
            .entities()
            .remove(settings_key(name))
            .map_err(StoreError::from)?;
        for entry in self
            .store
            .entities()
            .scan_prefix(format!("version/{name}/"))
        {
            let (key, _) = entry.map_err(StoreError::from)?;
            self.store
                .entities()
                .remove(key)
                .map_err(StoreError::from)?;
        }
        self.store.commit().await?;
        self.settings
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        Ok(removed.record.clone())
    }

    /// Every version of a function, oldest first.
    pub fn versions(&self, name: &str) -> Result<Vec<FunctionRecord>, FunctionError> {
        let mut out = Vec::new();
        for entry in self
            .store
            .entities()
            .scan_prefix(format!("version/{name}/"))
        {
            let (_, value) = entry.map_err(StoreError::from)?;
            out.push(
                serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt {
                    tree: "entities",
                    detail: format!("a version of `{name}`: {e}"),
                })?,
            );
        }
        if out.is_empty() {
            // Deployed before versions were kept: the current one is all there is.
            out.extend(self.get(name).map(|f| f.record.clone()));
        }
        if out.is_empty() {
            return Err(FunctionError::NotFound(name.to_string()));
        }
        Ok(out)
    }

    /// One stored version with its component bytes, for a rollback.
    pub fn version_component(
        &self,
        name: &str,
        version: u32,
    ) -> Result<(FunctionRecord, Vec<u8>), FunctionError> {
        let record = self
            .versions(name)?
            .into_iter()
            .find(|r| r.version == version)
            .ok_or_else(|| FunctionError::VersionNotFound {
                name: name.to_string(),
                version,
            })?;
        let bytes = self
            .store
            .components()
            .get(&record.component_hash)
            .map_err(StoreError::from)?
            .ok_or_else(|| StoreError::Corrupt {
                tree: "components",
                detail: format!("component {} is missing", record.component_hash),
            })?;
        Ok((record, bytes.to_vec()))
    }

    /// A function's settings (empty when none were set).
    pub fn settings(&self, name: &str) -> Arc<FunctionSettings> {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// Replaces a function's settings (it need not be deployed yet);
    /// invocations that start afterwards see them.
    pub async fn put_settings(
        &self,
        name: &str,
        settings: FunctionSettings,
    ) -> Result<(), FunctionError> {
        validate_name(name)?;
        settings.validate()?;
        let json = serde_json::to_vec(&settings).map_err(|e| StoreError::Corrupt {
            tree: "entities",
            detail: e.to_string(),
        })?;
        self.store
            .entities()
            .insert(settings_key(name), json)
            .map_err(StoreError::from)?;
        self.store.commit().await?;
        self.settings
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), Arc::new(settings));
        Ok(())
    }

    /// The current version of a function.
    pub fn get(&self, name: &str) -> Option<Arc<DeployedFunction>> {
        self.deployed
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Every deployed function's current version, in no order.
    pub fn all(&self) -> Vec<Arc<DeployedFunction>> {
        self.deployed
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Every function, sorted by name.
    pub fn list(&self) -> Vec<FunctionRecord> {
        let mut records: Vec<FunctionRecord> = self
            .deployed
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|f| f.record.clone())
            .collect();
        records.sort_by(|a, b| a.name.cmp(&b.name));
        records
    }

    /// The runtime functions run in.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }
}
