//! Service Bus shared access signatures (SAS) and connection strings.
//!
//! This file owns the `Authorization: SharedAccessSignature sr=..&sig=..&se=..&skn=..`
//! header: parsing it, verifying it against the host's [`Policy`]s, and
//! minting tokens exactly as the Azure SDKs do (for tests and the CLI). It
//! also owns the `Endpoint=sb://..;SharedAccessKeyName=..;SharedAccessKey=..`
//! connection string that tools are configured with.
//!
//! What real clients send (see `DESIGN.md`, "Wire compatibility"):
//! - `sr` is the resource URL, usually the full request URL (scheme, host,
//!   port, path, even the query), lower-cased by some SDKs and URL-encoded
//!   with whatever flavour the SDK's language has (`%3A` or `%3a`, `+` or
//!   `%20`);
//! - `sig` = base64(HMAC-SHA256(key, `sr` **as sent** + `"\n"` + `se`)),
//!   where the HMAC key is the key *text's* UTF-8 bytes (Service Bus keys are
//!   base64-looking but are not decoded, unlike Event Grid keys);
//! - fields come in any order (`sr,sig,se,skn` from the current SDKs,
//!   `sig,se,skn,sr` from the old REST SDK).

use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::{
    AuthError, Claims, Policy, PolicyScope, Right, check_resource_covers, decode_signature,
    form_decode, required, sign, signature_matches, split_fields,
};

/// The scheme word that starts a Service Bus SAS header value.
const SCHEME: &str = "SharedAccessSignature";

/// Characters Python's `urllib.parse.quote_plus` leaves alone (letters,
/// digits, `-._~`): the Azure Python SDK encodes `sr`, `sig` and `skn` this
/// way, so tokens minted here are byte-for-byte what it would send.
const QUOTE_PLUS: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `quote_plus`: percent-encode with upper-case hex, spaces as `+`.
fn quote_plus(text: &str) -> String {
    utf8_percent_encode(text, QUOTE_PLUS)
        .to_string()
        .replace("%20", "+")
}

/// A parsed `SharedAccessSignature` header; verify it with [`verify_service_bus`].
///
/// Keeps `sr` and `se` exactly as sent, because the signature covers the
/// encoded text and re-encoding would not reproduce every client's flavour.
/// `Debug` omits the signature: the token is a bearer credential.
#[derive(Clone, PartialEq, Eq)]
pub struct SasToken {
    resource_raw: String,
    resource: String,
    signature: Vec<u8>,
    expiry_raw: String,
    expires_at: i64,
    key_name: String,
}

impl SasToken {
    /// The resource (`sr`), URL-decoded.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The policy name (`skn`), URL-decoded.
    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    /// The expiry (`se`), Unix seconds.
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }

    /// The text the signature covers: `sr` as sent, a newline, `se` as sent.
    fn string_to_sign(&self) -> String {
        format!("{}\n{}", self.resource_raw, self.expiry_raw)
    }
}

impl fmt::Debug for SasToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SasToken")
            .field("resource", &self.resource)
            .field("key_name", &self.key_name)
            .field("expires_at", &self.expires_at)
            .field("signature", &"<redacted>")
            .finish()
    }
}

