//! `sluice sas`: make tokens, manage shared access policies.

use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;

use super::client::{Client, local_connection_string, print_json, segment};
use crate::auth::sas::{generate_sas_token, parse_connection_string};
use crate::clock;

#[derive(Debug, Subcommand)]
pub(crate) enum SasCommand {
    /// Print a `SharedAccessSignature ...` token for a resource.
    Token {
        /// The resource the token is for (default: the host's URL, i.e. everything).
        #[arg(long)]
        resource: Option<String>,
        /// How long the token is valid, in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl_secs: i64,
        /// Sign with this connection string's key instead of the default credentials.
        #[arg(long = "with")]
        with: Option<String>,
    },
    /// List policies (names, rights and scopes; no keys).
    Policies,
    /// Create a policy and print its keys and connection string.
    CreatePolicy {
        /// The policy's name.
        name: String,
        /// Rights, comma-separated: Send, Listen, Manage.
        #[arg(long, value_delimiter = ',', required = true)]
        rights: Vec<String>,
        /// Limit it to one entity (queue, topic or subscription path).
        #[arg(long)]
        entity: Option<String>,
    },
    /// Delete a policy: its tokens stop working at once.
    DeletePolicy {
        /// The policy's name.
        name: String,
        /// The entity it is scoped to, if any.
        #[arg(long)]
        entity: Option<String>,
    },
}

impl SasCommand {
    pub(crate) async fn run(
        self,
        url: &str,
        connection_string: Option<&str>,
        client: &Client,
    ) -> anyhow::Result<()> {
        match self {
            SasCommand::Token {
                resource,
                ttl_secs,
                with,
            } => {
                let text = with
                    .or(connection_string.map(str::to_string))
                    .or_else(local_connection_string)
                    .context("no connection string: give --connection-string, or run next to `sluice serve`'s data directory")?;
                let credentials = parse_connection_string(text.trim())?;
                let resource =
                    resource.unwrap_or_else(|| format!("{}/", url.trim_end_matches('/')));
                let expiry = clock::now_ms() / 1000 + ttl_secs;
                println!(
                    "{}",
                    generate_sas_token(&resource, &credentials.key_name, &credentials.key, expiry)
                );
            }
            SasCommand::Policies => print_json(
                &client
                    .json(client.request(Method::GET, "/api/policies"))
                    .await?,
            ),
            SasCommand::CreatePolicy {
                name,
                rights,
                entity,
            } => {
                let mut query = vec![("rights", rights.join(","))];
                if let Some(entity) = entity {
                    query.push(("entity", entity));
                }
                let request = client
                    .request(Method::PUT, &format!("/api/policies/{}", segment(&name)))
                    .query(&query);
                print_json(&client.json(request).await?);
            }
            SasCommand::DeletePolicy { name, entity } => {
                let mut request =
                    client.request(Method::DELETE, &format!("/api/policies/{}", segment(&name)));
                if let Some(entity) = entity {
                    request = request.query(&[("entity", entity)]);
                }
                client.send(request).await?;
                println!("deleted policy {name}");
            }
        }
        Ok(())
    }
}
