//! A small HTTP client for the host's API, shared by the client verbs.

use anyhow::{Context, bail};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

use crate::auth::sas::{ConnectionString, parse_connection_string};
use crate::clock;

pub(crate) struct Client {
    base: String,
    http: reqwest::Client,
    credentials: Option<ConnectionString>,
}

/// How long the tokens the CLI mints stay valid.
const TOKEN_TTL_SECS: i64 = 3600;

/// The connection string `sluice serve` wrote into the data directory
/// (`$SLUICE_DATA_DIR`, default `sluice-data`), if any.
pub(crate) fn local_connection_string() -> Option<String> {
    let dir = std::env::var_os("SLUICE_DATA_DIR").unwrap_or_else(|| "sluice-data".into());
    std::fs::read_to_string(super::serve::connection_string_file(std::path::Path::new(
        &dir,
    )))
    .ok()
}

impl Client {
    /// A client of the host at `base`, signing requests with
    /// `connection_string`, else with [`local_connection_string`].
    pub(crate) fn new(base: &str, connection_string: Option<&str>) -> anyhow::Result<Client> {
        let text = connection_string
            .map(str::to_string)
            .or_else(local_connection_string);
        let credentials = text
            .map(|t| parse_connection_string(t.trim()).context("reading the connection string"))
            .transpose()?;
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .build()
                .context("creating the HTTP client")?,
            credentials,
        })
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request, signed when the client has credentials.
    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, self.url(path));
        match &self.credentials {
            // A namespace-wide token: the host authorises by path prefix.
            Some(credentials) => {
                let expiry = clock::now_ms() / 1000 + TOKEN_TTL_SECS;
                request.header(
                    "authorization",
                    credentials.sas_token(&format!("{}/", self.base), expiry),
                )
            }
            None => request,
        }
    }

    /// Sends, and turns a non-success answer into an error with the host's message.
    pub(crate) async fn send(&self, request: RequestBuilder) -> anyhow::Result<Response> {
        let response = request.send().await.with_context(|| {
            format!(
                "cannot reach the Sluice host at {} (is `sluice serve` running?)",
                self.base
            )
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or(text);
        bail!("the host answered {status}: {message}")
    }

    /// Sends and parses a JSON answer.
    pub(crate) async fn json(&self, request: RequestBuilder) -> anyhow::Result<Value> {
        let response = self.send(request).await?;
        response
            .json()
            .await
            .context("the host's answer is not JSON")
    }
}

/// Percent-encodes one path segment.
pub(crate) fn segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Percent-encodes an entity path, keeping its `/` separators.
pub(crate) fn entity_path(path: &str) -> String {
    path.split('/').map(segment).collect::<Vec<_>>().join("/")
}

/// Prints JSON for humans.
pub(crate) fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// Parses a `key=value` argument.
pub(crate) fn parse_key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{text}` is not key=value"))
}

/// A function's settings as the CLI takes them.
#[derive(Debug, Default, clap::Args)]
pub(crate) struct SettingsArgs {
    /// A config entry `key=value` (repeatable).
    #[arg(long = "config", value_parser = parse_key_value)]
    pub(crate) config: Vec<(String, String)>,
    /// A secret `key=value` (repeatable); never shown back or logged.
    #[arg(long = "secret", value_parser = parse_key_value)]
    pub(crate) secrets: Vec<(String, String)>,
    /// A host the handler may call over outbound HTTP: `api.example.com`,
    /// `127.0.0.1:8080` or `*.example.com` (repeatable; none by default).
    #[arg(long = "allow-host")]
    pub(crate) allowed_hosts: Vec<String>,
    /// An API key `name=key` of an HTTP trigger with `--auth api-key`
    /// (repeatable; at least 16 characters); never shown back or logged.
    #[arg(long = "api-key", value_parser = parse_key_value)]
    pub(crate) api_keys: Vec<(String, String)>,
}

impl SettingsArgs {
    /// Whether any setting was given.
    pub(crate) fn is_empty(&self) -> bool {
        self.config.is_empty()
            && self.secrets.is_empty()
            && self.allowed_hosts.is_empty()
            && self.api_keys.is_empty()
    }
}

/// Replaces a function's settings (`PUT /api/functions/{name}/settings`).
pub(crate) async fn put_settings(
    client: &Client,
    name: &str,
    settings: &SettingsArgs,
) -> anyhow::Result<serde_json::Value> {
    let (config, secrets) = (&settings.config, &settings.secrets);
    let to_map = |pairs: &[(String, String)]| -> serde_json::Map<String, serde_json::Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect()
    };
    let body = serde_json::json!({
        "config": to_map(config),
        "secrets": to_map(secrets),
        "allowedHosts": settings.allowed_hosts,
        "apiKeys": to_map(&settings.api_keys),
    });
    client
        .json(
            client
                .request(
                    reqwest::Method::PUT,
                    &format!("/api/functions/{}/settings", segment(name)),
                )
                .json(&body),
        )
        .await
}
