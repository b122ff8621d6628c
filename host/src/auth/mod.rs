//! Authentication for the HTTP front door: Service Bus shared access
//! signatures and Event Grid topic keys and tokens.
//!
//! This module is pure logic: it takes header values as `&str`, the request
//! path and the current time, and answers with [`Claims`] or an [`AuthError`]
//! that knows its HTTP status. It owns no HTTP types, so the API layer decides
//! how to read headers and how to render errors (XML for Service Bus, JSON for
//! Event Grid).
//!
//! - [`Policy`], [`Right`], [`PolicyScope`] (in `policy.rs`): what a key grants
//!   and where.
//! - [`sas`]: `Authorization: SharedAccessSignature ...` tokens, token
//!   generation as the Azure SDKs do it, connection strings.
//! - [`event_grid`]: `aeg-sas-key` and `aeg-sas-token`.
//!
//! Both token kinds name the resource they were minted for as a URL. Scheme,
//! host and port legitimately differ behind a proxy or port mapping, so a
//! token's resource authorises by **path prefix on whole segments**,
//! case-insensitively; query strings are ignored.

pub mod event_grid;
mod policy;
pub mod sas;

pub use policy::{Policy, PolicyScope, Right};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use percent_encoding::percent_decode_str;
use sha2::Sha256;

/// What a verified Service Bus token proves: who signed it, for what, until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// Name of the policy whose key signed the token (`skn`).
    pub policy: String,
    /// The resource the token was minted for (`sr`, URL-decoded).
    pub resource: String,
    /// When the token stops being valid, in Unix seconds (`se`).
    pub expires_at: i64,
}

/// Why a request was not authenticated or not authorised.
///
/// Messages say what is wrong for the client's benefit and never contain a
/// key or a signature.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credentials were presented at all.
    #[error(
        "no credentials: send an Authorization (SharedAccessSignature), aeg-sas-key or aeg-sas-token header"
    )]
    Missing,
    /// Credentials were presented but could not be parsed.
    #[error("malformed credentials: {0}")]
    Malformed(String),
    /// The token names a policy this host does not have.
    #[error("unknown shared access policy '{0}'")]
    UnknownPolicy(String),
    /// The signature or key does not match any key that could apply.
    #[error("the signature or key does not match")]
    BadSignature,
    /// The token was valid once but its expiry has passed.
    #[error("the token expired at {} (unix {expired_at}); it is now {}", unix_to_text(*expired_at), unix_to_text(*now))]
    Expired {
        /// The token's expiry, Unix seconds.
        expired_at: i64,
        /// The time of the check, Unix seconds.
        now: i64,
    },
    /// The token (or its policy) is for another part of the namespace.
    #[error("the credentials grant access to '{granted}', which does not include '{requested}'")]
    WrongScope {
        /// The path the token or policy is limited to.
        granted: String,
        /// The path of the request.
        requested: String,
    },
    /// Authenticated, but the policy lacks the right the operation needs.
    #[error("policy '{policy}' does not grant the {needed} right")]
    InsufficientRights {
        /// The right the operation needs.
        needed: Right,
        /// The policy that signed the token.
        policy: String,
    },
}

impl AuthError {
    /// The HTTP status to answer with: 403 when the caller proved who they are
    /// but may not do this, 401 for everything else.
    pub fn status(&self) -> u16 {
        match self {
            Self::InsufficientRights { .. } => 403,
            Self::Missing
            | Self::Malformed(_)
            | Self::UnknownPolicy(_)
            | Self::BadSignature
            | Self::Expired { .. }
            | Self::WrongScope { .. } => 401,
        }
    }
}

/// Formats Unix seconds for error messages (RFC 3339, UTC).
fn unix_to_text(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "an out-of-range time".to_owned())
}

type HmacSha256 = Hmac<Sha256>;

/// base64(HMAC-SHA256(key, message)), the signature both token kinds use.
fn sign(key: &[u8], message: &[u8]) -> String {
    // HMAC is defined for keys of any length (long keys are hashed), so
    // `new_from_slice` cannot fail for it; the error type exists for MACs
    // with fixed key sizes.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message);
    BASE64.encode(mac.finalize().into_bytes())
}

/// Whether `signature` (raw bytes, base64 already decoded) is the
/// HMAC-SHA256 of `message` under `key`. `verify_slice` compares in constant
/// time, so response timing does not reveal how much of a forged signature
/// was right.
fn signature_matches(key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return false;
    };
    mac.update(message);
    mac.verify_slice(signature).is_ok()
}

