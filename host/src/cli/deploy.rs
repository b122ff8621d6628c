//! `sluice deploy`: upload a component as a function.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use reqwest::Method;

use super::client::{Client, SettingsArgs, print_json, put_settings, segment};
use crate::functions::{HttpAuth, HttpTrigger, JwtAuth, RateLimit, Trigger};

/// Upload a component as a function with its trigger.
#[derive(Debug, Args)]
pub(crate) struct DeployCommand {
    /// The function's name.
    name: String,
    /// The component (.wasm) to upload.
    component: PathBuf,
    /// Run on every message of this queue.
    #[arg(long, conflicts_with_all = ["topic", "route"], required_unless_present_any = ["topic", "route"])]
    queue: Option<String>,
    /// Run on events published to this topic.
    #[arg(long, conflicts_with = "route")]
    topic: Option<String>,
    /// Only these event types (repeatable; topic trigger only).
    #[arg(long = "event-type", requires = "topic")]
    event_types: Vec<String>,
    /// Answer HTTP requests to `/api/<ROUTE>` (`orders`, `orders/{id}`,
    /// `files/{*path}`); the component must be an HTTP handler.
    #[arg(long)]
    route: Option<String>,
    /// The HTTP methods served (repeatable; every method when absent).
    #[arg(long = "method", requires = "route")]
    methods: Vec<String>,
    /// Who may call the route.
    #[arg(long, value_enum, default_value = "sas", requires = "route")]
    auth: AuthKind,
    /// `--auth jwt`: the tokens' issuer (`iss`), e.g. https://login.example.com/.
    #[arg(long, required_if_eq("auth", "jwt"))]
    jwt_issuer: Option<String>,
    /// `--auth jwt`: an accepted audience (`aud`; repeatable; at least one;
    /// `*` accepts any audience of the issuer).
    #[arg(long = "jwt-audience")]
    jwt_audiences: Vec<String>,
    /// `--auth jwt`: where the issuer's JWK set is; by default its OpenID
    /// discovery document says.
    #[arg(long)]
    jwks_uri: Option<String>,
    /// Requests one caller may make: `<requests>/<seconds>`, e.g. `100/60`.
    #[arg(long, value_parser = str::parse::<RateLimit>, requires = "route")]
    rate_limit: Option<RateLimit>,
    /// Invocations that may run at once.
    #[arg(long)]
    max_concurrency: Option<u32>,
    /// Deadline of one invocation, in seconds.
    #[arg(long)]
    timeout_secs: Option<u64>,
    /// Memory cap of one instance, in MiB.
    #[arg(long)]
    memory_mib: Option<u32>,
    /// Log volume one invocation may write, in KiB (more is dropped).
    #[arg(long)]
    max_log_kib: Option<u32>,
    /// Most messages one invocation of a batch handler gets (1-256).
    #[arg(long)]
    max_message_batch_size: Option<u32>,
    /// Settings; when any is given, they replace the function's settings
    /// before the deploy.
    #[command(flatten)]
    settings: SettingsArgs,
}

impl DeployCommand {
    pub(crate) async fn run(self, client: &Client) -> anyhow::Result<()> {
        let bytes = std::fs::read(&self.component)
            .with_context(|| format!("reading component {}", self.component.display()))?;
        // Settings first, so the first invocation already sees them.
        if !self.settings.is_empty() {
            put_settings(client, &self.name, &self.settings).await?;
        }
        let mut query = self.trigger().to_query();
        if let Some(n) = self.max_concurrency {
            query.push(("maxConcurrency", n.to_string()));
        }
        if let Some(n) = self.timeout_secs {
            query.push(("timeoutSecs", n.to_string()));
        }
        if let Some(n) = self.memory_mib {
            query.push(("memoryMib", n.to_string()));
        }
        if let Some(n) = self.max_log_kib {
            query.push(("maxLogKib", n.to_string()));
        }
        if let Some(n) = self.max_message_batch_size {
            query.push(("maxMessageBatchSize", n.to_string()));
        }
        let request = client
            .request(
                Method::PUT,
                &format!("/api/functions/{}", segment(&self.name)),
            )
            .query(&query)
            .header("content-type", "application/wasm")
            .body(bytes);
        let record = client.json(request).await?;
        print_json(&record);
        Ok(())
    }
}

/// `--auth`: how an HTTP trigger checks its callers.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum AuthKind {
    /// A shared access signature with the Send right on the route.
    Sas,
    /// One of the function's API keys (`--api-key`), in `x-functions-key` or `?code=`.
    ApiKey,
    /// A bearer JWT from `--jwt-issuer`.
    Jwt,
    /// Anyone (rate-limited per client address).
    Anonymous,
}

impl DeployCommand {
    fn trigger(&self) -> Trigger {
        if let Some(route) = &self.route {
            let auth = match self.auth {
                AuthKind::Sas => HttpAuth::Sas,
                AuthKind::ApiKey => HttpAuth::ApiKey,
                AuthKind::Anonymous => HttpAuth::Anonymous,
                AuthKind::Jwt => HttpAuth::Jwt(JwtAuth {
                    issuer: self.jwt_issuer.clone().unwrap_or_default(),
                    audiences: self.jwt_audiences.clone(),
                    jwks_uri: self.jwks_uri.clone(),
                }),
            };
            return Trigger::Http(HttpTrigger {
                route: route.clone(),
                methods: self
                    .methods
                    .iter()
                    .map(|m| m.to_ascii_uppercase())
                    .collect(),
                auth,
                rate_limit: self.rate_limit,
            });
        }
        match (&self.queue, &self.topic) {
            (_, Some(topic)) => Trigger::Topic {
                topic: topic.clone(),
                event_types: self.event_types.clone(),
            },
            (queue, None) => Trigger::Queue(queue.clone().unwrap_or_default()),
        }
    }
}