/// Parses an `Authorization` header value of the form
/// `SharedAccessSignature sr=...&sig=...&se=...&skn=...`.
///
/// The fields may come in any order and their values are URL-encoded; all
/// four are required, unknown fields are ignored. An empty value is
/// [`AuthError::Missing`], so callers can pass `""` for an absent header.
pub fn parse_sas_token(header_value: &str) -> Result<SasToken, AuthError> {
    let value = header_value.trim();
    if value.is_empty() {
        return Err(AuthError::Missing);
    }
    if value.eq_ignore_ascii_case(SCHEME) {
        return Err(AuthError::Malformed(format!(
            "'{SCHEME}' must be followed by sr=..&sig=..&se=..&skn=.."
        )));
    }
    // Authentication schemes are case-insensitive in HTTP (RFC 9110 §11.1).
    let fields = value
        .split_once(char::is_whitespace)
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(SCHEME))
        .map(|(_, fields)| fields.trim_start())
        .ok_or_else(|| {
            AuthError::Malformed(format!(
                "the Authorization header must start with '{SCHEME} '"
            ))
        })?;

    let [sr, sig, se, skn] = split_fields(fields, ["sr", "sig", "se", "skn"])?;
    let (sr, sig, se, skn) = (
        required(sr, "sr")?,
        required(sig, "sig")?,
        required(se, "se")?,
        required(skn, "skn")?,
    );

    let expires_at = form_decode(se, "se")?
        .trim()
        .parse::<i64>()
        .map_err(|_| AuthError::Malformed("'se' must be the expiry in Unix seconds".to_owned()))?;

    Ok(SasToken {
        resource_raw: sr.to_owned(),
        resource: form_decode(sr, "sr")?,
        signature: decode_signature(sig, "sig")?,
        expiry_raw: se.to_owned(),
        expires_at,
        key_name: form_decode(skn, "skn")?,
    })
}

/// Verifies a Service Bus SAS token for a request to `request_path` (e.g.
/// `/orders/messages`, query allowed) that needs `needed`.
///
/// In order, so that only a caller holding a valid key learns anything about
/// scopes and rights:
/// 1. the policies named `skn` are found ([`AuthError::UnknownPolicy`]); the
///    same name may exist on several entities, those whose scope covers the
///    path are tried first;
/// 2. the signature must match the primary or the secondary key of one of
///    them ([`AuthError::BadSignature`]);
/// 3. the token must not have expired: valid while `now_unix < se`
///    ([`AuthError::Expired`]);
/// 4. the token's resource must cover the path by whole-segment prefix, and
///    an entity policy's entity must cover it too ([`AuthError::WrongScope`]);
/// 5. the policy must grant `needed`, Manage implying all
///    ([`AuthError::InsufficientRights`], 403).
pub fn verify_service_bus(
    token: &SasToken,
    policies: &[Policy],
    request_path: &str,
    needed: Right,
    now_unix: i64,
) -> Result<Claims, AuthError> {
    let mut candidates: Vec<&Policy> = policies
        .iter()
        .filter(|p| p.name == token.key_name)
        .collect();
    if candidates.is_empty() {
        return Err(AuthError::UnknownPolicy(token.key_name.clone()));
    }
    // `false` sorts first: policies that apply to this path are preferred when
    // several entities have a policy of the same name (and, improbably, a key
    // in common).
    candidates.sort_by_key(|p| !p.scope.covers(request_path));

    let message = token.string_to_sign();
    let policy = candidates
        .into_iter()
        .find(|p| {
            p.keys()
                .iter()
                .any(|key| signature_matches(key.as_bytes(), message.as_bytes(), &token.signature))
        })
        .ok_or(AuthError::BadSignature)?;

    if now_unix >= token.expires_at {
        return Err(AuthError::Expired {
            expired_at: token.expires_at,
            now: now_unix,
        });
    }

    check_resource_covers(&token.resource, request_path)?;
    if !policy.scope.covers(request_path) {
        return Err(AuthError::WrongScope {
            granted: policy.scope.to_string(),
            requested: request_path.to_owned(),
        });
    }

    if !policy.allows(needed) {
        return Err(AuthError::InsufficientRights {
            needed,
            policy: policy.name.clone(),
        });
    }

    Ok(Claims {
        policy: policy.name.clone(),
        resource: token.resource.clone(),
        expires_at: token.expires_at,
    })
}

