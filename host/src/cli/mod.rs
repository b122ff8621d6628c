//! The `sluice` command: one file per verb.
//!
//! `serve` runs a host; `build` compiles a handler (Rust, Python or
//! JavaScript) to a component; `new` scaffolds a handler crate with its
//! `sluice.toml`; `up` builds and applies a `sluice.toml` (starting a host
//! unless `--url` names one) and redeploys on change; every other verb is a
//! client of a running host's HTTP API (`--url`, or `SLUICE_URL`, default
//! `http://127.0.0.1:7070`).

mod build;
mod bus;
mod client;
mod deploy;
mod function;
mod new;
mod publish;
mod queue;
mod sas;
mod send;
mod serve;
mod topic;
mod trace;
mod up;

use clap::{Parser, Subcommand};

/// Where a running host is, unless `--url` says otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:7070";

/// Sluice: durable queues, event topics and WebAssembly handlers in one binary.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
pub struct Cli {
    /// The host to talk to (client commands; default http://127.0.0.1:7070).
    /// `sluice up` starts a host of its own unless this is given.
    #[arg(long, global = true, env = "SLUICE_URL")]
    url: Option<String>,
    /// Credentials for client commands (default: the one `sluice serve` wrote
    /// into `$SLUICE_DATA_DIR`, else `sluice-data`).
    #[arg(
        long,
        global = true,
        env = "SLUICE_CONNECTION_STRING",
        hide_env_values = true
    )]
    connection_string: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a host: store, queues, topics, runtime and HTTP API.
    Serve(serve::ServeCommand),
    /// Build a handler (Rust, Python or JavaScript) into a Wasm component.
    ///
    /// The language is told by a file in the directory, looked for in this order:
    /// `Cargo.toml` (a Rust cdylib crate, built with cargo for a wasm target),
    /// `package.json` (a JavaScript module: the package's `main`, default `index.js`,
    /// built with jco), `app.py` (the Python module `app`, built with
    /// componentize-py). What a language needs is installed once into the Sluice
    /// cache ($SLUICE_CACHE_DIR, else $XDG_CACHE_HOME/sluice, else ~/.cache/sluice):
    /// Python needs python3 with pip and venv, JavaScript node and npm. Progress
    /// goes to stderr, the component's path alone to stdout.
    Build(build::BuildCommand),
    /// Create a handler crate with its `sluice.toml`, ready for `sluice up`.
    New(new::NewCommand),
    /// Build and deploy the app a `sluice.toml` declares, and redeploy on change.
    Up(up::UpCommand),
    /// Upload a component as a function with its trigger.
    Deploy(deploy::DeployCommand),
    /// List or delete functions.
    #[command(subcommand, alias = "fn")]
    Function(function::FunctionCommand),
    /// Create, list and inspect queues and their dead letters.
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// Create and list Event Grid topics and subscribe to them.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Service Bus topics, subscriptions and filter rules.
    #[command(subcommand)]
    Bus(bus::BusCommand),
    /// Publish an event to a topic.
    Publish(publish::PublishCommand),
    /// Send a message to a queue.
    Send(send::SendCommand),
    /// Show the steps of one business transaction (by correlation id).
    Trace(trace::TraceCommand),
    /// Shared access signatures: tokens and policies.
    #[command(subcommand)]
    Sas(sas::SasCommand),
}

/// Parses the command line and runs it.
pub async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let url = cli.url.as_deref().unwrap_or(DEFAULT_URL);
    let client = client::Client::new(url, cli.connection_string.as_deref());
    match cli.command {
        Command::Serve(cmd) => cmd.run().await,
        Command::Build(cmd) => cmd.run().await,
        Command::New(cmd) => cmd.run(),
        Command::Up(cmd) => {
            cmd.run(cli.url.as_deref(), cli.connection_string.as_deref())
                .await
        }
        Command::Deploy(cmd) => cmd.run(&client?).await,
        Command::Function(cmd) => cmd.run(&client?).await,
        Command::Queue(cmd) => cmd.run(&client?).await,
        Command::Topic(cmd) => cmd.run(&client?).await,
        Command::Bus(cmd) => cmd.run(&client?).await,
        Command::Publish(cmd) => cmd.run(&client?).await,
        Command::Send(cmd) => cmd.run(&client?).await,
        Command::Trace(cmd) => cmd.run(&client?).await,
        Command::Sas(cmd) => {
            cmd.run(url, cli.connection_string.as_deref(), &client?)
                .await
        }
    }
}
