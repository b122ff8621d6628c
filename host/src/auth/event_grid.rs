//! Event Grid topic authentication: `aeg-sas-key` and `aeg-sas-token`.
//!
//! This file owns both ways an Event Grid publisher proves it may publish to
//! a topic, and minting topic keys and tokens (for tests and the CLI):
//! - `aeg-sas-key: <key>`: the topic key itself, as `AzureKeyCredential`
//!   sends it; compared in constant time against each of the topic's keys;
//! - `aeg-sas-token: r=<enc(resource)>&e=<enc(expiry)>&s=<enc(sig)>`, as
//!   `generate_sas` (Python) / `generateSharedAccessSignature` (JS) make it:
//!   `resource` is the topic endpoint URL + `?apiVersion=2018-01-01`, and
//!   sig = base64(HMAC-SHA256(**base64-decoded** key, the raw text before
//!   `&s=`)). Unlike Service Bus, the key is decoded before use.
//!
//! The expiry's format depends on the SDK: Python writes `str(datetime)`
//! (`2030-01-01 00:00:00+00:00`), JS and .NET write `M/d/yyyy h:mm:ss tt`
//! in UTC (`1/1/2030 12:00:00 AM`); RFC 3339 and Unix seconds are accepted
//! too.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use subtle::{Choice, ConstantTimeEq};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, Month, OffsetDateTime};

use super::{
    AuthError, check_resource_covers, decode_signature, random_key, required, sign,
    signature_matches, split_fields, url_decode,
};

/// The API version the SDKs put in the signed resource (`?apiVersion=`).
const API_VERSION: &str = "2018-01-01";

/// Characters both SDKs leave unencoded: JavaScript's `encodeURIComponent`
/// and Python's `quote(text, safe="~()*!.'")` agree on letters, digits and
/// `-_.!~*'()`. Using the same set makes minted tokens byte-identical.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

fn encode_component(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

/// Checks an `aeg-sas-key` header value against the topic's keys.
///
/// Every key is compared, each in constant time, so timing reveals neither
/// how much of a guess was right nor which key matched. An empty value is
/// [`AuthError::Missing`]; no match is [`AuthError::BadSignature`].
pub fn verify_topic_key(header_value: &str, keys: &[String]) -> Result<(), AuthError> {
    let presented = header_value.trim().as_bytes();
    if presented.is_empty() {
        return Err(AuthError::Missing);
    }
    let matched = keys.iter().fold(Choice::from(0), |matched, key| {
        matched | presented.ct_eq(key.trim().as_bytes())
    });
    if bool::from(matched) {
        Ok(())
    } else {
        Err(AuthError::BadSignature)
    }
}

/// Verifies an `aeg-sas-token` header value for a publish to `request_path`
/// (e.g. `/topics/orders/api/events`).
///
/// The signature must match one of `keys` (base64 topic keys; one that does
/// not decode is skipped), then the expiry must lie after `now_unix`, then
/// the token's resource must cover the path by whole-segment prefix
/// (scheme, host, port and the `?apiVersion=` query are ignored).
pub fn verify_event_grid_token(
    header_value: &str,
    keys: &[String],
    request_path: &str,
    now_unix: i64,
) -> Result<(), AuthError> {
    let value = header_value.trim();
    if value.is_empty() {
        return Err(AuthError::Missing);
    }
    // The signature covers the raw text before `&s=`; values are
    // URL-encoded, so that separator cannot occur inside one.
    let (unsigned, s) = value.split_once("&s=").ok_or_else(|| {
        AuthError::Malformed("the token has no 's' field after 'r' and 'e'".to_owned())
    })?;
    if s.contains('&') {
        // Anything after `s` would be unsigned yet look like part of the token.
        return Err(AuthError::Malformed(
            "'s' must be the token's last field".to_owned(),
        ));
    }
    let [r, e] = split_fields(unsigned, ["r", "e"])?;
    let (r, e) = (required(r, "r")?, required(e, "e")?);

    let resource = url_decode(r, "r")?;
    let expiry_text = url_decode(e, "e")?;
    let expires_at = parse_expiry(&expiry_text).ok_or_else(|| {
        AuthError::Malformed(format!(
            "'e' ({expiry_text}) is not a date such as '2030-01-01 00:00:00+00:00' or '1/1/2030 12:00:00 AM'"
        ))
    })?;
    let signature = decode_signature(s, "s")?;

    // Every key is tried even after a match would be found, to keep timing
    // independent of which key (if any) signed.
    let signed = keys
        .iter()
        .filter_map(|key| BASE64.decode(key.trim()).ok())
        .fold(false, |found, key| {
            signature_matches(&key, unsigned.as_bytes(), &signature) | found
        });
    if !signed {
        return Err(AuthError::BadSignature);
    }

    if now_unix >= expires_at {
        return Err(AuthError::Expired {
            expired_at: expires_at,
            now: now_unix,
        });
    }
    check_resource_covers(&resource, request_path)
}

/// Mints an `aeg-sas-token` value exactly as the Python SDK's `generate_sas`
/// does: the signed resource is `endpoint` + `?apiVersion=2018-01-01`, the
/// expiry is written `2030-01-01 00:00:00+00:00`.
///
/// Fails when `key_b64` is not base64 (Event Grid keys are decoded before
/// signing) or the expiry is beyond year 9999.
pub fn generate_event_grid_token(
    endpoint: &str,
    key_b64: &str,
    expires_at_unix: i64,
) -> Result<String, AuthError> {
    let key = BASE64
        .decode(key_b64.trim())
        .map_err(|_| AuthError::Malformed("the topic key is not base64".to_owned()))?;
    let expiry = OffsetDateTime::from_unix_timestamp(expires_at_unix)
        .ok()
        .and_then(|t| {
            t.format(format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]+00:00"
            ))
            .ok()
        })
        .ok_or_else(|| AuthError::Malformed(format!("expiry {expires_at_unix} is out of range")))?;
    let unsigned = format!(
        "r={}&e={}",
        encode_component(&format!("{endpoint}?apiVersion={API_VERSION}")),
        encode_component(&expiry)
    );
    let sig = sign(&key, unsigned.as_bytes());
    Ok(format!("{unsigned}&s={}", encode_component(&sig)))
}

