//! `sluice.toml`, the app manifest: parsing, validation and the apply plan.
//!
//! A manifest declares an app: queues, Event Grid topics with their event
//! subscriptions, Service Bus topics with their subscriptions, and functions
//! (a handler crate, a trigger, limits and settings). `sluice up`
//! ([`crate::cli`]) builds the functions and applies the rest through the
//! HTTP API; this module knows nothing of HTTP, files other than the
//! manifest, or builds.
//!
//! Read [`load`] (or [`parse`]) first: it turns the TOML into a [`Manifest`]
//! of resolved declarations ([`QueueDecl`], [`TopicDecl`], [`BusTopicDecl`],
//! [`FunctionDecl`]) whose definitions are the host's own types
//! ([`QueueProperties`], [`SubscriptionSpec`], [`Trigger`], [`FunctionLimits`]),
//! with defaults filled in, so applying is a comparison with what the host
//! answers. Every problem is a [`ManifestError`] naming the file, the line
//! and the field; all problems are reported at once ([`ManifestErrors`]).
//! References the manifest cannot resolve itself (a trigger queue declared
//! elsewhere) are listed by [`Manifest::external_references`] for the caller
//! to check against the host. [`Manifest::steps`] is the order to apply in.
//!
//! Keys are the management API's JSON names in snake_case
//! (`maxDeliveryCount` → `max_delivery_count`); `docs/manifest.md` is the
//! reference.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::broker::filter::RuleFilter;
use crate::broker::{QueueProperties, TopicProperties, validate_entity_name};
use crate::events::{
    AdvancedFilter, Destination, EventSchema, Filter, RetryPolicy, SubscriptionSpec,
    WebhookDestination,
};
use crate::functions::{FunctionLimits, FunctionSettings, HttpTrigger, Trigger};

/// The manifest's file name, looked for in the current directory.
pub const MANIFEST_FILE: &str = "sluice.toml";

/// The rule name a bus subscription's `sql` filter is stored under (as
/// `sluice bus subscribe --sql` does).
pub const SQL_RULE_NAME: &str = "filter";

/// The `topicType` of a system topic (the push model's events).
pub const SYSTEM_TOPIC_TYPE: &str = "Microsoft.ServiceBus.Namespaces";

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// One problem in a manifest: where it is and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    /// The manifest file.
    pub file: PathBuf,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// The field as a dotted path (`functions.fulfil.queue`), or empty for
    /// a TOML syntax error (the line says where).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a manifest (at least one).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ManifestErrors(pub Vec<ManifestError>);

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            all => {
                write!(f, "{} problems in the manifest:", all.len())?;
                for error in all {
                    write!(f, "\n  {error}")?;
                }
                Ok(())
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The resolved manifest
// ---------------------------------------------------------------------------

/// A parsed and validated manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// The manifest file.
    pub file: PathBuf,
    /// The directory function paths are relative to.
    pub dir: PathBuf,
    /// Queues, by name.
    pub queues: Vec<QueueDecl>,
    /// Event Grid topics, by name.
    pub topics: Vec<TopicDecl>,
    /// Service Bus topics, by name.
    pub bus_topics: Vec<BusTopicDecl>,
    /// Functions, by name.
    pub functions: Vec<FunctionDecl>,
}

/// `[queues.NAME]`.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueDecl {
    /// The queue's name.
    pub name: String,
    /// Where it is declared.
    pub line: usize,
    /// Its options, defaults filled in.
    pub properties: QueueProperties,
}

/// `[topics.NAME]`: an Event Grid topic.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicDecl {
    /// The topic's name.
    pub name: String,
    /// Where it is declared.
    pub line: usize,
    /// The schema publishers must use.
    pub input_schema: EventSchema,
    /// A system topic: it receives the broker's push-model events
    /// (`topicType` `Microsoft.ServiceBus.Namespaces`).
    pub system: bool,
    /// `[topics.NAME.subscriptions.SUB]`, by name.
    pub subscriptions: Vec<EventSubscriptionDecl>,
}

/// `[topics.T.subscriptions.NAME]`: an event subscription.
#[derive(Clone, Debug, PartialEq)]
pub struct EventSubscriptionDecl {
    /// The subscription's name.
    pub name: String,
    /// Where it is declared.
    pub line: usize,
    /// Its definition, defaults filled in.
    pub spec: SubscriptionSpec,
}

/// `[bus_topics.NAME]`: a Service Bus topic.
#[derive(Clone, Debug, PartialEq)]
pub struct BusTopicDecl {
    /// The topic's name.
    pub name: String,
    /// Where it is declared.
    pub line: usize,
    /// Its options, defaults filled in.
    pub properties: TopicProperties,
    /// `[bus_topics.NAME.subscriptions.SUB]`, by name.
    pub subscriptions: Vec<BusSubscriptionDecl>,
}

/// `[bus_topics.T.subscriptions.NAME]`: a Service Bus subscription.
#[derive(Clone, Debug, PartialEq)]
pub struct BusSubscriptionDecl {
    /// The subscription's name.
    pub name: String,
    /// Where it is declared.
    pub line: usize,
    /// The options of the queue behind it, defaults filled in.
    pub properties: QueueProperties,
    /// A SQL filter: when set, the subscription's only rule is
    /// [`SQL_RULE_NAME`] with it; when absent, its rules are left alone.
    pub sql: Option<String>,
}

/// `[functions.NAME]`.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionDecl {
    /// The function's name.
    pub name: String,
    /// Where it is declared.
    pub line: usize,
    /// The handler crate's directory, resolved against the manifest's directory.
    pub crate_dir: PathBuf,
    /// What makes it run.
    pub trigger: Trigger,
    /// Its limits, defaults filled in.
    pub limits: FunctionLimits,
    /// `config`: values the handler reads with `config::get`.
    pub config: BTreeMap<String, String>,
    /// `secrets`: written in the manifest.
    pub secrets: BTreeMap<String, String>,
    /// `secrets_from_env`: secret name → environment variable, read when applied.
    pub secrets_from_env: BTreeMap<String, String>,
    /// `allowed_hosts`: outbound HTTP allow-list.
    pub allowed_hosts: Vec<String>,
    /// `api_keys_from_env`: API key name → environment variable (an HTTP
    /// trigger with `apiKey` auth), read when applied.
    pub api_keys_from_env: BTreeMap<String, String>,
}

