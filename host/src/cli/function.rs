//! `sluice function`: list, delete and roll back functions, and set their config and secrets.

use clap::Subcommand;
use reqwest::Method;

use super::client::{Client, SettingsArgs, print_json, put_settings, segment};

#[derive(Debug, Subcommand)]
pub(crate) enum FunctionCommand {
    /// List deployed functions.
    List,
    /// Delete a function (and the subscription its topic trigger made, and its key-value state).
    Delete {
        /// The function's name.
        name: String,
    },
    /// Every version of a function: hash, size, deploy time, trigger, limits.
    Versions {
        /// The function's name.
        name: String,
    },
    /// Deploy an earlier version again (as a new version).
    Rollback {
        /// The function's name.
        name: String,
        /// The version to go back to (default: the one before the current).
        #[arg(long)]
        version: Option<u32>,
    },
    /// Show a function's config, secret names and allowed hosts, or replace
    /// them: the given `--config`, `--secret` and `--allow-host` entries
    /// become the whole settings.
    Settings {
        /// The function's name (it need not be deployed yet).
        name: String,
        #[command(flatten)]
        settings: SettingsArgs,
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
            FunctionCommand::Settings { name, settings } if settings.is_empty() => {
                client
                    .json(client.request(
                        Method::GET,
                        &format!("/api/functions/{}/settings", segment(&name)),
                    ))
                    .await?
            }
            FunctionCommand::Settings { name, settings } => {
                put_settings(client, &name, &settings).await?
            }
            FunctionCommand::Versions { name } => {
                client
                    .json(client.request(
                        Method::GET,
                        &format!("/api/functions/{}/versions", segment(&name)),
                    ))
                    .await?
            }
            FunctionCommand::Rollback { name, version } => {
                let mut request = client.request(
                    Method::POST,
                    &format!("/api/functions/{}/rollback", segment(&name)),
                );
                if let Some(version) = version {
                    request = request.query(&[("version", version.to_string())]);
                }
                client.json(request).await?
            }
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
