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
/// After a failed fetch, how long requests are refused without trying again
/// (when no earlier key set can serve meanwhile).
const FAILURE_BACKOFF: Duration = Duration::from_secs(30);
/// The largest discovery document or key set taken from an issuer.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

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

#[derive(Default)]
struct Cached {
    /// The last key set fetched, if any, and when.
    keys: Option<(Arc<JwkSet>, Instant)>,
    /// When the last fetch failed, if it did after the last success.
    failed: Option<Instant>,
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
            // Redirects are not followed: the configured URLs are the trust anchor.
            http: reqwest::Client::builder()
                .timeout(FETCH_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
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
        if auth.audiences.iter().any(|a| a == "*") {
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
    /// unless it was fetched moments ago. When a fetch fails, the last key
    /// set keeps serving (issuers rotate keys with overlap), and without
    /// one, requests are refused for [`FAILURE_BACKOFF`] without new fetches.
    async fn keys(
        &self,
        auth: &JwtAuth,
        source: &str,
        refresh: bool,
    ) -> Result<Arc<JwkSet>, CallerError> {
        let stale = {
            let cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
            let entry = cached.get(source);
            if let Some((keys, fetched)) = entry.and_then(|e| e.keys.as_ref()) {
                let fresh_for = if refresh {
                    REFETCH_AT_MOST_EVERY
                } else {
                    KEYS_FRESH_FOR
                };
                if fetched.elapsed() < fresh_for {
                    return Ok(keys.clone());
                }
            }
            let recently_failed = entry
                .and_then(|e| e.failed)
                .is_some_and(|at| at.elapsed() < FAILURE_BACKOFF);
            let stale = entry.and_then(|e| e.keys.as_ref()).map(|(k, _)| k.clone());
            match (recently_failed, stale) {
                (true, Some(keys)) => return Ok(keys),
                (true, None) => return Err(unavailable()),
                (false, stale) => stale,
            }
        };
        let fetched = self.fetch_keys(auth).await;
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        let entry = cached.entry(source.to_string()).or_default();
        match fetched {
            Ok(keys) => {
                let keys = Arc::new(keys);
                entry.keys = Some((keys.clone(), Instant::now()));
                entry.failed = None;
                Ok(keys)
            }
            Err(FetchFailed) => {
                entry.failed = Some(Instant::now());
                stale.ok_or_else(unavailable)
            }
        }
    }

    /// Fetches the key set (through discovery when no `jwksUri` is given);
    /// failures are logged with their detail, which callers never see.
    async fn fetch_keys(&self, auth: &JwtAuth) -> Result<JwkSet, FetchFailed> {
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
        self.fetch::<JwkSet>(&uri).await
    }

    async fn fetch<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, FetchFailed> {
        let failed = |why: String| {
            tracing::warn!(url, reason = %why, "cannot fetch the issuer's keys");
            FetchFailed
        };
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("it answered {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(e.to_string()))? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(failed(format!(
                    "the answer exceeds {MAX_DOCUMENT_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body)
            .map_err(|e| failed(format!("the answer is not the expected JSON: {e}")))
    }
}

/// A fetch of an issuer's document failed (the reason is logged).
struct FetchFailed;

fn unavailable() -> CallerError {
    CallerError::KeysUnavailable(
        "the token issuer's keys cannot be fetched right now; retry later".into(),
    )
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