impl FunctionDecl {
    /// The settings to apply, with `secrets_from_env` read through `env`
    /// (`std::env::var` in `sluice up`); an unset variable is an error that
    /// names the function and the variable.
    pub fn settings(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<FunctionSettings, String> {
        let mut secrets = self.secrets.clone();
        self.read_env(
            "secrets_from_env",
            &self.secrets_from_env,
            &env,
            &mut secrets,
        )?;
        let mut api_keys = BTreeMap::new();
        self.read_env(
            "api_keys_from_env",
            &self.api_keys_from_env,
            &env,
            &mut api_keys,
        )?;
        Ok(FunctionSettings {
            config: self.config.clone(),
            secrets,
            allowed_hosts: self.allowed_hosts.clone(),
            api_keys,
        })
    }

    /// Reads `field`'s table of name → environment variable into `into`; an
    /// unset variable is an error that names the function, field and variables.
    fn read_env(
        &self,
        field: &str,
        from_env: &BTreeMap<String, String>,
        env: &impl Fn(&str) -> Option<String>,
        into: &mut BTreeMap<String, String>,
    ) -> Result<(), String> {
        let mut missing = Vec::new();
        for (name, variable) in from_env {
            match env(variable) {
                Some(value) => {
                    into.insert(name.clone(), value);
                }
                None => missing.push(format!("`{variable}`")),
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let (noun, verb) = if missing.len() == 1 {
            ("variable", "is")
        } else {
            ("variables", "are")
        };
        Err(format!(
            "functions.{}.{field}: environment {noun} {} {verb} not set",
            self.name,
            missing.join(", ")
        ))
    }
}

/// What kind of entity a reference points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReferenceKind {
    /// A queue (or a Service Bus subscription's queue `topic/subscriptions/name`).
    Queue,
    /// An Event Grid topic.
    Topic,
    /// A function.
    Function,
}

impl fmt::Display for ReferenceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReferenceKind::Queue => "queue",
            ReferenceKind::Topic => "topic",
            ReferenceKind::Function => "function",
        })
    }
}

/// A name the manifest uses but does not declare: it must exist on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// What it must be.
    pub kind: ReferenceKind,
    /// Its name.
    pub name: String,
    /// The field that names it (`functions.fulfil.queue`).
    pub field: String,
    /// Where.
    pub line: usize,
}

/// One thing to apply, in [`Manifest::steps`] order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step<'a> {
    /// Create a queue.
    Queue(&'a QueueDecl),
    /// Create a Service Bus topic.
    BusTopic(&'a BusTopicDecl),
    /// Create a Service Bus subscription (and set its SQL rule).
    BusSubscription(&'a BusTopicDecl, &'a BusSubscriptionDecl),
    /// Create an Event Grid topic.
    Topic(&'a TopicDecl),
    /// Set a function's settings, then deploy it.
    Function(&'a FunctionDecl),
    /// Create or update an event subscription.
    EventSubscription(&'a TopicDecl, &'a EventSubscriptionDecl),
}

impl Manifest {
    /// What to apply, in order: queues, Service Bus topics and their
    /// subscriptions, Event Grid topics, functions (their triggers exist by
    /// then), and event subscriptions last (their destinations exist by then).
    pub fn steps(&self) -> Vec<Step<'_>> {
        let mut steps: Vec<Step<'_>> = self.queues.iter().map(Step::Queue).collect();
        for topic in &self.bus_topics {
            steps.push(Step::BusTopic(topic));
            steps.extend(
                topic
                    .subscriptions
                    .iter()
                    .map(|s| Step::BusSubscription(topic, s)),
            );
        }
        steps.extend(self.topics.iter().map(Step::Topic));
        steps.extend(self.functions.iter().map(Step::Function));
        for topic in &self.topics {
            steps.extend(
                topic
                    .subscriptions
                    .iter()
                    .map(|s| Step::EventSubscription(topic, s)),
            );
        }
        steps
    }

    /// A function by name.
    pub fn function(&self, name: &str) -> Option<&FunctionDecl> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// Whether `name` is a queue this manifest creates: a declared queue, or
    /// a declared Service Bus subscription's queue `topic/subscriptions/sub`.
    fn declares_queue(&self, name: &str) -> bool {
        self.queues.iter().any(|q| q.name == name)
            || self.bus_topics.iter().any(|t| {
                t.subscriptions
                    .iter()
                    .any(|s| crate::broker::topic::subscription_queue(&t.name, &s.name) == name)
            })
    }

    /// References to entities the manifest does not declare; `sluice up`
    /// checks that each exists on the host before applying anything.
    pub fn external_references(&self) -> Vec<Reference> {
        let mut found = Vec::new();
        let mut push = |kind, name: &str, field: String, line| {
            found.push(Reference {
                kind,
                name: name.to_string(),
                field,
                line,
            })
        };
        for queue in &self.queues {
            let targets = [
                ("forward_to", &queue.properties.forward_to),
                (
                    "forward_dead_lettered_messages_to",
                    &queue.properties.forward_dead_lettered_messages_to,
                ),
            ];
            for (key, target) in targets {
                if let Some(target) = target
                    && !self.declares_queue(target)
                {
                    let field = format!("queues.{}.{key}", queue.name);
                    push(ReferenceKind::Queue, target, field, queue.line);
                }
            }
        }
        for function in &self.functions {
            match &function.trigger {
                Trigger::Queue(queue) if !self.declares_queue(queue) => {
                    let field = format!("functions.{}.queue", function.name);
                    push(ReferenceKind::Queue, queue, field, function.line);
                }
                Trigger::Topic { topic, .. } if !self.topics.iter().any(|t| &t.name == topic) => {
                    let field = format!("functions.{}.topic", function.name);
                    push(ReferenceKind::Topic, topic, field, function.line);
                }
                _ => {}
            }
        }
        for topic in &self.topics {
            for sub in &topic.subscriptions {
                let field = format!("topics.{}.subscriptions.{}", topic.name, sub.name);
                match &sub.spec.destination {
                    Destination::Queue(queue) if !self.declares_queue(queue) => {
                        push(
                            ReferenceKind::Queue,
                            queue,
                            format!("{field}.queue"),
                            sub.line,
                        );
                    }
                    Destination::Function(function) if self.function(function).is_none() => {
                        let field = format!("{field}.function");
                        push(ReferenceKind::Function, function, field, sub.line);
                    }
                    _ => {}
                }
            }
        }
        found
    }
}

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

/// Reads, parses and validates the manifest at `file`, and checks that each
/// function's crate directory holds a `Cargo.toml`.
pub fn load(file: &Path) -> Result<Manifest, ManifestErrors> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        ManifestErrors(vec![ManifestError {
            file: file.to_path_buf(),
            line: None,
            field: String::new(),
            message: format!("cannot read the manifest: {e}"),
        }])
    })?;
    let manifest = parse(&text, file)?;
    let mut errors = Vec::new();
    let mut resolved = manifest.clone();
    for function in &mut resolved.functions {
        let error = |message: String| ManifestError {
            file: file.to_path_buf(),
            line: Some(function.line),
            field: format!("functions.{}.path", function.name),
            message,
        };
        if !function.crate_dir.join("Cargo.toml").is_file() {
            errors.push(error(format!(
                "{} is not a handler crate (it has no Cargo.toml)",
                function.crate_dir.display()
            )));
            continue;
        }
        match std::fs::canonicalize(&function.crate_dir) {
            Ok(dir) => function.crate_dir = dir,
            Err(e) => errors.push(error(format!(
                "cannot resolve {}: {e}",
                function.crate_dir.display()
            ))),
        }
    }
    if errors.is_empty() {
        Ok(resolved)
    } else {
        Err(ManifestErrors(errors))
    }
}

/// Parses and validates manifest text; `file` names it in errors, and its
/// directory is what function paths are relative to. Touches no files.
pub fn parse(text: &str, file: &Path) -> Result<Manifest, ManifestErrors> {
    let raw: RawManifest = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|span| line_of(text, &span));
        let mut message = e.message().trim().to_string();
        if let Some(source) = line.and_then(|l| text.lines().nth(l - 1)) {
            message = format!("{message} (in `{}`)", source.trim());
        }
        ManifestErrors(vec![ManifestError {
            file: file.to_path_buf(),
            line,
            field: String::new(),
            message,
        }])
    })?;
    let dir = match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut checker = Checker {
        file,
        text,
        errors: Vec::new(),
    };
    let manifest = checker.resolve(raw, &dir);
    if checker.errors.is_empty() {
        Ok(manifest)
    } else {
        Err(ManifestErrors(checker.errors))
    }
}