/// Mints a Service Bus SAS header value as the Azure SDKs do:
/// `SharedAccessSignature sr=<quote_plus(lowercase(uri))>&sig=<quote_plus(sig)>&se=<se>&skn=<quote_plus(name)>`,
/// sig = base64(HMAC-SHA256(`key` as UTF-8, sr + `"\n"` + se)).
///
/// With a lower-case `resource_uri` the output is byte-for-byte what
/// `azure-servicebus` (Python) produces for the same inputs.
pub fn generate_sas_token(
    resource_uri: &str,
    policy_name: &str,
    key: &str,
    expires_at_unix: i64,
) -> String {
    let sr = quote_plus(&resource_uri.to_lowercase());
    let se = expires_at_unix.to_string();
    let sig = sign(key.as_bytes(), format!("{sr}\n{se}").as_bytes());
    format!(
        "{SCHEME} sr={sr}&sig={}&se={se}&skn={}",
        quote_plus(&sig),
        quote_plus(policy_name)
    )
}

/// A parsed Service Bus connection string.
///
/// `Debug` omits the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// `Endpoint` as written, e.g. `sb://127.0.0.1:7070/`.
    pub endpoint: String,
    /// `SharedAccessKeyName`: the policy name.
    pub key_name: String,
    /// `SharedAccessKey`: the key text.
    pub key: String,
    /// `EntityPath`, present when the policy is scoped to one entity.
    pub entity_path: Option<String>,
}

impl ConnectionString {
    /// `host[:port]` of the endpoint, without scheme or path; Sluice serves
    /// HTTP(S) there although the endpoint says `sb://`.
    pub fn authority(&self) -> &str {
        authority_of(&self.endpoint)
    }

    /// A SAS header value for `resource_uri`, signed with this string's key.
    pub fn sas_token(&self, resource_uri: &str, expires_at_unix: i64) -> String {
        generate_sas_token(resource_uri, &self.key_name, &self.key, expires_at_unix)
    }
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("endpoint", &self.endpoint)
            .field("key_name", &self.key_name)
            .field("key", &"<redacted>")
            .field("entity_path", &self.entity_path)
            .finish()
    }
}

/// `host[:port]` of an endpoint given as a URL or bare authority.
fn authority_of(endpoint: &str) -> &str {
    let endpoint = endpoint.trim();
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    rest.split(['/', '?', '#']).next().unwrap_or_default()
}

/// A connection string for `policy` at `endpoint` (`http://host:port`,
/// `host:port` or `sb://host:port/`), using the primary key:
/// `Endpoint=sb://host:port/;SharedAccessKeyName=<name>;SharedAccessKey=<key>`,
/// plus `;EntityPath=<entity>` for an entity policy.
///
/// The endpoint keeps Azure's `sb://` scheme even though Sluice serves HTTP:
/// tools parse connection strings by that shape and derive the HTTP(S) URL
/// from the host themselves (see [`ConnectionString::authority`]).
pub fn connection_string(endpoint: &str, policy: &Policy) -> String {
    let mut text = format!(
        "Endpoint=sb://{}/;SharedAccessKeyName={};SharedAccessKey={}",
        authority_of(endpoint),
        policy.name,
        policy.primary_key
    );
    if let PolicyScope::Entity(entity) = &policy.scope {
        text.push_str(";EntityPath=");
        text.push_str(entity.trim_matches('/'));
    }
    text
}