/// A new topic key: 32 random bytes from the operating system, in standard
/// base64, the shape of Azure's topic keys.
///
/// # Panics
///
/// Only if the operating system's random source fails; continuing with a
/// guessable key would be worse.
pub fn generate_topic_key() -> String {
    random_key()
}

/// Parses a token expiry into Unix seconds; `None` if no format fits.
fn parse_expiry(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<i64>() {
        return Some(secs);
    }
    parse_iso(text)
        .or_else(|| parse_us(text))
        .map(OffsetDateTime::unix_timestamp)
}

/// RFC 3339 and Python's `str(datetime)`, which is RFC 3339 with a space for
/// the `T` (and no offset at all for a naive datetime, taken as UTC).
fn parse_iso(text: &str) -> Option<OffsetDateTime> {
    let text = text.replacen(' ', "T", 1);
    OffsetDateTime::parse(&text, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(&format!("{text}Z"), &Rfc3339))
        .ok()
}

/// .NET's en-US `M/d/yyyy h:mm:ss tt` in UTC, which the JS SDK imitates
/// (`1/1/2030 12:00:00 AM`); without `AM`/`PM` the hour is read as 0-23.
fn parse_us(text: &str) -> Option<OffsetDateTime> {
    let mut words = text.split_whitespace();
    let (date, clock, meridiem) = (words.next()?, words.next()?, words.next());
    if words.next().is_some() {
        return None;
    }
    let [month, day, year] = three_numbers(date, '/')?;
    let [hour, minute, second] = three_numbers(clock, ':')?;
    let hour = match meridiem.map(str::to_ascii_uppercase).as_deref() {
        None => hour,
        // 12 AM is midnight and 12 PM is noon, the rest is 1-11.
        Some("AM") if (1..=12).contains(&hour) => hour % 12,
        Some("PM") if (1..=12).contains(&hour) => hour % 12 + 12,
        Some(_) => return None,
    };
    let date = Date::from_calendar_date(
        i32::try_from(year).ok()?,
        Month::try_from(u8::try_from(month).ok()?).ok()?,
        u8::try_from(day).ok()?,
    )
    .ok()?;
    let time = time::Time::from_hms(
        u8::try_from(hour).ok()?,
        u8::try_from(minute).ok()?,
        u8::try_from(second).ok()?,
    )
    .ok()?;
    Some(date.with_time(time).assume_utc())
}