/// The 1-based line of a byte span's start.
fn line_of(text: &str, span: &Range<usize>) -> usize {
    let end = span.start.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

// ---------------------------------------------------------------------------
// The TOML shape
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default)]
    queues: BTreeMap<Spanned<String>, RawQueue>,
    #[serde(default)]
    topics: BTreeMap<Spanned<String>, RawTopic>,
    #[serde(default)]
    bus_topics: BTreeMap<Spanned<String>, RawBusTopic>,
    #[serde(default)]
    functions: BTreeMap<Spanned<String>, RawFunction>,
}

/// A queue, or a Service Bus subscription's queue (which may also carry `sql`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    max_delivery_count: Option<u32>,
    lock_duration_secs: Option<u64>,
    max_message_size_bytes: Option<usize>,
    default_message_time_to_live_secs: Option<u64>,
    dead_lettering_on_message_expiration: Option<bool>,
    requires_duplicate_detection: Option<bool>,
    duplicate_detection_history_time_window_secs: Option<u64>,
    requires_session: Option<bool>,
    forward_to: Option<String>,
    forward_dead_lettered_messages_to: Option<String>,
    sql: Option<Spanned<String>>,
}

impl RawQueue {
    fn properties(&self) -> QueueProperties {
        let d = QueueProperties::default();
        QueueProperties {
            max_delivery_count: self.max_delivery_count.unwrap_or(d.max_delivery_count),
            lock_duration_secs: self.lock_duration_secs.unwrap_or(d.lock_duration_secs),
            max_message_size_bytes: self
                .max_message_size_bytes
                .unwrap_or(d.max_message_size_bytes),
            default_message_time_to_live_secs: self.default_message_time_to_live_secs,
            dead_lettering_on_message_expiration: self
                .dead_lettering_on_message_expiration
                .unwrap_or(d.dead_lettering_on_message_expiration),
            requires_duplicate_detection: self
                .requires_duplicate_detection
                .unwrap_or(d.requires_duplicate_detection),
            duplicate_detection_history_time_window_secs: self
                .duplicate_detection_history_time_window_secs
                .unwrap_or(d.duplicate_detection_history_time_window_secs),
            requires_session: self.requires_session.unwrap_or(d.requires_session),
            forward_to: self.forward_to.clone(),
            forward_dead_lettered_messages_to: self.forward_dead_lettered_messages_to.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopic {
    input_schema: Option<EventSchema>,
    system: Option<bool>,
    #[serde(default)]
    subscriptions: BTreeMap<Spanned<String>, RawEventSubscription>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEventSubscription {
    queue: Option<String>,
    function: Option<String>,
    webhook: Option<String>,
    max_events_per_batch: Option<u32>,
    preferred_batch_size_in_kilobytes: Option<u32>,
    event_delivery_schema: Option<EventSchema>,
    #[serde(default)]
    filter: RawFilter,
    #[serde(default)]
    retry_policy: RawRetryPolicy,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    included_event_types: Option<Vec<String>>,
    subject_begins_with: Option<String>,
    subject_ends_with: Option<String>,
    is_subject_case_sensitive: Option<bool>,
    #[serde(default)]
    advanced_filters: Vec<Spanned<RawAdvancedFilter>>,
    enable_advanced_filtering_on_arrays: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdvancedFilter {
    operator_type: String,
    key: String,
    value: Option<toml::Value>,
    values: Option<toml::Value>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetryPolicy {
    max_delivery_attempts: Option<u32>,
    event_time_to_live_in_minutes: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBusTopic {
    default_message_time_to_live_secs: Option<u64>,
    requires_duplicate_detection: Option<bool>,
    duplicate_detection_history_time_window_secs: Option<u64>,
    max_message_size_bytes: Option<usize>,
    #[serde(default)]
    subscriptions: BTreeMap<Spanned<String>, RawQueue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFunction {
    path: Option<String>,
    queue: Option<String>,
    topic: Option<String>,
    event_types: Option<Vec<String>>,
    max_concurrency: Option<u32>,
    timeout_secs: Option<u64>,
    memory_mib: Option<u32>,
    max_log_kib: Option<u32>,
    max_message_batch_size: Option<u32>,
    #[serde(default)]
    config: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    secrets: BTreeMap<String, String>,
    secrets_from_env: Option<SecretsFromEnv>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    http: Option<HttpTrigger>,
    #[serde(default)]
    api_keys_from_env: BTreeMap<String, String>,
}

/// `secrets_from_env = ["CRM_TOKEN"]` (the secret is named like the
/// variable) or `{ crm-token = "CRM_TOKEN" }` (secret name → variable).
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "a list of environment variable names, or a table of secret name = \"VARIABLE\""
)]
enum SecretsFromEnv {
    Names(Vec<String>),
    Map(BTreeMap<String, String>),
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

/// Collects problems while turning the raw TOML into declarations.
struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    errors: Vec<ManifestError>,
}

impl Checker<'_> {
    fn line(&self, span: &Range<usize>) -> usize {
        line_of(self.text, span)
    }

    fn error(&mut self, line: usize, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ManifestError {
            file: self.file.to_path_buf(),
            line: Some(line),
            field: field.into(),
            message: message.into(),
        });
    }

    fn resolve(&mut self, raw: RawManifest, dir: &Path) -> Manifest {
        let queues = raw
            .queues
            .into_iter()
            .map(|(name, queue)| self.queue(name, queue))
            .collect();
        let topics = raw
            .topics
            .into_iter()
            .map(|(name, topic)| self.topic(name, topic))
            .collect();
        let bus_topics = raw
            .bus_topics
            .into_iter()
            .map(|(name, topic)| self.bus_topic(name, topic))
            .collect();
        let functions = raw
            .functions
            .into_iter()
            .map(|(name, function)| self.function(name, function, dir))
            .collect();
        let manifest = Manifest {
            file: self.file.to_path_buf(),
            dir: dir.to_path_buf(),
            queues,
            topics,
            bus_topics,
            functions,
        };
        self.cross_check(&manifest);
        manifest
    }

    fn entity_name(&mut self, line: usize, field: &str, name: &str) {
        if let Err(e) = validate_entity_name(name) {
            self.error(line, field, e.to_string());
        }
    }

    fn queue(&mut self, name: Spanned<String>, raw: RawQueue) -> QueueDecl {
        let line = self.line(&name.span());
        let name = name.into_inner();
        let field = format!("queues.{name}");
        self.entity_name(line, &field, &name);
        if let Some(sql) = &raw.sql {
            self.error(
                self.line(&sql.span()),
                format!("{field}.sql"),
                "a SQL filter belongs to a Service Bus subscription \
                 ([bus_topics.TOPIC.subscriptions.NAME]), not to a queue",
            );
        }
        self.queue_properties(line, &field, &raw);
        QueueDecl {
            name,
            line,
            properties: raw.properties(),
        }
    }

    /// Checks what the manifest can about queue options (the host checks again).
    fn queue_properties(&mut self, line: usize, field: &str, raw: &RawQueue) {
        if raw.max_delivery_count == Some(0) {
            self.error(
                line,
                format!("{field}.max_delivery_count"),
                "must be at least 1",
            );
        }
        if let Some(secs) = raw.lock_duration_secs
            && !(1..=crate::broker::MAX_LOCK_DURATION_SECS).contains(&secs)
        {
            self.error(
                line,
                format!("{field}.lock_duration_secs"),
                format!(
                    "must be between 1 and {}, got {secs}",
                    crate::broker::MAX_LOCK_DURATION_SECS
                ),
            );
        }
        if raw.default_message_time_to_live_secs == Some(0) {
            self.error(
                line,
                format!("{field}.default_message_time_to_live_secs"),
                "must be above 0 (leave it out for no expiry)",
            );
        }
        if raw.duplicate_detection_history_time_window_secs.is_some()
            && raw.requires_duplicate_detection != Some(true)
        {
            self.error(
                line,
                format!("{field}.duplicate_detection_history_time_window_secs"),
                "has no effect without `requires_duplicate_detection = true`",
            );
        }
        for (key, target) in [
            ("forward_to", &raw.forward_to),
            (
                "forward_dead_lettered_messages_to",
                &raw.forward_dead_lettered_messages_to,
            ),
        ] {
            if let Some(target) = target {
                self.entity_name(line, &format!("{field}.{key}"), target);
            }
        }
    }

    fn topic(&mut self, name: Spanned<String>, raw: RawTopic) -> TopicDecl {
        let line = self.line(&name.span());
        let name = name.into_inner();
        let field = format!("topics.{name}");
        self.event_name(line, &field, &name);
        let subscriptions = raw
            .subscriptions
            .into_iter()
            .map(|(sub, spec)| self.event_subscription(&field, sub, spec))
            .collect();
        TopicDecl {
            name,
            line,
            input_schema: raw.input_schema.unwrap_or_default(),
            system: raw.system.unwrap_or(false),
            subscriptions,
        }
    }

    /// Event Grid's naming rule for topics and subscriptions.
    fn event_name(&mut self, line: usize, field: &str, name: &str) {
        let ok = (1..=128).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            self.error(
                line,
                field,
                format!("invalid name `{name}`: use 1 to 128 letters, digits, `-`, `_` or `.`"),
            );
        }
    }

    fn event_subscription(
        &mut self,
        topic_field: &str,
        name: Spanned<String>,
        raw: RawEventSubscription,
    ) -> EventSubscriptionDecl {
        let line = self.line(&name.span());
        let name = name.into_inner();
        let field = format!("{topic_field}.subscriptions.{name}");
        self.event_name(line, &field, &name);
        let destination = match (raw.queue, raw.function, raw.webhook) {
            (Some(queue), None, None) => Destination::Queue(queue),
            (None, Some(function), None) => Destination::Function(function),
            (None, None, Some(url)) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    self.error(
                        line,
                        format!("{field}.webhook"),
                        format!("`{url}` is not an http:// or https:// URL"),
                    );
                }
                Destination::Webhook(WebhookDestination {
                    endpoint_url: url,
                    max_events_per_batch: raw.max_events_per_batch.unwrap_or(1),
                    preferred_batch_size_in_kilobytes: raw
                        .preferred_batch_size_in_kilobytes
                        .unwrap_or(64),
                })
            }
            (queue, function, webhook) => {
                let given = [
                    queue.as_ref().map(|_| "queue"),
                    function.as_ref().map(|_| "function"),
                    webhook.as_ref().map(|_| "webhook"),
                ];
                let given: Vec<&str> = given.into_iter().flatten().collect();
                let message = if given.is_empty() {
                    "needs a destination: `queue = \"...\"`, `function = \"...\"` or `webhook = \"https://...\"`".to_string()
                } else {
                    format!(
                        "give one destination, not {}",
                        given
                            .iter()
                            .map(|g| format!("`{g}`"))
                            .collect::<Vec<_>>()
                            .join(" and ")
                    )
                };
                self.error(line, field.clone(), message);
                Destination::Queue(String::new())
            }
        };
        if !matches!(destination, Destination::Webhook(_)) {
            for (key, given) in [
                ("max_events_per_batch", raw.max_events_per_batch.is_some()),
                (
                    "preferred_batch_size_in_kilobytes",
                    raw.preferred_batch_size_in_kilobytes.is_some(),
                ),
            ] {
                if given {
                    self.error(
                        line,
                        format!("{field}.{key}"),
                        "applies to webhook destinations only",
                    );
                }
            }
        }
        let advanced_filters = raw
            .filter
            .advanced_filters
            .into_iter()
            .enumerate()
            .filter_map(|(i, f)| self.advanced_filter(&field, i, f))
            .collect();
        let defaults = RetryPolicy::default();
        let spec = SubscriptionSpec {
            destination,
            filter: Filter {
                included_event_types: raw.filter.included_event_types,
                subject_begins_with: raw.filter.subject_begins_with,
                subject_ends_with: raw.filter.subject_ends_with,
                is_subject_case_sensitive: raw.filter.is_subject_case_sensitive.unwrap_or(false),
                advanced_filters,
                enable_advanced_filtering_on_arrays: raw
                    .filter
                    .enable_advanced_filtering_on_arrays
                    .unwrap_or(false),
            },
            retry_policy: RetryPolicy {
                max_delivery_attempts: raw
                    .retry_policy
                    .max_delivery_attempts
                    .unwrap_or(defaults.max_delivery_attempts),
                event_time_to_live_in_minutes: raw
                    .retry_policy
                    .event_time_to_live_in_minutes
                    .unwrap_or(defaults.event_time_to_live_in_minutes),
            },
            event_delivery_schema: raw.event_delivery_schema,
        };
        let retry = &spec.retry_policy;
        if !(1..=30).contains(&retry.max_delivery_attempts) {
            self.error(
                line,
                format!("{field}.retry_policy.max_delivery_attempts"),
                format!(
                    "must be between 1 and 30, got {}",
                    retry.max_delivery_attempts
                ),
            );
        }
        if !(1..=1440).contains(&retry.event_time_to_live_in_minutes) {
            self.error(
                line,
                format!("{field}.retry_policy.event_time_to_live_in_minutes"),
                format!(
                    "must be between 1 and 1440, got {}",
                    retry.event_time_to_live_in_minutes
                ),
            );
        }
        EventSubscriptionDecl { name, line, spec }
    }

    /// An advanced filter, read in the API's JSON shape by the host's own type.
    fn advanced_filter(
        &mut self,
        field: &str,
        index: usize,
        raw: Spanned<RawAdvancedFilter>,
    ) -> Option<AdvancedFilter> {
        let line = self.line(&raw.span());
        let raw = raw.into_inner();
        let mut json = serde_json::json!({ "operatorType": raw.operator_type, "key": raw.key });
        for (name, value) in [("value", raw.value), ("values", raw.values)] {
            if let Some(value) = value {
                match serde_json::to_value(value) {
                    Ok(value) => json[name] = value,
                    Err(e) => {
                        self.error(
                            line,
                            format!("{field}.filter.advanced_filters[{index}].{name}"),
                            e.to_string(),
                        );
                        return None;
                    }
                }
            }
        }
        match serde_json::from_value::<AdvancedFilter>(json) {
            Ok(filter) => Some(filter),
            Err(e) => {
                let message = e.to_string().replace("operatorType", "operator_type");
                self.error(
                    line,
                    format!("{field}.filter.advanced_filters[{index}]"),
                    message,
                );
                None
            }
        }
    }

    fn bus_topic(&mut self, name: Spanned<String>, raw: RawBusTopic) -> BusTopicDecl {
        let line = self.line(&name.span());
        let name = name.into_inner();
        let field = format!("bus_topics.{name}");
        self.entity_name(line, &field, &name);
        if name.contains('/') {
            self.error(line, field.clone(), "a topic name is one segment (no `/`)");
        }
        if raw.duplicate_detection_history_time_window_secs.is_some()
            && raw.requires_duplicate_detection != Some(true)
        {
            self.error(
                line,
                format!("{field}.duplicate_detection_history_time_window_secs"),
                "has no effect without `requires_duplicate_detection = true`",
            );
        }
        let d = TopicProperties::default();
        let properties = TopicProperties {
            default_message_time_to_live_secs: raw.default_message_time_to_live_secs,
            requires_duplicate_detection: raw
                .requires_duplicate_detection
                .unwrap_or(d.requires_duplicate_detection),
            duplicate_detection_history_time_window_secs: raw
                .duplicate_detection_history_time_window_secs
                .unwrap_or(d.duplicate_detection_history_time_window_secs),
            max_message_size_bytes: raw
                .max_message_size_bytes
                .unwrap_or(d.max_message_size_bytes),
        };
        let subscriptions = raw
            .subscriptions
            .into_iter()
            .map(|(sub, queue)| {
                let line = self.line(&sub.span());
                let sub = sub.into_inner();
                let sub_field = format!("{field}.subscriptions.{sub}");
                self.entity_name(line, &sub_field, &sub);
                if sub.contains('/') {
                    self.error(
                        line,
                        sub_field.clone(),
                        "a subscription name is one segment (no `/`)",
                    );
                }
                self.queue_properties(line, &sub_field, &queue);
                let sql = queue.sql.as_ref().map(|sql| {
                    if let Err(e) = RuleFilter::sql(sql.get_ref()) {
                        self.error(
                            self.line(&sql.span()),
                            format!("{sub_field}.sql"),
                            e.to_string(),
                        );
                    }
                    sql.get_ref().clone()
                });
                BusSubscriptionDecl {
                    name: sub,
                    line,
                    properties: queue.properties(),
                    sql,
                }
            })
            .collect();
        BusTopicDecl {
            name,
            line,
            properties,
            subscriptions,
        }
    }

    fn function(&mut self, name: Spanned<String>, raw: RawFunction, dir: &Path) -> FunctionDecl {
        let line = self.line(&name.span());
        let name = name.into_inner();
        let field = format!("functions.{name}");
        let name_ok = (1..=64).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            self.error(
                line,
                field.clone(),
                format!("invalid function name `{name}`: use 1 to 64 letters, digits, `-` or `_`"),
            );
        }
        let crate_dir = match &raw.path {
            Some(path) if !path.trim().is_empty() => dir.join(path),
            _ => {
                self.error(
                    line,
                    format!("{field}.path"),
                    "missing: the handler crate's directory, relative to the manifest (`path = \".\"` for the manifest's own)",
                );
                dir.to_path_buf()
            }
        };
        let trigger = match (raw.queue, raw.topic, raw.http) {
            (None, None, Some(http)) => {
                if raw.event_types.is_some() {
                    self.error(
                        line,
                        format!("{field}.event_types"),
                        "applies to a topic trigger only (`topic = \"...\"`)",
                    );
                }
                if let Err(why) = crate::gateway::validate_trigger(&http) {
                    self.error(line, format!("{field}.http"), why);
                }
                Trigger::Http(http)
            }
            (_, _, Some(_)) => {
                self.error(
                    line,
                    field.clone(),
                    "give one trigger: `queue`, `topic` or `http`, not several",
                );
                Trigger::Queue(String::new())
            }
            (Some(queue), None, None) => {
                if raw.event_types.is_some() {
                    self.error(
                        line,
                        format!("{field}.event_types"),
                        "applies to a topic trigger only (`topic = \"...\"`)",
                    );
                }
                Trigger::Queue(queue)
            }
            (None, Some(topic), None) => Trigger::Topic {
                topic,
                event_types: raw.event_types.unwrap_or_default(),
            },
            (Some(_), Some(_), None) => {
                self.error(
                    line,
                    field.clone(),
                    "give one trigger: `queue = \"...\"` or `topic = \"...\"`, not both",
                );
                Trigger::Queue(String::new())
            }
            (None, None, None) => {
                self.error(
                    line,
                    field.clone(),
                    "needs a trigger: `queue = \"...\"`, `topic = \"...\"` (with optional `event_types`) or `http = { route = \"...\" }`",
                );
                Trigger::Queue(String::new())
            }
        };
        let d = FunctionLimits::default();
        let limits = FunctionLimits {
            max_concurrency: raw.max_concurrency.unwrap_or(d.max_concurrency),
            timeout_secs: raw.timeout_secs.unwrap_or(d.timeout_secs),
            memory_mib: raw.memory_mib.unwrap_or(d.memory_mib),
            max_log_kib: raw.max_log_kib.unwrap_or(d.max_log_kib),
            max_message_batch_size: raw
                .max_message_batch_size
                .unwrap_or(d.max_message_batch_size),
        };
        let ranges: [(&str, u64, u64, u64); 5] = [
            ("max_concurrency", limits.max_concurrency.into(), 1, 1000),
            ("timeout_secs", limits.timeout_secs, 1, 600),
            ("memory_mib", limits.memory_mib.into(), 1, 1024),
            ("max_log_kib", limits.max_log_kib.into(), 1, 10240),
            (
                "max_message_batch_size",
                limits.max_message_batch_size.into(),
                1,
                256,
            ),
        ];
        for (key, value, low, high) in ranges {
            if !(low..=high).contains(&value) {
                self.error(
                    line,
                    format!("{field}.{key}"),
                    format!("must be between {low} and {high}, got {value}"),
                );
            }
        }
        let mut config = BTreeMap::new();
        for (key, value) in raw.config {
            let value_line = self.line(&value.span());
            match value.into_inner() {
                toml::Value::String(s) => {
                    config.insert(key, s);
                }
                toml::Value::Integer(n) => {
                    config.insert(key, n.to_string());
                }
                toml::Value::Float(x) => {
                    config.insert(key, x.to_string());
                }
                toml::Value::Boolean(b) => {
                    config.insert(key, b.to_string());
                }
                other => self.error(
                    value_line,
                    format!("{field}.config.{key}"),
                    format!(
                        "a config value is a string, number or boolean, not {}",
                        other.type_str()
                    ),
                ),
            }
        }
        let secrets_from_env: BTreeMap<String, String> = match raw.secrets_from_env {
            None => BTreeMap::new(),
            Some(SecretsFromEnv::Names(names)) => {
                names.into_iter().map(|n| (n.clone(), n)).collect()
            }
            Some(SecretsFromEnv::Map(map)) => map,
        };
        for secret in secrets_from_env.keys() {
            if raw.secrets.contains_key(secret) {
                self.error(
                    line,
                    format!("{field}.secrets_from_env"),
                    format!("secret `{secret}` is also given in `secrets`; keep one"),
                );
            }
        }
        for (key, variables) in [
            ("secrets_from_env", &secrets_from_env),
            ("api_keys_from_env", &raw.api_keys_from_env),
        ] {
            for variable in variables.values() {
                if variable.is_empty() || variable.contains('=') || variable.contains('\0') {
                    self.error(
                        line,
                        format!("{field}.{key}"),
                        format!("`{variable}` is not an environment variable name"),
                    );
                }
            }
        }
        for host in &raw.allowed_hosts {
            if host.is_empty() || host.contains('/') {
                self.error(
                    line,
                    format!("{field}.allowed_hosts"),
                    format!(
                        "`{host}`: entries are host names, `host:port` or `*.domain`, without scheme or path"
                    ),
                );
            }
        }
        FunctionDecl {
            name,
            line,
            crate_dir,
            trigger,
            limits,
            config,
            secrets: raw.secrets,
            secrets_from_env,
            allowed_hosts: raw.allowed_hosts,
            api_keys_from_env: raw.api_keys_from_env,
        }
    }