/// Parses `Endpoint=...;SharedAccessKeyName=...;SharedAccessKey=...[;EntityPath=...]`.
///
/// Keys are case-insensitive and may come in any order; a trailing `;` and
/// unknown keys (such as `UseDevelopmentEmulator`) are accepted. Values are
/// split at the first `=` only, since base64 keys end in `=`.
pub fn parse_connection_string(text: &str) -> Result<ConnectionString, AuthError> {
    let (mut endpoint, mut key_name, mut key, mut entity_path) = (None, None, None, None);
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').ok_or_else(|| {
            AuthError::Malformed("connection string parts must look like Name=value".to_owned())
        })?;
        let value = Some(value.trim().to_owned());
        match name.trim().to_ascii_lowercase().as_str() {
            "endpoint" => endpoint = value,
            "sharedaccesskeyname" => key_name = value,
            "sharedaccesskey" => key = value,
            "entitypath" => entity_path = value,
            _ => {}
        }
    }
    let require = |value: Option<String>, name: &str| {
        value
            .filter(|v| !v.is_empty())
            .ok_or_else(|| AuthError::Malformed(format!("the connection string has no {name}")))
    };
    Ok(ConnectionString {
        endpoint: require(endpoint, "Endpoint")?,
        key_name: require(key_name, "SharedAccessKeyName")?,
        key: require(key, "SharedAccessKey")?,
        entity_path: entity_path.filter(|p| !p.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed key in Azure's shape. Service Bus uses the key *text* as the
    /// HMAC key, so any string works.
    const KEY: &str = "7mVq3Jd0Y1cXbZ2kL9pQ4rS8tU6vW5xA3yB1zC0dE2f=";
    const SECONDARY: &str = "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGw=";
    /// 2030-01-01T00:00:00Z.
    const SE: i64 = 1_893_456_000;
    const BEFORE: i64 = SE - 60;

    fn policy(name: &str, rights: &[Right], scope: PolicyScope) -> Policy {
        Policy {
            name: name.to_owned(),
            primary_key: KEY.to_owned(),
            secondary_key: SECONDARY.to_owned(),
            rights: rights.to_vec(),
            scope,
        }
    }

    fn root_manage() -> Policy {
        policy(
            "RootManageSharedAccessKey",
            &[Right::Manage],
            PolicyScope::Namespace,
        )
    }

    /// Changes the first character of the signature to another base64
    /// character, so the token still parses but no longer verifies.
    fn tamper(header: &str) -> String {
        let (head, sig) = header.split_once("sig=").expect("has sig");
        let replacement = if sig.starts_with('A') { "B" } else { "A" };
        format!("{head}sig={replacement}{}", &sig[1..])
    }

    fn verify(
        header: &str,
        policies: &[Policy],
        path: &str,
        needed: Right,
        now: i64,
    ) -> Result<Claims, AuthError> {
        verify_service_bus(&parse_sas_token(header)?, policies, path, needed, now)
    }

    #[test]
    fn generated_token_verifies() {
        let header = generate_sas_token(
            "http://127.0.0.1:7070/orders/messages",
            "RootManageSharedAccessKey",
            KEY,
            SE,
        );
        let claims = verify(
            &header,
            &[root_manage()],
            "/orders/messages",
            Right::Send,
            BEFORE,
        )
        .expect("valid");
        assert_eq!(
            claims,
            Claims {
                policy: "RootManageSharedAccessKey".to_owned(),
                resource: "http://127.0.0.1:7070/orders/messages".to_owned(),
                expires_at: SE,
            }
        );
    }

    /// The Azure Python SDK's token, byte for byte.
    ///
    /// How it was made: azure-servicebus 7.15.0,
    /// `azure.servicebus._pyamqp.utils.generate_sas_token("http://127.0.0.1:7070/orders/messages",
    /// "RootManageSharedAccessKey", KEY, 1893456000)`, which computes
    /// `sr = quote_plus(uri)`, `sig = b64encode(HMAC(key.encode(), f"{sr}\n{se}", sha256))`
    /// and joins `sr, sig, se, skn` with `urlencode` (so `sig` is `quote_plus`ed).
    /// The test rebuilds the same string step by step and checks both.
    #[test]
    fn token_made_by_the_azure_python_sdk_verifies_and_matches_our_generator() {
        const FROM_SDK: &str = "SharedAccessSignature sr=http%3A%2F%2F127.0.0.1%3A7070%2Forders%2Fmessages\
            &sig=u3SU2JXXj01iXMn3eCSeLgURj1%2FyRzf7MLabZQMuCIg%3D&se=1893456000&skn=RootManageSharedAccessKey";

        // By hand: quote_plus of the URL encodes ':' and '/' only.
        let sr = "http%3A%2F%2F127.0.0.1%3A7070%2Forders%2Fmessages";
        let sig = sign(KEY.as_bytes(), format!("{sr}\n1893456000").as_bytes());
        assert_eq!(sig, "u3SU2JXXj01iXMn3eCSeLgURj1/yRzf7MLabZQMuCIg=");
        let by_hand = format!(
            "SharedAccessSignature sr={sr}&sig={}&se=1893456000&skn=RootManageSharedAccessKey",
            sig.replace('/', "%2F")
                .replace('+', "%2B")
                .replace('=', "%3D")
        );
        assert_eq!(by_hand, FROM_SDK);
        assert_eq!(
            generate_sas_token(
                "http://127.0.0.1:7070/orders/messages",
                "RootManageSharedAccessKey",
                KEY,
                SE
            ),
            FROM_SDK
        );

        let claims = verify(
            FROM_SDK,
            &[root_manage()],
            "/orders/messages",
            Right::Send,
            BEFORE,
        )
        .expect("valid");
        assert_eq!(claims.resource, "http://127.0.0.1:7070/orders/messages");
    }

    /// `ServiceBusAdministrationClient` (Python) signs the namespace root once
    /// (`https://` + host) and uses that token for every management call.
    #[test]
    fn namespace_root_token_from_the_python_admin_client_covers_every_path() {
        const FROM_SDK: &str = "SharedAccessSignature sr=https%3A%2F%2F127.0.0.1%3A7070\
            &sig=YRr9gvn%2B2OSUVlxCU8ggZ6MfKCRFP30OknmCDadxM9Q%3D&se=1893456000&skn=RootManageSharedAccessKey";
        for path in ["/orders", "/$Resources/queues", "/mytopic/subscriptions/s1"] {
            verify(FROM_SDK, &[root_manage()], path, Right::Manage, BEFORE).expect(path);
        }
    }

    /// Base64 signatures contain `+` and `/`; hand-written clients sometimes
    /// send them unencoded, and a raw `+` must not be read as a space.
    #[test]
    fn unencoded_signature_with_plus_and_slash_still_verifies() {
        const RAW_SIG: &str = "SharedAccessSignature sr=https%3A%2F%2F127.0.0.1%3A7070\
            &sig=YRr9gvn+2OSUVlxCU8ggZ6MfKCRFP30OknmCDadxM9Q=&se=1893456000&skn=RootManageSharedAccessKey";
        verify(RAW_SIG, &[root_manage()], "/orders", Right::Send, BEFORE).expect("valid");
        let err = parse_sas_token("SharedAccessSignature").unwrap_err();
        assert!(matches!(err, AuthError::Malformed(_)), "{err:?}");
    }

    /// The old REST SDK (azure-servicebus 0.21, `ServiceBusSASAuthentication`)
    /// signs the full request URL with `quote(url, safe='').lower()`, so the
    /// hex escapes are lower-case and the query is included, and it puts `sr`
    /// last. Computed with Python's standard library following that code.
    #[test]
    fn token_from_the_legacy_rest_sdk_with_lower_case_escapes_and_query_verifies() {
        const FROM_SDK: &str = "SharedAccessSignature sig=wFlAqw5lNgDJLiNEQkHojgubq3G8q6trFTy%2B%2B49WWT4%3D\
            &se=1893456000&skn=listener&sr=http%3a%2f%2f127.0.0.1%3a7070%2forders%2fmessages%2fhead\
            %3ftimeout%3d60%26api-version%3d2016-07";
        let listener = policy("listener", &[Right::Listen], PolicyScope::Namespace);
        let claims = verify(
            FROM_SDK,
            &[listener],
            "/Orders/Messages/Head",
            Right::Listen,
            BEFORE,
        )
        .expect("valid");
        assert_eq!(
            claims.resource,
            "http://127.0.0.1:7070/orders/messages/head?timeout=60&api-version=2016-07"
        );
    }

    #[test]
    fn sr_with_upper_case_other_host_port_and_query_still_authorises_on_path_prefix() {
        // A client that does not lower-case (or sits behind a proxy that
        // changed host and port) signs exactly what it sends.
        let sr = quote_plus("HTTPS://Proxy.Example.com:8443/Orders?api-version=2016-07");
        let sig = sign(KEY.as_bytes(), format!("{sr}\n{SE}").as_bytes());
        let header = format!(
            "SharedAccessSignature skn=RootManageSharedAccessKey&se={SE}&sr={sr}&sig={}",
            quote_plus(&sig)
        );
        verify(
            &header,
            &[root_manage()],
            "/orders/messages",
            Right::Send,
            BEFORE,
        )
        .expect("valid");
    }

    #[test]
    fn tampered_signature_is_bad_signature() {
        let header = generate_sas_token("http://h/orders", "RootManageSharedAccessKey", KEY, SE);
        let tampered = tamper(&header);
        let err = verify(
            &tampered,
            &[root_manage()],
            "/orders/messages",
            Right::Send,
            BEFORE,
        )
        .unwrap_err();
        assert!(matches!(err, AuthError::BadSignature), "{err:?}");
        assert_eq!(err.status(), 401);
    }

    #[test]
    fn changing_the_resource_or_expiry_breaks_the_signature() {
        let header = generate_sas_token("http://h/orders", "RootManageSharedAccessKey", KEY, SE);
        let widened = header.replace("sr=http%3A%2F%2Fh%2Forders", "sr=http%3A%2F%2Fh");
        let err = verify(&widened, &[root_manage()], "/payments", Right::Send, BEFORE).unwrap_err();
        assert!(matches!(err, AuthError::BadSignature), "{err:?}");
        let extended = header.replace(&SE.to_string(), &(SE + 3600).to_string());
        let err = verify(&extended, &[root_manage()], "/orders", Right::Send, SE + 1).unwrap_err();
        assert!(matches!(err, AuthError::BadSignature), "{err:?}");
    }

    #[test]
    fn expired_token_is_expired() {
        let header = generate_sas_token("http://h/orders", "RootManageSharedAccessKey", KEY, SE);
        for now in [SE, SE + 1] {
            let err = verify(&header, &[root_manage()], "/orders", Right::Send, now).unwrap_err();
            assert!(
                matches!(err, AuthError::Expired { expired_at: SE, .. }),
                "{err:?}"
            );
            assert_eq!(err.status(), 401);
        }
    }

    #[test]
    fn token_for_another_entity_is_wrong_scope() {
        let header = generate_sas_token("http://h/orders", "RootManageSharedAccessKey", KEY, SE);
        let err = verify(
            &header,
            &[root_manage()],
            "/payments/messages",
            Right::Send,
            BEFORE,
        )
        .unwrap_err();
        match &err {
            AuthError::WrongScope { granted, requested } => {
                assert_eq!(granted, "/orders");
                assert_eq!(requested, "/payments/messages");
            }
            other => panic!("expected WrongScope, got {other:?}"),
        }
        assert_eq!(err.status(), 401);
    }

    #[test]
    fn resource_prefix_must_end_on_a_segment_boundary() {
        let header = generate_sas_token("http://h/orders", "RootManageSharedAccessKey", KEY, SE);
        let err = verify(
            &header,
            &[root_manage()],
            "/orders2/messages",
            Right::Send,
            BEFORE,
        )
        .unwrap_err();
        assert!(matches!(err, AuthError::WrongScope { .. }), "{err:?}");
        verify(
            &header,
            &[root_manage()],
            "/orders/messages",
            Right::Send,
            BEFORE,
        )
        .expect("own entity");
    }

    #[test]
    fn entity_policy_only_works_under_its_entity() {
        let orders = policy(
            "send",
            &[Right::Send],
            PolicyScope::Entity("orders".to_owned()),
        );
        // Even a token for the whole namespace cannot stretch an entity policy.
        let header = generate_sas_token("http://h/", "send", KEY, SE);
        verify(
            &header,
            std::slice::from_ref(&orders),
            "/orders/messages",
            Right::Send,
            BEFORE,
        )
        .expect("own entity");
        let err = verify(
            &header,
            &[orders],
            "/payments/messages",
            Right::Send,
            BEFORE,
        )
        .unwrap_err();
        match err {
            AuthError::WrongScope { granted, .. } => assert_eq!(granted, "/orders"),
            other => panic!("expected WrongScope, got {other:?}"),
        }
    }

    #[test]
    fn same_policy_name_on_two_entities_picks_the_one_whose_key_signed() {
        let mut payments = policy(
            "send",
            &[Right::Send],
            PolicyScope::Entity("payments".to_owned()),
        );
        payments.primary_key = "cGF5bWVudHMta2V5LXBheW1lbnRzLWtleS1wYXltZW4=".to_owned();
        payments.secondary_key = "c2Vjb25kYXJ5LXBheW1lbnRzLWtleS1zZWNvbmRhcnk=".to_owned();
        let orders = policy(
            "send",
            &[Right::Send],
            PolicyScope::Entity("orders".to_owned()),
        );
        let policies = [payments.clone(), orders];

        let header = generate_sas_token("http://h/payments", "send", &payments.primary_key, SE);
        verify(
            &header,
            &policies,
            "/payments/messages",
            Right::Send,
            BEFORE,
        )
        .expect("payments key");
        let orders_header = generate_sas_token("http://h/orders", "send", KEY, SE);
        verify(
            &orders_header,
            &policies,
            "/orders/messages",
            Right::Send,
            BEFORE,
        )
        .expect("orders key");
    }

    #[test]
    fn listen_only_policy_sending_is_insufficient_rights_403() {
        let listen = policy("listen", &[Right::Listen], PolicyScope::Namespace);
        let header = generate_sas_token("http://h/orders", "listen", KEY, SE);
        verify(
            &header,
            std::slice::from_ref(&listen),
            "/orders/messages/head",
            Right::Listen,
            BEFORE,
        )
        .expect("may listen");
        let err = verify(&header, &[listen], "/orders/messages", Right::Send, BEFORE).unwrap_err();
        assert!(
            matches!(&err, AuthError::InsufficientRights { needed: Right::Send, policy } if policy == "listen"),
            "{err:?}"
        );
        assert_eq!(err.status(), 403);
    }

    #[test]
    fn missing_credentials_are_401() {
        for absent in ["", "   "] {
            let err = parse_sas_token(absent).unwrap_err();
            assert!(matches!(err, AuthError::Missing), "{err:?}");
            assert_eq!(err.status(), 401);
        }
    }

    #[test]
    fn secondary_key_works() {
        let header = generate_sas_token(
            "http://h/orders",
            "RootManageSharedAccessKey",
            SECONDARY,
            SE,
        );
        verify(&header, &[root_manage()], "/orders", Right::Send, BEFORE).expect("secondary key");
    }

    #[test]
    fn unknown_policy_name_is_unknown_policy() {
        let header = generate_sas_token("http://h/orders", "nobody", KEY, SE);
        let err = verify(&header, &[root_manage()], "/orders", Right::Send, BEFORE).unwrap_err();
        assert!(
            matches!(&err, AuthError::UnknownPolicy(name) if name == "nobody"),
            "{err:?}"
        );
        assert_eq!(err.status(), 401);
    }

    #[test]
    fn header_needs_the_scheme_word_and_all_four_fields() {
        let header = generate_sas_token("http://h/orders", "RootManageSharedAccessKey", KEY, SE);
        let bare = header.trim_start_matches("SharedAccessSignature ");
        assert!(matches!(
            parse_sas_token(bare),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            parse_sas_token(&format!("Bearer {bare}")),
            Err(AuthError::Malformed(_))
        ));
        // The scheme word is case-insensitive, as HTTP says.
        parse_sas_token(&format!("sharedaccesssignature {bare}")).expect("scheme case");

        for field in ["sr", "sig", "se", "skn"] {
            let without: Vec<&str> = bare
                .split('&')
                .filter(|p| !p.starts_with(&format!("{field}=")))
                .collect();
            let text = format!("SharedAccessSignature {}", without.join("&"));
            let err = parse_sas_token(&text).unwrap_err();
            assert!(
                matches!(&err, AuthError::Malformed(m) if m.contains(field)),
                "{field}: {err:?}"
            );
        }
        let twice = format!("{header}&se=1");
        assert!(matches!(
            parse_sas_token(&twice),
            Err(AuthError::Malformed(_))
        ));
        let bad_se = header.replace(&SE.to_string(), "tomorrow");
        assert!(matches!(
            parse_sas_token(&bad_se),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn errors_and_debug_output_never_show_keys_or_signatures() {
        let header = generate_sas_token("http://h/orders", "RootManageSharedAccessKey", KEY, SE);
        let token = parse_sas_token(&header).expect("parses");
        let sig_param = header
            .split("sig=")
            .nth(1)
            .and_then(|s| s.split('&').next())
            .unwrap_or_default();
        assert!(!format!("{token:?}").contains(sig_param));
        let errors = [
            verify(&header, &[root_manage()], "/orders", Right::Send, SE + 1).unwrap_err(),
            verify(&header, &[root_manage()], "/payments", Right::Send, BEFORE).unwrap_err(),
            verify(
                &tamper(&header),
                &[root_manage()],
                "/orders",
                Right::Send,
                BEFORE,
            )
            .unwrap_err(),
        ];
        for err in errors {
            let text = format!("{err} {err:?}");
            assert!(!text.contains(KEY) && !text.contains(sig_param), "{text}");
        }
    }

    #[test]
    fn connection_string_round_trips_and_keeps_sb_scheme() {
        let ns = root_manage();
        let text = connection_string("http://127.0.0.1:7070", &ns);
        assert_eq!(
            text,
            format!(
                "Endpoint=sb://127.0.0.1:7070/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={KEY}"
            )
        );
        let parsed = parse_connection_string(&text).expect("parses");
        assert_eq!(parsed.endpoint, "sb://127.0.0.1:7070/");
        assert_eq!(parsed.authority(), "127.0.0.1:7070");
        assert_eq!(parsed.key_name, "RootManageSharedAccessKey");
        assert_eq!(parsed.key, KEY);
        assert_eq!(parsed.entity_path, None);

        // A token minted from the connection string verifies.
        let header = parsed.sas_token("http://127.0.0.1:7070/orders", SE);
        verify(&header, &[ns], "/orders/messages", Right::Send, BEFORE).expect("valid");

        let orders = policy(
            "send",
            &[Right::Send],
            PolicyScope::Entity("orders".to_owned()),
        );
        let scoped =
            parse_connection_string(&connection_string("sb://host:1/", &orders)).expect("parses");
        assert_eq!(scoped.entity_path.as_deref(), Some("orders"));
        assert_eq!(scoped.authority(), "host:1");
    }

    #[test]
    fn azure_style_connection_string_parses_case_insensitively() {
        let text = format!(
            " endpoint=sb://ns.servicebus.windows.net/ ; SHAREDACCESSKEYNAME=RootManageSharedAccessKey;\
             SharedAccessKey={KEY};UseDevelopmentEmulator=true;"
        );
        let parsed = parse_connection_string(&text).expect("parses");
        assert_eq!(parsed.authority(), "ns.servicebus.windows.net");
        assert_eq!(parsed.key, KEY);
        assert!(!format!("{parsed:?}").contains(KEY));

        let err = parse_connection_string("Endpoint=sb://h/;SharedAccessKeyName=x").unwrap_err();
        assert!(
            matches!(&err, AuthError::Malformed(m) if m.contains("SharedAccessKey")),
            "{err:?}"
        );
        assert!(parse_connection_string("just text").is_err());
    }
}
