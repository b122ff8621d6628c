//! `sluice function`: list and delete functions.

use clap::Subcommand;
use reqwest::Method;

use super::client::{Client, print_json, segment};

#[derive(Debug, Subcommand)]
pub(crate) enum FunctionCommand {
    /// List deployed functions.
    List,
    /// Delete a function (and the subscription its topic trigger made).
    Delete {
        /// The function's name.
        name: String,
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