    /// Checks between declarations: names that collide, triggers and
    /// destinations that point at the wrong kind of entity.
    fn cross_check(&mut self, m: &Manifest) {
        let bus: BTreeSet<&str> = m.bus_topics.iter().map(|t| t.name.as_str()).collect();
        for queue in &m.queues {
            if bus.contains(queue.name.as_str()) {
                self.error(
                    queue.line,
                    format!("queues.{}", queue.name),
                    format!(
                        "`{}` is also declared in [bus_topics]: queues and Service Bus topics share names",
                        queue.name
                    ),
                );
            }
        }
        for topic in &m.topics {
            if bus.contains(topic.name.as_str()) {
                self.error(
                    topic.line,
                    format!("topics.{}", topic.name),
                    format!(
                        "`{}` is also declared in [bus_topics]: Event Grid and Service Bus topics share names",
                        topic.name
                    ),
                );
            }
        }
        let queue_hint = |name: &str| -> Option<String> {
            if bus.contains(name) {
                Some(format!(
                    "`{name}` is a Service Bus topic; receive from one of its subscriptions: \
                     `{name}/subscriptions/NAME`"
                ))
            } else if m.topics.iter().any(|t| t.name == name) {
                Some(format!(
                    "`{name}` is an Event Grid topic, not a queue (use `topic = \"{name}\"`)"
                ))
            } else {
                None
            }
        };
        for function in &m.functions {
            let field = format!("functions.{}", function.name);
            match &function.trigger {
                Trigger::Queue(queue) if !m.declares_queue(queue) => {
                    if let Some(hint) = queue_hint(queue) {
                        self.error(function.line, format!("{field}.queue"), hint);
                    }
                }
                Trigger::Topic { topic, .. } => {
                    if bus.contains(topic.as_str()) {
                        self.error(
                            function.line,
                            format!("{field}.topic"),
                            format!(
                                "`{topic}` is a Service Bus topic; a function runs on one of its \
                                 subscriptions: `queue = \"{topic}/subscriptions/NAME\"`"
                            ),
                        );
                    }
                    // The deploy makes a subscription named after the function.
                    let clash = m
                        .topics
                        .iter()
                        .filter(|t| &t.name == topic)
                        .flat_map(|t| &t.subscriptions)
                        .find(|s| s.name == function.name);
                    if let Some(sub) = clash {
                        self.error(
                            sub.line,
                            format!("topics.{topic}.subscriptions.{}", sub.name),
                            format!(
                                "function `{}` has a topic trigger on `{topic}`, which makes the \
                                 subscription `{}`; name this one differently",
                                function.name, sub.name
                            ),
                        );
                    }
                }
                _ => {}
            }
        }
        for topic in &m.topics {
            for sub in &topic.subscriptions {
                if let Destination::Queue(queue) = &sub.spec.destination
                    && !queue.is_empty()
                    && !m.declares_queue(queue)
                    && let Some(hint) = queue_hint(queue)
                {
                    self.error(
                        sub.line,
                        format!("topics.{}.subscriptions.{}.queue", topic.name, sub.name),
                        hint,
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Manifest {
        match parse(text, Path::new("app/sluice.toml")) {
            Ok(m) => m,
            Err(e) => panic!("expected a valid manifest, got: {e}"),
        }
    }

    const FULL: &str = r#"
[queues.fulfil]
max_delivery_count = 5
lock_duration_secs = 30
requires_duplicate_detection = true
duplicate_detection_history_time_window_secs = 120
forward_dead_lettered_messages_to = "parking"

[queues.parking]

[topics.orders]
input_schema = "CloudEventSchemaV1_0"

[topics.orders.subscriptions.big-orders]
queue = "fulfil"
event_delivery_schema = "EventGridSchema"
filter.included_event_types = ["orders.created"]
filter.subject_begins_with = "orders/"
filter.advanced_filters = [
  { operator_type = "NumberGreaterThan", key = "data.total", value = 100 },
  { operator_type = "StringIn", key = "data.region", values = ["eu", "uk"] },
]
retry_policy.max_delivery_attempts = 5

[topics.orders.subscriptions.hook]
webhook = "https://example.com/hook"
max_events_per_batch = 10

[bus_topics.invoices]
requires_duplicate_detection = true

[bus_topics.invoices.subscriptions.eu]
sql = "region = 'eu'"
max_delivery_count = 3

[functions.validate]
path = "validate"
topic = "orders"
event_types = ["orders.created"]
timeout_secs = 10
allowed_hosts = ["api.example.com"]
secrets_from_env = ["CRM_TOKEN"]
config = { region = "eu", retries = 3, strict = true }

[functions.bill]
path = "../bill"
queue = "invoices/subscriptions/eu"
max_concurrency = 4
secrets = { token = "s3cret" }
"#;

    #[test]
    fn a_full_manifest_resolves_with_defaults_filled_in() {
        let m = parse_ok(FULL);
        assert_eq!(m.dir, Path::new("app"));
        let fulfil = &m.queues[0];
        assert_eq!(fulfil.name, "fulfil");
        assert_eq!(fulfil.line, 2);
        assert_eq!(fulfil.properties.max_delivery_count, 5);
        assert_eq!(fulfil.properties.lock_duration_secs, 30);
        assert!(fulfil.properties.requires_duplicate_detection);
        assert_eq!(
            fulfil
                .properties
                .duplicate_detection_history_time_window_secs,
            120
        );
        assert_eq!(m.queues[1].properties, QueueProperties::default());

        let orders = &m.topics[0];
        assert_eq!(orders.input_schema, EventSchema::CloudEvents);
        assert!(!orders.system);
        let big = &orders.subscriptions[0];
        assert_eq!(big.spec.destination, Destination::Queue("fulfil".into()));
        assert_eq!(big.spec.filter.advanced_filters.len(), 2);
        assert_eq!(big.spec.retry_policy.max_delivery_attempts, 5);
        assert_eq!(big.spec.retry_policy.event_time_to_live_in_minutes, 1440);
        assert_eq!(big.spec.event_delivery_schema, Some(EventSchema::EventGrid));
        let hook = &orders.subscriptions[1];
        assert!(matches!(
            &hook.spec.destination,
            Destination::Webhook(w) if w.max_events_per_batch == 10 && w.preferred_batch_size_in_kilobytes == 64
        ));

        let eu = &m.bus_topics[0].subscriptions[0];
        assert_eq!(eu.sql.as_deref(), Some("region = 'eu'"));
        assert_eq!(eu.properties.max_delivery_count, 3);

        let validate = m.function("validate").expect("declared");
        assert_eq!(validate.crate_dir, Path::new("app/validate"));
        assert_eq!(
            validate.trigger,
            Trigger::Topic {
                topic: "orders".into(),
                event_types: vec!["orders.created".into()]
            }
        );
        assert_eq!(validate.limits.timeout_secs, 10);
        assert_eq!(validate.limits.max_concurrency, 16);
        assert_eq!(validate.config["retries"], "3");
        assert_eq!(validate.config["strict"], "true");
        assert_eq!(validate.secrets_from_env["CRM_TOKEN"], "CRM_TOKEN");
        let bill = m.function("bill").expect("declared");
        assert_eq!(
            bill.trigger,
            Trigger::Queue("invoices/subscriptions/eu".into())
        );
        // Everything it references is declared.
        assert_eq!(m.external_references(), vec![]);
    }

    #[test]
    fn steps_create_entities_before_functions_and_subscriptions_last() {
        let m = parse_ok(FULL);
        let kinds: Vec<&str> = m
            .steps()
            .iter()
            .map(|s| match s {
                Step::Queue(_) => "queue",
                Step::BusTopic(_) => "bus-topic",
                Step::BusSubscription(..) => "bus-subscription",
                Step::Topic(_) => "topic",
                Step::Function(_) => "function",
                Step::EventSubscription(..) => "subscription",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "queue",
                "queue",
                "bus-topic",
                "bus-subscription",
                "topic",
                "function",
                "function",
                "subscription",
                "subscription"
            ]
        );
    }

    #[test]
    fn settings_read_secrets_from_the_environment() {
        let m = parse_ok(FULL);
        let validate = m.function("validate").expect("declared");
        let settings = validate
            .settings(|v| (v == "CRM_TOKEN").then(|| "from-env".to_string()))
            .expect("the variable is set");
        assert_eq!(settings.secrets["CRM_TOKEN"], "from-env");
        assert_eq!(settings.allowed_hosts, ["api.example.com"]);
        let error = validate.settings(|_| None).expect_err("unset");
        assert_eq!(
            error,
            "functions.validate.secrets_from_env: environment variable `CRM_TOKEN` is not set"
        );
        let bill = m.function("bill").expect("declared");
        assert_eq!(
            bill.settings(|_| None).expect("no env").secrets["token"],
            "s3cret"
        );
    }

    #[test]
    fn an_http_trigger_reads_its_route_auth_rate_limit_and_api_keys() {
        let m = parse_ok(
            r#"
[functions.accept]
path = "accept"
http = { route = "orders/{id}", methods = ["POST"], auth = { kind = "jwt", issuer = "https://login.example.com/", audiences = ["api://orders"], jwks_uri = "https://login.example.com/keys" }, rate_limit = { requests = 100, per_seconds = 60 } }
api_keys_from_env = { shop = "SHOP_KEY" }
"#,
        );
        let accept = m.function("accept").expect("declared");
        let Trigger::Http(http) = &accept.trigger else {
            panic!("an HTTP trigger: {:?}", accept.trigger);
        };
        assert_eq!(http.route, "orders/{id}");
        assert_eq!(http.methods, ["POST"]);
        let crate::functions::HttpAuth::Jwt(jwt) = &http.auth else {
            panic!("jwt auth: {:?}", http.auth);
        };
        assert_eq!(
            jwt.jwks_uri.as_deref(),
            Some("https://login.example.com/keys")
        );
        assert_eq!(
            http.rate_limit.map(|l| (l.requests, l.per_seconds)),
            Some((100, 60))
        );
        let settings = accept
            .settings(|v| (v == "SHOP_KEY").then(|| "k".repeat(32)))
            .expect("set");
        assert_eq!(settings.api_keys["shop"], "k".repeat(32));
        let error = accept.settings(|_| None).expect_err("unset");
        assert!(
            error.contains("functions.accept.api_keys_from_env"),
            "{error}"
        );

        let bad = parse(
            "[functions.f]\npath = \"f\"\nhttp = { route = \"queues\" }\n",
            Path::new("app/sluice.toml"),
        )
        .expect_err("reserved route");
        assert!(
            bad.to_string().contains("functions.f.http: route `queues`"),
            "{bad}"
        );
    }

    #[test]
    fn undeclared_references_are_left_for_the_host() {
        let m = parse_ok(
            r#"
[queues.a]
forward_to = "elsewhere"

[topics.t.subscriptions.s]
function = "audit"

[functions.f]
path = "f"
queue = "existing"
"#,
        );
        let found = m.external_references();
        let refs: Vec<(ReferenceKind, &str, &str, usize)> = found
            .iter()
            .map(|r| (r.kind, r.name.as_str(), r.field.as_str(), r.line))
            .collect();
        assert_eq!(
            refs,
            [
                (ReferenceKind::Queue, "elsewhere", "queues.a.forward_to", 2),
                (ReferenceKind::Queue, "existing", "functions.f.queue", 8),
                (
                    ReferenceKind::Function,
                    "audit",
                    "topics.t.subscriptions.s.function",
                    5
                ),
            ]
        );
    }

    /// Each bad manifest, and what its first error must say (file, line, field, message).
    #[test]
    fn errors_name_the_file_line_and_field() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "syntax error",
                "[queues.a\nmax_delivery_count = 1\n",
                "app/sluice.toml:1: ",
            ),
            (
                "unknown top-level table",
                "[queue.a]\n",
                "app/sluice.toml:1: unknown field `queue`, expected one of `queues`, `topics`, `bus_topics`, `functions`",
            ),
            (
                "unknown queue option",
                "[queues.a]\nmax_delivery = 3\n",
                "app/sluice.toml:2: unknown field `max_delivery`",
            ),
            (
                "wrong type",
                "[queues.a]\nmax_delivery_count = \"five\"\n",
                "app/sluice.toml:2: invalid type: string \"five\", expected u32",
            ),
            (
                "zero max delivery count",
                "[queues.a]\nmax_delivery_count = 0\n",
                "app/sluice.toml:1: queues.a.max_delivery_count: must be at least 1",
            ),
            (
                "lock too long",
                "[queues.a]\nlock_duration_secs = 301\n",
                "app/sluice.toml:1: queues.a.lock_duration_secs: must be between 1 and 300, got 301",
            ),
            (
                "window without detection",
                "[queues.a]\nduplicate_detection_history_time_window_secs = 60\n",
                "app/sluice.toml:1: queues.a.duplicate_detection_history_time_window_secs: has no effect without `requires_duplicate_detection = true`",
            ),
            (
                "bad queue name",
                "[queues.\"a b\"]\n",
                "app/sluice.toml:1: queues.a b: invalid entity name `a b`",
            ),
            (
                "sql on a queue",
                "[queues.a]\nsql = \"x = 1\"\n",
                "app/sluice.toml:2: queues.a.sql: a SQL filter belongs to a Service Bus subscription",
            ),
            (
                "bad sql",
                "[bus_topics.t.subscriptions.s]\nsql = \"x = \"\n",
                "app/sluice.toml:2: bus_topics.t.subscriptions.s.sql: ",
            ),
            (
                "function without trigger",
                "\n[functions.f]\npath = \"f\"\n",
                "app/sluice.toml:2: functions.f: needs a trigger",
            ),
            (
                "function with two triggers",
                "[functions.f]\npath = \"f\"\nqueue = \"q\"\ntopic = \"t\"\n",
                "app/sluice.toml:1: functions.f: give one trigger",
            ),
            (
                "function without path",
                "[functions.f]\nqueue = \"q\"\n",
                "app/sluice.toml:1: functions.f.path: missing",
            ),
            (
                "event types on a queue trigger",
                "[functions.f]\npath = \"f\"\nqueue = \"q\"\nevent_types = [\"a\"]\n",
                "app/sluice.toml:1: functions.f.event_types: applies to a topic trigger only",
            ),
            (
                "limit out of range",
                "[functions.f]\npath = \"f\"\nqueue = \"q\"\ntimeout_secs = 601\n",
                "app/sluice.toml:1: functions.f.timeout_secs: must be between 1 and 600, got 601",
            ),
            (
                "bad function name",
                "[functions.\"f.g\"]\npath = \"f\"\nqueue = \"q\"\n",
                "app/sluice.toml:1: functions.f.g: invalid function name `f.g`",
            ),
            (
                "table as config value",
                "[functions.f]\npath = \"f\"\nqueue = \"q\"\nconfig = { nested = { a = 1 } }\n",
                "app/sluice.toml:4: functions.f.config.nested: a config value is a string, number or boolean, not table",
            ),
            (
                "secret given twice",
                "[functions.f]\npath = \"f\"\nqueue = \"q\"\nsecrets = { T = \"x\" }\nsecrets_from_env = [\"T\"]\n",
                "app/sluice.toml:1: functions.f.secrets_from_env: secret `T` is also given in `secrets`",
            ),
            (
                "allowed host with a scheme",
                "[functions.f]\npath = \"f\"\nqueue = \"q\"\nallowed_hosts = [\"https://x\"]\n",
                "app/sluice.toml:1: functions.f.allowed_hosts: `https://x`",
            ),
            (
                "trigger on a bus topic",
                "[bus_topics.b]\n[functions.f]\npath = \"f\"\ntopic = \"b\"\n",
                "app/sluice.toml:2: functions.f.topic: `b` is a Service Bus topic",
            ),
            (
                "queue trigger on an event topic",
                "[topics.t]\n[functions.f]\npath = \"f\"\nqueue = \"t\"\n",
                "app/sluice.toml:2: functions.f.queue: `t` is an Event Grid topic, not a queue",
            ),
            (
                "subscription without destination",
                "[topics.t.subscriptions.s]\nfilter.subject_begins_with = \"x\"\n",
                "app/sluice.toml:1: topics.t.subscriptions.s: needs a destination",
            ),
            (
                "subscription with two destinations",
                "[topics.t.subscriptions.s]\nqueue = \"q\"\nfunction = \"f\"\n",
                "app/sluice.toml:1: topics.t.subscriptions.s: give one destination, not `queue` and `function`",
            ),
            (
                "batching on a queue destination",
                "[queues.q]\n[topics.t.subscriptions.s]\nqueue = \"q\"\nmax_events_per_batch = 5\n",
                "app/sluice.toml:2: topics.t.subscriptions.s.max_events_per_batch: applies to webhook destinations only",
            ),
            (
                "webhook that is not a URL",
                "[topics.t.subscriptions.s]\nwebhook = \"example.com\"\n",
                "app/sluice.toml:1: topics.t.subscriptions.s.webhook: `example.com` is not an http:// or https:// URL",
            ),
            (
                "unknown advanced filter operator",
                "[queues.q]\n[topics.t.subscriptions.s]\nqueue = \"q\"\nfilter.advanced_filters = [\n  { operator_type = \"NumberIsBig\", key = \"data.x\", value = 1 },\n]\n",
                "app/sluice.toml:5: topics.t.subscriptions.s.filter.advanced_filters[0]: unknown variant `NumberIsBig`",
            ),
            (
                "advanced filter missing its values",
                "[queues.q]\n[topics.t.subscriptions.s]\nqueue = \"q\"\nfilter.advanced_filters = [{ operator_type = \"StringIn\", key = \"data.x\" }]\n",
                "app/sluice.toml:4: topics.t.subscriptions.s.filter.advanced_filters[0]: missing field `values`",
            ),
            (
                "retry attempts out of range",
                "[queues.q]\n[topics.t.subscriptions.s]\nqueue = \"q\"\nretry_policy = { max_delivery_attempts = 31 }\n",
                "app/sluice.toml:2: topics.t.subscriptions.s.retry_policy.max_delivery_attempts: must be between 1 and 30, got 31",
            ),
            (
                "unknown input schema",
                "[topics.t]\ninput_schema = \"CloudEvents\"\n",
                "app/sluice.toml:2: unknown variant `CloudEvents`, expected `EventGridSchema` or `CloudEventSchemaV1_0`",
            ),
            (
                "subscription clashing with a topic trigger",
                "[topics.t.subscriptions.f]\nqueue = \"q\"\n[queues.q]\n[functions.f]\npath = \"f\"\ntopic = \"t\"\n",
                "app/sluice.toml:1: topics.t.subscriptions.f: function `f` has a topic trigger on `t`",
            ),
            (
                "queue and bus topic share a name",
                "[queues.x]\n[bus_topics.x]\n",
                "app/sluice.toml:1: queues.x: `x` is also declared in [bus_topics]",
            ),
        ];
        for (what, text, expected) in cases {
            let errors = match parse(text, Path::new("app/sluice.toml")) {
                Ok(_) => panic!("{what}: expected an error"),
                Err(errors) => errors,
            };
            let first = errors.0[0].to_string();
            assert!(
                first.starts_with(expected),
                "{what}:\n  expected a message starting with: {expected}\n  got: {errors}"
            );
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let errors = parse(
            "[queues.a]\nmax_delivery_count = 0\n[functions.f]\npath = \"f\"\n",
            Path::new("sluice.toml"),
        )
        .expect_err("two problems");
        assert_eq!(errors.0.len(), 2, "{errors}");
        let text = errors.to_string();
        assert!(text.starts_with("2 problems in the manifest:"), "{text}");
        assert!(
            text.contains("sluice.toml:1: queues.a.max_delivery_count"),
            "{text}"
        );
        assert!(
            text.contains("sluice.toml:3: functions.f: needs a trigger"),
            "{text}"
        );
    }

    #[test]
    fn load_checks_that_function_paths_are_crates() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join(MANIFEST_FILE);
        std::fs::write(&file, "[functions.f]\npath = \"missing\"\nqueue = \"q\"\n").expect("write");
        let errors = load(&file).expect_err("no crate there");
        let text = errors.to_string();
        assert!(text.contains(":1: functions.f.path: "), "{text}");
        assert!(text.contains("has no Cargo.toml"), "{text}");

        let missing = load(&dir.path().join("nope.toml")).expect_err("no file");
        assert!(
            missing.to_string().contains("cannot read the manifest"),
            "{missing}"
        );
    }
}
