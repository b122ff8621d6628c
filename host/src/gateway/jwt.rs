//! OAuth 2.0 / OpenID Connect bearer tokens: verified against the
//! issuer's public keys (a JWK set), fetched and cached.
//!
//! The key set comes from the trigger's `jwksUri`, else from the issuer's
//! discovery document (`{issuer}/.well-known/openid-configuration`, its
//! `jwks_uri`). It is cached for [`KEYS_FRESH_FOR`]; a token signed with a
//! key id the cache does not know makes one early refetch (issuers rotate
//! keys), at most every [`REFETCH_AT_MOST_EVERY`], so forged key ids cannot
//! make the host hammer the issuer. Only asymmetric algorithms are
//! accepted: a JWK set is public, so an HMAC "key" from it proves nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::caller::CallerError;
use crate::functions::JwtAuth;

/// How long a fetched key set is used before it is fetched again.
pub(super) const KEYS_FRESH_FOR: Duration = Duration::from_secs(600);
/// The least time between two fetches of one key set.
pub(super) const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(30);
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 60;
/// How long fetching keys may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

const ACCEPTED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

struct Cached {
    keys: Arc<JwkSet>,
    fetched: Instant,
}

/// The key sets of every issuer in use, by where they come from.
pub(super) struct KeySets {
    http: reqwest::Client,
    cached: Mutex<HashMap<String, Cached>>,
}

/// The claims Sluice reads; the token is checked for `exp`, `nbf`, `iss`
/// and `aud` by jsonwebtoken.
#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
}

#[derive(Deserialize)]
struct Discovery {
    jwks_uri: String,
}

impl KeySets {
    pub(super) fn new() -> KeySets {
        KeySets {
            http: reqwest::Client::builder()
                .timeout(FETCH_TIMEOUT)
                .build()
                .unwrap_or_default(),
            cached: Mutex::new(HashMap::new()),
        }
    }

    /// Verifies a bearer token; the caller's subject (`sub`) when valid.
    pub(super) async fn verify(&self, auth: &JwtAuth, token: &str) -> Result<String, CallerError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| CallerError::Invalid(format!("the bearer token is not a JWT: {e}")))?;
        if !ACCEPTED.contains(&header.alg) {
            return Err(CallerError::Invalid(format!(
                "the token is signed with {:?}; accepted are the asymmetric algorithms RS*, PS*, ES256, ES384 and EdDSA",
                header.alg
            )));
        }
        let source = auth
            .jwks_uri
            .clone()
            .unwrap_or_else(|| format!("discover:{}", auth.issuer));
        let mut keys = self.keys(auth, &source, false).await?;
        let mut key = find_key(&keys, header.kid.as_deref());
        if key.is_none() && header.kid.is_some() {
            keys = self.keys(auth, &source, true).await?;
            key = find_key(&keys, header.kid.as_deref());
        }
        let jwk = key.ok_or_else(|| {
            CallerError::Invalid(match &header.kid {
                Some(kid) => format!("no key `{kid}` in the issuer's key set"),
                None => "the token names no key (`kid`) and the issuer has several".into(),
            })
        })?;
        let decoding = DecodingKey::from_jwk(jwk)
            .map_err(|e| CallerError::Invalid(format!("the issuer's key is unusable: {e}")))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[auth.issuer.as_str()]);
        if auth.audiences.is_empty() {
            validation.validate_aud = false;
            validation.set_required_spec_claims(&["exp", "iss"]);
        } else {
            validation.set_audience(&auth.audiences);
            validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &decoding, &validation)
            .map_err(|e| CallerError::Invalid(describe(&e, auth)))?;
        Ok(data.claims.sub.unwrap_or_else(|| "unknown".into()))
    }

    /// The key set from `source`: cached while fresh; `refresh` refetches
    /// unless it was fetched moments ago.
    async fn keys(
        &self,
        auth: &JwtAuth,
        source: &str,
        refresh: bool,
    ) -> Result<Arc<JwkSet>, CallerError> {
        {
            let cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(entry) = cached.get(source) {
                let age = entry.fetched.elapsed();
                let fresh = if refresh {
                    age < REFETCH_AT_MOST_EVERY
                } else {
                    age < KEYS_FRESH_FOR
                };
                if fresh {
                    return Ok(entry.keys.clone());
                }
            }
        }
        let uri = match &auth.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let discovery = format!(
                    "{}/.well-known/openid-configuration",
                    auth.issuer.trim_end_matches('/')
                );
                self.fetch::<Discovery>(&discovery).await?.jwks_uri
            }
        };
        let keys = Arc::new(self.fetch::<JwkSet>(&uri).await?);
        self.cached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                source.to_string(),
                Cached {
                    keys: keys.clone(),
                    fetched: Instant::now(),
                },
            );
        Ok(keys)
    }

    async fn fetch<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, CallerError> {
        let unavailable = |why: String| {
            tracing::warn!(url, reason = %why, "cannot fetch the issuer's keys");
            CallerError::KeysUnavailable(format!(
                "cannot fetch the issuer's keys from {url}: {why}"
            ))
        };
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(unavailable(format!("it answered {}", response.status())));
        }
        response
            .json::<T>()
            .await
            .map_err(|e| unavailable(format!("the answer is not the expected JSON: {e}")))
    }
}

fn find_key<'a>(keys: &'a JwkSet, kid: Option<&str>) -> Option<&'a jsonwebtoken::jwk::Jwk> {
    match kid {
        Some(kid) => keys.find(kid),
        // Without a key id, only an unambiguous set will do.
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    }
}

fn describe(error: &jsonwebtoken::errors::Error, auth: &JwtAuth) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        ErrorKind::InvalidIssuer => format!("the token's issuer is not `{}`", auth.issuer),
        ErrorKind::InvalidAudience => format!(
            "the token's audience is not one of {}",
            auth.audiences.join(", ")
        ),
        ErrorKind::InvalidSignature => "the token's signature does not verify".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no `{claim}` claim"),
        other => format!("the token is invalid: {other:?}"),
    }
}
