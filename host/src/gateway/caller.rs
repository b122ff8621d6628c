//! Who is calling an HTTP-triggered function, by the trigger's `auth`.
//!
//! | auth        | credentials                                         | caller (rate-limit key) |
//! |-------------|-----------------------------------------------------|-------------------------|
//! | `sas`       | `Authorization: SharedAccessSignature ...`, Send on the route's path | the policy (`skn`) |
//! | `apiKey`    | `x-functions-key: <key>` or `?code=<key>`           | the key's name          |
//! | `jwt`       | `Authorization: Bearer <JWT>` from the issuer       | the token's `sub`       |
//! | `anonymous` | none                                                | the client's address    |
//!
//! No credentials or wrong ones: 401 (with `WWW-Authenticate` for bearer
//! tokens); credentials that prove who the caller is but do not grant the
//! call: 403. Keys are compared in constant time.

use std::net::IpAddr;

use hyper::HeaderMap;
use subtle::ConstantTimeEq;

use super::jwt::KeySets;
use crate::auth::{Policy, Right, sas};
use crate::functions::{FunctionSettings, HttpAuth};

/// Why a caller was refused.
#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    /// No credentials of the kind the function takes.
    #[error("no credentials: {0}")]
    Missing(&'static str),
    /// Credentials that do not verify.
    #[error("{0}")]
    Invalid(String),
    /// Valid credentials that do not grant this call.
    #[error("{0}")]
    Forbidden(String),
    /// The issuer's keys could not be fetched, so no token can be checked.
    #[error("{0}")]
    KeysUnavailable(String),
}

/// A caller that passed the function's auth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Who, as the handler sees it (`x-sluice-principal`).
    pub principal: String,
    /// The key its rate limit is counted under.
    pub rate_key: String,
}

/// What authentication looks at in a request.
pub(super) struct Credentials<'a> {
    pub(super) headers: &'a HeaderMap,
    /// The `code` query parameter.
    pub(super) code: Option<&'a str>,
    /// The request path, for SAS scope checks.
    pub(super) path: &'a str,
    pub(super) peer: Option<IpAddr>,
}

impl Credentials<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Checks the caller against the function's auth.
pub(super) async fn authenticate(
    auth: &HttpAuth,
    credentials: &Credentials<'_>,
    settings: &FunctionSettings,
    policies: &[Policy],
    keys: &KeySets,
    now_unix: i64,
) -> Result<Caller, CallerError> {
    let named = |name: &str, kind: &str| Caller {
        principal: name.to_string(),
        rate_key: format!("{kind}:{name}"),
    };
    match auth {
        HttpAuth::Anonymous => {
            let address = credentials
                .peer
                .map_or_else(|| "unknown".to_string(), rate_key_of_address);
            Ok(Caller {
                principal: "anonymous".into(),
                rate_key: format!("address:{address}"),
            })
        }
        HttpAuth::ApiKey => {
            let presented = credentials
                .header("x-functions-key")
                .or(credentials.code)
                .ok_or(CallerError::Missing(
                    "send the function's API key in the x-functions-key header or the `code` query parameter",
                ))?;
            settings
                .api_keys
                .iter()
                .find(|(_, key)| bool::from(key.as_bytes().ct_eq(presented.as_bytes())))
                .map(|(name, _)| named(name, "key"))
                .ok_or_else(|| CallerError::Invalid("the API key does not match".into()))
        }
        HttpAuth::Sas => {
            let header = credentials
                .header("authorization")
                .ok_or(CallerError::Missing(
                    "send Authorization: SharedAccessSignature sr=..&sig=..&se=..&skn=..",
                ))?;
            let token =
                sas::parse_sas_token(header).map_err(|e| CallerError::Invalid(e.to_string()))?;
            match sas::verify_service_bus(&token, policies, credentials.path, Right::Send, now_unix)
            {
                Ok(claims) => Ok(named(&claims.policy, "sas")),
                Err(e) if e.status() == 403 => Err(CallerError::Forbidden(e.to_string())),
                Err(e) => Err(CallerError::Invalid(e.to_string())),
            }
        }
        HttpAuth::Jwt(jwt) => {
            let header = credentials
                .header("authorization")
                .ok_or(CallerError::Missing("send Authorization: Bearer <token>"))?;
            // The scheme name is case-insensitive (RFC 7235).
            let token = header
                .split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim())
                .filter(|t| !t.is_empty())
                .ok_or(CallerError::Missing("send Authorization: Bearer <token>"))?;
            let subject = keys.verify(jwt, token).await?;
            Ok(named(&subject, "sub"))
        }
    }
}

/// The rate-limit key of a client address: an IPv4 address, or an IPv6
/// /64 (one subscriber's usual allocation, so rotating addresses within it
/// shares one budget).
fn rate_key_of_address(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_callers_share_a_budget_per_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(rate_key_of_address(a), rate_key_of_address(b));
        assert_eq!(rate_key_of_address("10.0.0.1".parse().unwrap()), "10.0.0.1");
        assert_eq!(
            rate_key_of_address("::ffff:10.0.0.1".parse().unwrap()),
            "10.0.0.1"
        );
    }
}
