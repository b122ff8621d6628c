//! `sluice function`: list and delete functions, and set their config and secrets.

use clap::Subcommand;
use reqwest::Method;

use super::client::{Client, parse_key_value, print_json, put_settings, segment};

#[derive(Debug, Subcommand)]
pub(crate) enum FunctionCommand {
    /// List deployed functions.
    List,
    /// Delete a function (and the subscription its topic trigger made, and its key-value state).
    Delete {
        /// The function's name.
        name: String,
    },
    /// Show a function's config and secret names, or replace them: the given
    /// `--config` and `--secret` entries become the whole settings.
    Settings {
        /// The function's name (it need not be deployed yet).
        name: String,
        /// A config entry `key=value` (repeatable).
        #[arg(long = "config", value_parser = parse_key_value)]
        config: Vec<(String, String)>,
        /// A secret `key=value` (repeatable); never shown back or logged.
        #[arg(long = "secret", value_parser = parse_key_value)]
        secrets: Vec<(String, String)>,
    },
}

impl FunctionCommand {
    pub(crate) async fn run(self, client: &Client) -> anyhow::Result<()> {
        let value = match self {
            FunctionCommand::List => {
                client
                    .json(client.request(Method::GET, "/api/functions"))
                    .await?
            }
            FunctionCommand::Settings {
                name,
                config,
                secrets,
            } if config.is_empty() && secrets.is_empty() => {
                client
                    .json(client.request(
                        Method::GET,
                        &format!("/api/functions/{}/settings", segment(&name)),
                    ))
                    .await?
            }
            FunctionCommand::Settings {
                name,
                config,
                secrets,
            } => put_settings(client, &name, &config, &secrets).await?,
            FunctionCommand::Delete { name } => {
                client
                    .json(client.request(
                        Method::DELETE,
                        &format!("/api/functions/{}", segment(&name)),
                    ))
                    .await?
            }
        };
        print_json(&value);
        Ok(())
    }
}