/// `a<sep>b<sep>c` as three unsigned numbers.
fn three_numbers(text: &str, separator: char) -> Option<[u32; 3]> {
    let mut parts = text.split(separator).map(|part| part.parse::<u32>().ok());
    let numbers = [parts.next()??, parts.next()??, parts.next()??];
    parts.next().is_none().then_some(numbers)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// bytes 0..32 in base64; a valid topic key.
    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const OTHER_KEY: &str = "//////////////////////////////////////////8=";
    const ENDPOINT: &str = "http://127.0.0.1:7070/topics/orders/api/events";
    const PATH: &str = "/topics/orders/api/events";
    /// 2030-01-01T00:00:00Z.
    const EXPIRY: i64 = 1_893_456_000;
    const BEFORE: i64 = EXPIRY - 60;

    fn keys(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|k| (*k).to_owned()).collect()
    }

    /// From azure-eventgrid 4.22.1 (Python):
    /// `generate_sas(ENDPOINT, KEY, datetime(2030, 1, 1, tzinfo=timezone.utc))`.
    /// By hand: `r = quote(ENDPOINT + "?apiVersion=2018-01-01", safe="~()*!.'")`,
    /// `e = quote("2030-01-01 00:00:00+00:00", same safe)`, then
    /// `s = quote(b64encode(HMAC(b64decode(KEY), f"r={r}&e={e}", sha256)))`.
    const PYTHON_TOKEN: &str = "r=http%3A%2F%2F127.0.0.1%3A7070%2Ftopics%2Forders%2Fapi%2Fevents%3FapiVersion%3D2018-01-01\
        &e=2030-01-01%2000%3A00%3A00%2B00%3A00&s=rpuzyoK%2FJ8F835HHqgZ20nXwGdHXVeqNng0Dgx8IZQ0%3D";

    /// From @azure/eventgrid (JS): `generateSharedAccessSignature(ENDPOINT,
    /// new AzureKeyCredential(KEY), new Date(Date.UTC(2030, 0, 1)))`.
    const JS_TOKEN: &str = "r=http%3A%2F%2F127.0.0.1%3A7070%2Ftopics%2Forders%2Fapi%2Fevents%3FapiVersion%3D2018-01-01\
        &e=1%2F1%2F2030%2012%3A00%3A00%20AM&s=%2FXUDIUAddbFvL9c69ba38LO64pag8JPOJEuj7gTrYGI%3D";

    /// Same, expiring `Date.UTC(2030, 11, 31, 13, 5, 9)`: an afternoon hour.
    const JS_TOKEN_PM: &str = "r=http%3A%2F%2F127.0.0.1%3A7070%2Ftopics%2Forders%2Fapi%2Fevents%3FapiVersion%3D2018-01-01\
        &e=12%2F31%2F2030%201%3A05%3A09%20PM&s=r9BDEX9OSdLdgyDANkQQ51WlzBNQQqRKOk%2F1FPxgEk8%3D";

    #[test]
    fn token_made_by_the_python_sdk_verifies_and_matches_our_generator() {
        verify_event_grid_token(PYTHON_TOKEN, &keys(&[KEY]), PATH, BEFORE).expect("valid");

        // Rebuilt by hand, following the SDK's steps.
        let r = "http%3A%2F%2F127.0.0.1%3A7070%2Ftopics%2Forders%2Fapi%2Fevents%3FapiVersion%3D2018-01-01";
        let e = "2030-01-01%2000%3A00%3A00%2B00%3A00";
        let unsigned = format!("r={r}&e={e}");
        let key = BASE64.decode(KEY).expect("base64");
        let s = sign(&key, unsigned.as_bytes())
            .replace('/', "%2F")
            .replace('+', "%2B")
            .replace('=', "%3D");
        assert_eq!(format!("{unsigned}&s={s}"), PYTHON_TOKEN);

        assert_eq!(
            generate_event_grid_token(ENDPOINT, KEY, EXPIRY).expect("mints"),
            PYTHON_TOKEN
        );
    }

    #[test]
    fn tokens_made_by_the_js_sdk_with_us_style_expiry_verify() {
        verify_event_grid_token(JS_TOKEN, &keys(&[KEY]), PATH, BEFORE).expect("valid");
        verify_event_grid_token(JS_TOKEN_PM, &keys(&[KEY]), PATH, BEFORE).expect("valid");
        // 13:05:09 on the last day of 2030, not 01:05:09.
        let pm = OffsetDateTime::parse("2030-12-31T13:05:09Z", &Rfc3339)
            .expect("date")
            .unix_timestamp();
        verify_event_grid_token(JS_TOKEN_PM, &keys(&[KEY]), PATH, pm - 1)
            .expect("valid just before");
        let err = verify_event_grid_token(JS_TOKEN_PM, &keys(&[KEY]), PATH, pm).unwrap_err();
        assert!(
            matches!(err, AuthError::Expired { expired_at, .. } if expired_at == pm),
            "{err:?}"
        );
    }

    #[test]
    fn js_style_expiry_parses_including_midnight_and_noon() {
        let at = |text: &str| {
            OffsetDateTime::parse(text, &Rfc3339)
                .expect("date")
                .unix_timestamp()
        };
        assert_eq!(
            parse_expiry("1/1/2030 12:00:00 AM"),
            Some(at("2030-01-01T00:00:00Z"))
        );
        assert_eq!(
            parse_expiry("1/1/2030 12:00:00 PM"),
            Some(at("2030-01-01T12:00:00Z"))
        );
        assert_eq!(
            parse_expiry("6/5/2020 12:09:03 PM"),
            Some(at("2020-06-05T12:09:03Z"))
        );
        assert_eq!(
            parse_expiry("12/31/2030 1:05:09 pm"),
            Some(at("2030-12-31T13:05:09Z"))
        );
        assert_eq!(
            parse_expiry("12/31/2030 11:59:59 PM"),
            Some(at("2030-12-31T23:59:59Z"))
        );
        assert_eq!(
            parse_expiry("12/31/2030 23:59:59"),
            Some(at("2030-12-31T23:59:59Z"))
        );
        assert_eq!(parse_expiry("1/1/2030 13:00:00 PM"), None);
        assert_eq!(parse_expiry("1/1/2030 0:00:00 AM"), None);
        assert_eq!(parse_expiry("13/1/2030 1:00:00 AM"), None);
        assert_eq!(parse_expiry("2/30/2030 1:00:00 AM"), None);
    }

    #[test]
    fn python_rfc3339_and_unix_expiries_parse() {
        assert_eq!(parse_expiry("2030-01-01 00:00:00+00:00"), Some(EXPIRY));
        assert_eq!(
            parse_expiry("2030-01-01 00:00:00.123456+00:00"),
            Some(EXPIRY)
        );
        assert_eq!(parse_expiry("2030-01-01 02:00:00+02:00"), Some(EXPIRY));
        assert_eq!(
            parse_expiry("2030-01-01 00:00:00"),
            Some(EXPIRY),
            "naive datetime is UTC"
        );
        assert_eq!(parse_expiry("2030-01-01T00:00:00Z"), Some(EXPIRY));
        assert_eq!(parse_expiry("2030-01-01T00:00:00.5Z"), Some(EXPIRY));
        assert_eq!(parse_expiry("1893456000"), Some(EXPIRY));
        assert_eq!(parse_expiry("next tuesday"), None);
        assert_eq!(parse_expiry(""), None);
    }

    #[test]
    fn generated_token_verifies_with_either_topic_key() {
        let token = generate_event_grid_token(ENDPOINT, KEY, EXPIRY).expect("mints");
        verify_event_grid_token(&token, &keys(&[OTHER_KEY, KEY]), PATH, BEFORE)
            .expect("second key");
        verify_event_grid_token(&token, &keys(&["not base64!", KEY]), PATH, BEFORE)
            .expect("bad key skipped");
    }

    #[test]
    fn tampered_or_foreign_token_is_bad_signature() {
        let tampered = PYTHON_TOKEN.replace("&s=rpuzy", "&s=Rpuzy");
        let err = verify_event_grid_token(&tampered, &keys(&[KEY]), PATH, BEFORE).unwrap_err();
        assert!(matches!(err, AuthError::BadSignature), "{err:?}");
        assert_eq!(err.status(), 401);

        let later = PYTHON_TOKEN.replace("2030-01-01", "2031-01-01");
        let err = verify_event_grid_token(&later, &keys(&[KEY]), PATH, BEFORE).unwrap_err();
        assert!(matches!(err, AuthError::BadSignature), "{err:?}");

        let err =
            verify_event_grid_token(PYTHON_TOKEN, &keys(&[OTHER_KEY]), PATH, BEFORE).unwrap_err();
        assert!(matches!(err, AuthError::BadSignature), "{err:?}");
        let err = verify_event_grid_token(PYTHON_TOKEN, &[], PATH, BEFORE).unwrap_err();
        assert!(matches!(err, AuthError::BadSignature), "{err:?}");
    }

    #[test]
    fn expired_token_is_expired() {
        let err = verify_event_grid_token(PYTHON_TOKEN, &keys(&[KEY]), PATH, EXPIRY).unwrap_err();
        assert!(
            matches!(
                err,
                AuthError::Expired {
                    expired_at: EXPIRY,
                    now: EXPIRY
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.status(), 401);
    }

    #[test]
    fn token_for_another_topic_is_wrong_scope() {
        let err = verify_event_grid_token(
            PYTHON_TOKEN,
            &keys(&[KEY]),
            "/topics/payments/api/events",
            BEFORE,
        )
        .unwrap_err();
        assert!(matches!(err, AuthError::WrongScope { .. }), "{err:?}");
        assert_eq!(err.status(), 401);
        let err = verify_event_grid_token(
            PYTHON_TOKEN,
            &keys(&[KEY]),
            "/topics/orders2/api/events",
            BEFORE,
        )
        .unwrap_err();
        assert!(matches!(err, AuthError::WrongScope { .. }), "{err:?}");
    }

    #[test]
    fn token_minted_for_another_host_and_port_still_covers_the_path() {
        let token = generate_event_grid_token(
            "https://Sluice.Example.com:8443/Topics/Orders/api/events",
            KEY,
            EXPIRY,
        )
        .expect("mints");
        verify_event_grid_token(
            &token,
            &keys(&[KEY]),
            "/topics/orders/api/events?api-version=2018-01-01",
            BEFORE,
        )
        .expect("path prefix");
    }

    #[test]
    fn malformed_tokens_are_malformed_and_empty_is_missing() {
        let err = verify_event_grid_token("  ", &keys(&[KEY]), PATH, BEFORE).unwrap_err();
        assert!(matches!(err, AuthError::Missing), "{err:?}");
        assert_eq!(err.status(), 401);

        let unsigned = PYTHON_TOKEN.split("&s=").next().unwrap_or_default();
        let s = PYTHON_TOKEN.split("&s=").nth(1).unwrap_or_default();
        for bad in [
            unsigned.to_owned(),
            format!("s={s}&{unsigned}"),
            format!("{PYTHON_TOKEN}&x=1"),
            format!("e=2030-01-01&s={s}"),
            PYTHON_TOKEN.replace("&e=2030-01-01", "&e=someday"),
        ] {
            let err = verify_event_grid_token(&bad, &keys(&[KEY]), PATH, BEFORE).unwrap_err();
            assert!(matches!(err, AuthError::Malformed(_)), "{bad}: {err:?}");
        }
    }

    #[test]
    fn topic_key_must_match_one_of_the_keys() {
        let topic_keys = keys(&[KEY, OTHER_KEY]);
        verify_topic_key(KEY, &topic_keys).expect("primary");
        verify_topic_key(&format!(" {OTHER_KEY} "), &topic_keys).expect("secondary, padded");

        let err = verify_topic_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", &topic_keys)
            .unwrap_err();
        assert!(matches!(err, AuthError::BadSignature), "{err:?}");
        assert!(!err.to_string().contains(KEY));
        let err = verify_topic_key("", &topic_keys).unwrap_err();
        assert!(matches!(err, AuthError::Missing), "{err:?}");
        assert_eq!(err.status(), 401);
    }

    #[test]
    fn generated_topic_keys_are_32_random_bytes_in_base64() {
        let (a, b) = (generate_topic_key(), generate_topic_key());
        assert_ne!(a, b);
        assert_eq!(BASE64.decode(&a).expect("base64").len(), 32);
        // A fresh key works end to end.
        let token = generate_event_grid_token(ENDPOINT, &a, EXPIRY).expect("mints");
        verify_event_grid_token(&token, &[a], PATH, BEFORE).expect("valid");
        assert!(generate_event_grid_token(ENDPOINT, "not base64!", EXPIRY).is_err());
    }
}
