//! `sluice serve`: run a host.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::dispatch::DispatchSettings;
use crate::events::system::PushSettings;
use crate::services::{Sluice, SluiceConfig};
use crate::store::Durability;
use crate::telemetry;

/// Run a host.
#[derive(Debug, Args)]
pub(crate) struct ServeCommand {
    /// Where the database lives.
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "sluice-data")]
    data_dir: PathBuf,
    /// Address of the HTTP API (port 0 picks a free port; the chosen one is printed).
    #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Acknowledge writes after an fsync (`fsync`, the default) or flush every N ms (`interval:N`, faster, may lose up to N ms of acknowledged writes on a crash).
    #[arg(long, env = "SLUICE_DURABILITY", default_value = "fsync", value_parser = parse_durability)]
    durability: Durability,
    /// Multiplies Event Grid's retry schedule (10 s, 30 s, 1 min, ...); tests use a small value.
    #[arg(long, env = "SLUICE_EVENT_RETRY_TIME_SCALE", default_value_t = 1.0)]
    event_retry_time_scale: f64,
    /// Push model: seconds an entity's messages wait unattended before a
    /// `...MessagesAvailableWithNoListeners` event, and the least time between two.
    #[arg(long, env = "SLUICE_PUSH_INTERVAL_SECS", default_value_t = 120.0)]
    push_interval_secs: f64,
    /// Serve https with this PEM certificate chain (needs --tls-key).
    #[arg(long, env = "SLUICE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "SLUICE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Successful trace steps recorded per second; past it whole flows are
    /// sampled by trace id (failures are always recorded). 0 records every step.
    #[arg(long, env = "SLUICE_MAX_TRACE_STEPS_PER_SECOND", default_value_t = crate::trace::DEFAULT_MAX_STEPS_PER_SECOND)]
    max_trace_steps_per_second: u32,
    /// The namespace name system events carry.
    #[arg(long, env = "SLUICE_NAMESPACE", default_value = "sluice")]
    namespace: String,
}

fn parse_durability(text: &str) -> Result<Durability, String> {
    match text {
        "fsync" => Ok(Durability::Fsync),
        _ => match text.strip_prefix("interval:").map(str::parse::<u64>) {
            Some(Ok(ms)) if ms > 0 => Ok(Durability::Interval(ms)),
            _ => Err(format!(
                "`{text}` is not `fsync` or `interval:<milliseconds>`"
            )),
        },
    }
}

impl ServeCommand {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        telemetry::init("info,sled=warn,cranelift=warn,wasmtime=warn");
        if !(self.event_retry_time_scale.is_finite() && self.event_retry_time_scale >= 0.0) {
            anyhow::bail!("--event-retry-time-scale must be a non-negative number");
        }
        let push_interval = std::time::Duration::try_from_secs_f64(self.push_interval_secs)
            .ok()
            .filter(|d| !d.is_zero())
            .context("--push-interval-secs must be a positive number")?;
        let config = SluiceConfig {
            data_dir: self.data_dir.clone(),
            durability: self.durability,
            dispatch: DispatchSettings {
                retry_time_scale: self.event_retry_time_scale,
            },
            max_trace_steps_per_second: self.max_trace_steps_per_second,
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(crate::api::tls::acceptor(cert, key)?),
            _ => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let sluice = Sluice::open(&config).await?;
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .with_context(|| format!("cannot listen on {}", self.listen))?;
        let addr = listener.local_addr()?;
        sluice.start_push_model(PushSettings {
            interval: push_interval,
            namespace: self.namespace.clone(),
            base_url: format!("{scheme}://{addr}"),
        });
        let connection = connection_string_file(&self.data_dir);
        if let Some(root) = sluice.access.root() {
            let text = crate::auth::sas::connection_string(&format!("sb://{addr}/"), &root);
            write_private(&connection, &text)
                .with_context(|| format!("writing {}", connection.display()))?;
            eprintln!("connection string ({}): {text}", root.name);
        }
        // Scripts and tests read this line to find the port.
        println!(
            "sluice listening on {scheme}://{addr} (data in {}; connection string in {})",
            self.data_dir.display(),
            connection.display()
        );
        tracing::info!(%addr, data_dir = %self.data_dir.display(), "host started");
        crate::api::serve(listener, sluice.clone(), tls, shutdown_signal()).await;
        tracing::info!("shutting down");
        sluice.shutdown();
        Ok(())
    }
}

/// Where `serve` writes the root connection string for local clients.
pub(crate) fn connection_string_file(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("connection-string")
}

/// Writes a secret readable by the owner only.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

/// Resolves on Ctrl-C or SIGTERM (also used by `sluice up`).
pub(super) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