/// 32 bytes from the operating system's random source, in standard base64:
/// the shape of Azure's SAS and topic keys.
fn random_key() -> String {
    let mut bytes = [0u8; 32];
    // The OS source does not fail on supported platforms; if it ever did,
    // carrying on with a predictable key would be far worse than stopping.
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    BASE64.encode(bytes)
}

/// Decodes a value of a form-encoded (`a=b&c=d`) token: `%XX` escapes and
/// `+` as space (Python's `quote_plus` writes spaces that way).
fn form_decode(value: &str, field: &str) -> Result<String, AuthError> {
    let spaced = value.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| AuthError::Malformed(format!("'{field}' is not valid URL-encoded UTF-8")))
}

/// Decodes a `%XX`-escaped value whose encoder never writes `+` for a space
/// (JavaScript's `encodeURIComponent`, Python's `quote`): a `+` stays a `+`.
fn url_decode(value: &str, field: &str) -> Result<String, AuthError> {
    percent_decode_str(value)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| AuthError::Malformed(format!("'{field}' is not valid URL-encoded UTF-8")))
}

/// Decodes a URL-encoded base64 signature. `+` is kept as `+`, not read as a
/// space: base64 never contains spaces, and hand-written clients sometimes
/// forget to encode the signature.
fn decode_signature(value: &str, field: &str) -> Result<Vec<u8>, AuthError> {
    let text = percent_decode_str(value)
        .decode_utf8()
        .map_err(|_| AuthError::Malformed(format!("'{field}' is not valid URL-encoded text")))?;
    BASE64
        .decode(text.trim().as_bytes())
        .map_err(|_| AuthError::Malformed(format!("'{field}' is not base64")))
}

/// Splits `a=1&b=2` into pairs, keeping the values as sent (still encoded).
/// Field names are matched case-insensitively; a field given twice is
/// malformed, because which copy was signed would be ambiguous.
fn split_fields<'a, const N: usize>(
    text: &'a str,
    known: [&str; N],
) -> Result<[Option<&'a str>; N], AuthError> {
    let mut found: [Option<&'a str>; N] = [None; N];
    for pair in text.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| AuthError::Malformed(format!("field '{pair}' has no '='")))?;
        // Unknown fields are ignored, as Azure does, so future additions by
        // clients do not break authentication.
        if let Some(slot) = known
            .iter()
            .position(|k| k.eq_ignore_ascii_case(name.trim()))
        {
            if found[slot].is_some() {
                return Err(AuthError::Malformed(format!(
                    "field '{}' appears twice",
                    known[slot]
                )));
            }
            found[slot] = Some(value.trim());
        }
    }
    Ok(found)
}

/// A token field that must be present and non-empty.
fn required<'a>(value: Option<&'a str>, name: &str) -> Result<&'a str, AuthError> {
    value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| AuthError::Malformed(format!("the token has no '{name}' field")))
}

/// The path segments a token's resource names, lower-cased and decoded.
///
/// A resource comes in three shapes, and only the path matters:
/// - a URL, `http://host:port/path?query`: scheme, authority and query are
///   dropped (proxies and port mappings change them);
/// - `host[:port]/path` without a scheme (older Azure samples): the first
///   segment is taken as an authority when it contains `:` or `.` or is
///   `localhost` (entity names never contain `:`). An entity whose name
///   contains a dot must therefore be written `/name` or as a full URL;
/// - a path, with or without a leading `/`.
///
/// Returns `None` when a segment is `.` or `..` or badly encoded: such a
/// resource authorises nothing.
fn resource_segments(resource: &str) -> Option<Vec<String>> {
    let resource = resource.trim();
    let resource = resource.split(['?', '#']).next().unwrap_or_default();
    let path = match resource.split_once("://") {
        Some((scheme, rest)) if is_scheme(scheme) => rest.find('/').map_or("", |i| &rest[i..]),
        _ if resource.starts_with('/') => resource,
        _ => {
            let (first, rest) = resource.split_once('/').unwrap_or((resource, ""));
            if first.contains([':', '.']) || first.eq_ignore_ascii_case("localhost") {
                rest
            } else {
                resource
            }
        }
    };
    path_segments(path)
}

