//! The services of one host, wired together, and the operations that span
//! more than one of them (deploying a function with a topic trigger creates
//! a subscription; every change re-plans the triggers).

use std::path::PathBuf;
use std::sync::Arc;

use crate::access::Access;
use crate::broker::{Broker, BrokerError};
use crate::capability::HostServices;
use crate::dispatch::{DispatchSettings, Dispatcher};
use crate::events::system::{self, PushSettings};
use crate::events::{Destination, Events, EventsError, Filter, Subscription, SubscriptionSpec};
use crate::functions::{FunctionError, FunctionLimits, FunctionRecord, Functions, Trigger};
use crate::gateway::Gateway;
use crate::keyvalue::{KeyValue, KeyValueError};
use crate::runtime::Runtime;
use crate::store::{Durability, Store};
use crate::trace::Traces;

/// How to open a host.
#[derive(Clone, Debug)]
pub struct SluiceConfig {
    /// Where the database lives.
    pub data_dir: PathBuf,
    /// When acknowledged writes are on disk.
    pub durability: Durability,
    /// Delivery knobs.
    pub dispatch: DispatchSettings,
    /// Successful trace steps recorded per second before sampling (0: all).
    pub max_trace_steps_per_second: u32,
}

/// Why a deploy (or delete) was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The trigger's queue does not exist.
    #[error("trigger queue `{0}` does not exist; create it first")]
    TriggerQueueNotFound(String),
    /// The trigger's topic does not exist.
    #[error("trigger topic `{0}` does not exist; create it first")]
    TriggerTopicNotFound(String),
    /// The function registry refused.
    #[error(transparent)]
    Function(#[from] FunctionError),
    /// The HTTP trigger is malformed.
    #[error("invalid HTTP trigger: {0}")]
    InvalidHttpTrigger(String),
    /// Another function serves the HTTP trigger's route.
    #[error("{0}")]
    RouteTaken(String),
    /// The topic subscription could not be made.
    #[error(transparent)]
    Events(#[from] EventsError),
    /// The function's state could not be cleared.
    #[error(transparent)]
    State(#[from] KeyValueError),
}

/// One host: store, broker, topics, functions and triggers.
pub struct Sluice {
    /// The database.
    pub store: Store,
    /// Queues.
    pub broker: Arc<Broker>,
    /// Topics and subscriptions.
    pub events: Arc<Events>,
    /// Deployed functions.
    pub functions: Arc<Functions>,
    /// Triggers.
    pub dispatcher: Arc<Dispatcher>,
    /// Shared access policies.
    pub access: Arc<Access>,
    /// Functions' key-value state.
    pub kv: Arc<KeyValue>,
    /// Recorded workflow steps.
    pub traces: Arc<Traces>,
    /// HTTP-triggered functions.
    pub gateway: Arc<Gateway>,
    /// Held by deploys and deletes, so that checks across functions (an
    /// HTTP route is free) still hold when the function is installed.
    deploying: tokio::sync::Mutex<()>,
}

impl Sluice {
    /// Opens the store, loads everything, and starts the triggers.
    pub async fn open(config: &SluiceConfig) -> anyhow::Result<Arc<Sluice>> {
        use anyhow::Context as _;
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
        let store = Store::open(&config.data_dir, config.durability)
            .with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
        let access = Arc::new(
            Access::open(store.clone())
                .await
                .context("loading access policies")?,
        );
        let broker = Arc::new(Broker::open(store.clone()).context("loading queues")?);
        let events =
            Arc::new(Events::open(store.clone(), broker.clone()).context("loading topics")?);
        let runtime = Arc::new(Runtime::new().context("starting the wasm runtime")?);
        let functions = Arc::new(
            Functions::open(store.clone(), runtime)
                .await
                .context("loading deployed functions")?,
        );
        tokio::spawn(broker.clone().run_maintenance());
        let kv = Arc::new(KeyValue::new(store.clone()));
        tokio::spawn(kv.clone().run_sweeper());
        let traces = Arc::new(Traces::new(
            store.clone(),
            config.max_trace_steps_per_second,
        ));
        tokio::spawn(traces.clone().run_sweeper());
        let services = HostServices {
            broker: broker.clone(),
            events: events.clone(),
            kv: kv.clone(),
            traces: traces.clone(),
        };
        let gateway = Arc::new(Gateway::new(
            functions.clone(),
            services.clone(),
            access.clone(),
        ));
        let dispatcher = Arc::new(Dispatcher::new(
            services,
            functions.clone(),
            config.dispatch,
        ));
        dispatcher.reconcile();
        Ok(Arc::new(Sluice {
            store,
            broker,
            events,
            functions,
            dispatcher,
            access,
            kv,
            traces,
            gateway,
            deploying: tokio::sync::Mutex::new(()),
        }))
    }

    /// Deploys (or redeploys) a function and wires its trigger.
    pub async fn deploy(
        &self,
        name: &str,
        component: Vec<u8>,
        trigger: Trigger,
        limits: FunctionLimits,
    ) -> Result<FunctionRecord, DeployError> {
        self.deploy_version(name, component, trigger, limits, None)
            .await
    }

    /// Deploys an earlier version again, as a new version with its
    /// component, trigger and limits; `None` means the one before the current.
    pub async fn rollback(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<FunctionRecord, DeployError> {
        let current = self
            .functions
            .get(name)
            .ok_or_else(|| FunctionError::NotFound(name.to_string()))?
            .record
            .version;
        let target = version.unwrap_or(current.saturating_sub(1));
        let (record, component) = self.functions.version_component(name, target)?;
        self.deploy_version(name, component, record.trigger, record.limits, Some(target))
            .await
    }

    async fn deploy_version(
        &self,
        name: &str,
        component: Vec<u8>,
        trigger: Trigger,
        limits: FunctionLimits,
        rolled_back_from: Option<u32>,
    ) -> Result<FunctionRecord, DeployError> {
        let _deploying = self.deploying.lock().await;
        match &trigger {
            Trigger::Queue(queue) if !self.broker.has_queue(queue) => {
                return Err(DeployError::TriggerQueueNotFound(queue.clone()));
            }
            Trigger::Topic { topic, .. } if !self.events.has_topic(topic) => {
                return Err(DeployError::TriggerTopicNotFound(topic.clone()));
            }
            Trigger::Http(http) => {
                crate::gateway::validate_trigger(http).map_err(DeployError::InvalidHttpTrigger)?;
                self.gateway
                    .check_route_free(name, http)
                    .map_err(DeployError::RouteTaken)?;
            }
            _ => {}
        }
        let previous = self.functions.get(name).map(|f| f.record.trigger.clone());
        let deployed = self
            .functions
            .deploy(name, component, trigger.clone(), limits, rolled_back_from)
            .await?;
        if let Some(Trigger::Topic { topic, .. }) = &previous {
            let moved = !matches!(&trigger, Trigger::Topic { topic: t, .. } if t == topic);
            if moved {
                self.remove_function_subscription(topic, name).await?;
            }
        }
        if let Trigger::Topic { topic, event_types } = &trigger {
            let spec = SubscriptionSpec {
                destination: Destination::Function(name.to_string()),
                filter: Filter {
                    included_event_types: (!event_types.is_empty()).then(|| event_types.clone()),
                    ..Filter::default()
                },
                retry_policy: Default::default(),
                event_delivery_schema: None,
            };
            // A function needs no validation handshake, hence no public URL.
            self.events.put_subscription(topic, name, spec, "").await?;
        }
        self.dispatcher.reconcile();
        tracing::info!(function = name, version = deployed.record.version, hash = %deployed.record.component_hash, "function deployed");
        Ok(deployed.record.clone())
    }

    /// Deletes a function, the subscription its topic trigger created and
    /// its key-value state.
    pub async fn delete_function(&self, name: &str) -> Result<FunctionRecord, DeployError> {
        let _deploying = self.deploying.lock().await;
        let record = self.functions.delete(name).await?;
        self.gateway.forget(name);
        self.kv.clear(name).await?;
        if let Trigger::Topic { topic, .. } = &record.trigger {
            self.remove_function_subscription(topic, name).await?;
        }
        self.dispatcher.reconcile();
        Ok(record)
    }

    async fn remove_function_subscription(
        &self,
        topic: &str,
        name: &str,
    ) -> Result<(), EventsError> {
        match self.events.subscription(topic, name) {
            Ok(sub) if sub.spec.destination == Destination::Function(name.to_string()) => {
                self.events.delete_subscription(topic, name).await?;
                Ok(())
            }
            Ok(_)
            | Err(EventsError::TopicNotFound(_) | EventsError::SubscriptionNotFound { .. }) => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Creates or replaces an event subscription and starts delivering to it
    /// (a webhook once validated). `public_url` is how clients reach this
    /// host, for the webhook's validation URL.
    pub async fn put_subscription(
        &self,
        topic: &str,
        name: &str,
        spec: SubscriptionSpec,
        public_url: &str,
    ) -> Result<(Subscription, bool), EventsError> {
        if let Destination::Queue(queue) = &spec.destination
            && !self.broker.has_queue(queue)
        {
            return Err(EventsError::Broker(BrokerError::QueueNotFound(
                queue.clone(),
            )));
        }
        let result = self
            .events
            .put_subscription(topic, name, spec, public_url)
            .await?;
        self.dispatcher.reconcile();
        Ok(result)
    }

    /// Completes a webhook's manual validation and starts delivering to it.
    pub async fn validate_subscription(
        &self,
        topic: &str,
        name: &str,
        code: &str,
    ) -> Result<Subscription, EventsError> {
        let validated = self.events.validate_manually(topic, name, code).await?;
        self.dispatcher.reconcile();
        Ok(validated)
    }

    /// Deletes an event subscription and its pending deliveries.
    pub async fn delete_subscription(
        &self,
        topic: &str,
        name: &str,
    ) -> Result<Subscription, EventsError> {
        let removed = self.events.delete_subscription(topic, name).await?;
        self.dispatcher.reconcile();
        Ok(removed)
    }

    /// Deletes a topic with its subscriptions.
    pub async fn delete_topic(&self, name: &str) -> Result<(), EventsError> {
        self.events.delete_topic(name).await?;
        self.dispatcher.reconcile();
        Ok(())
    }

    /// Starts raising the broker's system events (the push model).
    pub fn start_push_model(&self, settings: PushSettings) {
        tokio::spawn(system::run(
            self.events.clone(),
            self.broker.clone(),
            settings,
        ));
    }

    /// Stops the triggers and flushes the store.
    pub fn shutdown(&self) {
        self.dispatcher.shutdown();
        if let Err(e) = self.store.flush_blocking() {
            tracing::error!(error = %e, "final flush failed");
        }
    }
}