/// Whether `text` is a URL scheme (`ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`).
fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// The segments of a request path (query allowed and ignored), each
/// percent-decoded and lower-cased; empty segments (`//`, trailing `/`) are
/// dropped. `None` for `.`/`..` segments or invalid encoding, so callers fail
/// closed: a router that normalises `/orders/../payments` would otherwise
/// serve `payments` to a token for `orders`.
fn path_segments(path: &str) -> Option<Vec<String>> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut segments = Vec::new();
    for raw in path.split('/').filter(|s| !s.is_empty()) {
        // Decode per segment, after splitting: an encoded `%2F` stays inside
        // its segment instead of inventing a new path level.
        let segment = percent_decode_str(raw).decode_utf8().ok()?.to_lowercase();
        if segment == "." || segment == ".." {
            return None;
        }
        segments.push(segment);
    }
    Some(segments)
}

/// Whether the granted path is a whole-segment prefix of the requested one:
/// `/orders` covers `/orders/messages` but not `/orders2`.
fn segments_cover(granted: &[String], requested: &[String]) -> bool {
    requested.len() >= granted.len() && granted.iter().zip(requested).all(|(g, r)| g == r)
}

/// Checks that a token minted for `resource` may be used on `request_path`.
fn check_resource_covers(resource: &str, request_path: &str) -> Result<(), AuthError> {
    let granted = resource_segments(resource);
    let requested = path_segments(request_path);
    match (&granted, &requested) {
        (Some(granted), Some(requested)) if segments_cover(granted, requested) => Ok(()),
        _ => Err(AuthError::WrongScope {
            granted: granted.map_or_else(|| resource.to_owned(), |g| format!("/{}", g.join("/"))),
            requested: request_path.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(resource: &str) -> Option<Vec<String>> {
        resource_segments(resource)
    }

    #[test]
    fn resource_path_ignores_scheme_host_port_query_and_case() {
        let want = Some(vec!["orders".to_owned(), "messages".to_owned()]);
        assert_eq!(segs("http://127.0.0.1:7070/orders/messages"), want);
        assert_eq!(
            segs("HTTPS://Sluice.Example.com/Orders/Messages/?api-version=2016-07"),
            want
        );
        assert_eq!(segs("sb://ns.servicebus.windows.net/orders/messages"), want);
        assert_eq!(segs("ns.servicebus.windows.net/orders/messages"), want);
        assert_eq!(segs("localhost:7070/orders/messages"), want);
        assert_eq!(segs("localhost/orders/messages"), want);
        assert_eq!(segs("/orders/messages"), want);
        assert_eq!(segs("orders/messages"), want);
        assert_eq!(segs("http://127.0.0.1:7070"), Some(vec![]));
        assert_eq!(segs("http://127.0.0.1:7070/"), Some(vec![]));
    }

    #[test]
    fn dot_segments_authorise_nothing() {
        assert_eq!(segs("http://h/orders/../payments"), None);
        assert_eq!(path_segments("/orders/%2e%2e/payments"), None);
        assert!(check_resource_covers("http://h/orders", "/orders/../payments/messages").is_err());
    }

    #[test]
    fn resource_prefix_respects_segment_boundaries() {
        assert!(check_resource_covers("http://h/orders", "/orders/messages").is_ok());
        assert!(check_resource_covers("http://h/orders", "/orders").is_ok());
        let err = check_resource_covers("http://h/orders", "/orders2/messages").unwrap_err();
        assert!(matches!(err, AuthError::WrongScope { .. }), "{err:?}");
        assert_eq!(err.status(), 401);
        assert!(check_resource_covers("http://h/orders/messages", "/orders").is_err());
    }

    #[test]
    fn statuses_are_401_except_insufficient_rights() {
        assert_eq!(AuthError::Missing.status(), 401);
        assert_eq!(AuthError::Malformed("x".into()).status(), 401);
        assert_eq!(AuthError::UnknownPolicy("p".into()).status(), 401);
        assert_eq!(AuthError::BadSignature.status(), 401);
        assert_eq!(
            AuthError::Expired {
                expired_at: 0,
                now: 1
            }
            .status(),
            401
        );
        let forbidden = AuthError::InsufficientRights {
            needed: Right::Send,
            policy: "p".into(),
        };
        assert_eq!(forbidden.status(), 403);
        assert_eq!(
            forbidden.to_string(),
            "policy 'p' does not grant the Send right"
        );
    }

    #[test]
    fn expired_message_shows_readable_times() {
        let text = AuthError::Expired {
            expired_at: 1_893_456_000,
            now: 1_893_456_001,
        }
        .to_string();
        assert!(text.contains("2030-01-01T00:00:00Z"), "{text}");
        assert!(text.contains("2030-01-01T00:00:01Z"), "{text}");
    }
}
