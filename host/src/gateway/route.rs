//! Route templates of HTTP triggers: `orders`, `orders/{id}`,
//! `files/{*path}`, always served under `/api/`.
//!
//! Literal segments match case-insensitively (as Azure Functions routes
//! do); `{name}` matches any one segment; a last `{*name}` matches the rest
//! of the path, even nothing. When several functions' routes match a path,
//! the most specific wins: segment by segment, a literal beats a
//! parameter, which beats a catch-all. Two routes of the same shape with a
//! method in common are refused at deploy time.

use crate::functions::{HttpAuth, HttpTrigger};

/// The first segments under `/api/` that Sluice's management API owns; a
/// route may not start with one, so a function never shadows the host.
pub const RESERVED: &[&str] = &[
    "functions",
    "queues",
    "messages",
    "topics",
    "receive",
    "resubmit",
    "sessions",
    "servicebus",
    "policies",
    "traces",
];

/// Methods an HTTP trigger may name.
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Most segments of a route.
const MAX_SEGMENTS: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
    CatchAll,
}

impl Segment {
    /// Lower ranks are more specific.
    fn rank(&self) -> u8 {
        match self {
            Segment::Literal(_) => 0,
            Segment::Param => 1,
            Segment::CatchAll => 2,
        }
    }
}

/// A parsed route template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteTemplate {
    segments: Vec<Segment>,
}

impl RouteTemplate {
    /// Parses a route (with or without a leading `/` or `api/`).
    pub fn parse(route: &str) -> Result<RouteTemplate, String> {
        let trimmed = route.trim_matches('/');
        let trimmed = match trimmed.get(..4) {
            Some(prefix) if prefix.eq_ignore_ascii_case("api/") => &trimmed[4..],
            _ => trimmed,
        };
        if trimmed.is_empty() {
            return Err("the route is empty; give the path under /api/, e.g. `orders`".into());
        }
        let parts: Vec<&str> = trimmed.split('/').collect();
        if parts.len() > MAX_SEGMENTS {
            return Err(format!("a route has at most {MAX_SEGMENTS} segments"));
        }
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) => {
                    let (catch_all, name) = match name.strip_prefix('*') {
                        Some(rest) => (true, rest),
                        None => (false, name),
                    };
                    let name_ok = !name.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if !name_ok {
                        return Err(format!(
                            "`{part}`: a parameter is `{{name}}` or a last `{{*name}}`, the name letters, digits, `-` or `_`"
                        ));
                    }
                    if catch_all && !last {
                        return Err(format!("`{part}`: a catch-all must be the last segment"));
                    }
                    if catch_all {
                        Segment::CatchAll
                    } else {
                        Segment::Param
                    }
                }
                None => {
                    let ok = !part.is_empty()
                        && part.chars().all(|c| {
                            c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~')
                        });
                    if !ok {
                        return Err(format!(
                            "`{part}`: a literal segment is letters, digits, `-`, `_`, `.` or `~`"
                        ));
                    }
                    Segment::Literal(part.to_ascii_lowercase())
                }
            };
            segments.push(segment);
        }
        if let Some(Segment::Literal(first)) = segments.first()
            && RESERVED.contains(&first.as_str())
        {
            return Err(format!(
                "routes may not start with `{first}`: /api/{first} is Sluice's management API"
            ));
        }
        if !matches!(segments.first(), Some(Segment::Literal(_))) {
            return Err("a route starts with a literal segment, e.g. `orders/{id}`".into());
        }
        Ok(RouteTemplate { segments })
    }

    /// Whether the path segments after `/api` match.
    pub fn matches(&self, path: &[String]) -> bool {
        let mut at = 0;
        for segment in &self.segments {
            match segment {
                Segment::CatchAll => return true,
                Segment::Literal(literal) => match path.get(at) {
                    Some(part) if part.eq_ignore_ascii_case(literal) => {}
                    _ => return false,
                },
                Segment::Param => {
                    if path.get(at).is_none() {
                        return false;
                    }
                }
            }
            at += 1;
        }
        at == path.len()
    }

    /// Specificity for choosing among matching routes: smaller sorts first.
    pub fn specificity(&self) -> Vec<u8> {
        self.segments.iter().map(Segment::rank).collect()
    }

    /// Whether two routes have the same shape (they would match the same paths).
    pub fn same_shape(&self, other: &RouteTemplate) -> bool {
        self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|(a, b)| match (a, b) {
                    (Segment::Literal(x), Segment::Literal(y)) => x == y,
                    (a, b) => a.rank() == b.rank(),
                })
    }
}

/// Whether two method lists share a method (empty means every method).
pub fn methods_overlap(a: &[String], b: &[String]) -> bool {
    a.is_empty() || b.is_empty() || a.iter().any(|m| b.contains(m))
}

/// Whether keys fetched from `url` can be trusted: https, or plain http to
/// this machine (a local or test issuer), where no one sits in between.
fn trusted_url(url: &str) -> bool {
    if url.starts_with("https://") {
        return true;
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    };
    matches!(host, "localhost" | "[::1]")
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Checks an HTTP trigger as given: route, methods, auth and rate limit.
pub fn validate_trigger(trigger: &HttpTrigger) -> Result<(), String> {
    RouteTemplate::parse(&trigger.route).map_err(|e| format!("route `{}`: {e}", trigger.route))?;
    for method in &trigger.methods {
        if !METHODS.contains(&method.as_str()) {
            return Err(format!(
                "method `{method}` is not one of {}",
                METHODS.join(", ")
            ));
        }
    }
    if let HttpAuth::Jwt(jwt) = &trigger.auth {
        if !trusted_url(&jwt.issuer) {
            return Err(format!(
                "jwt.issuer `{}` must be the issuer's https:// URL, as in the tokens' `iss` (http:// only for a loopback issuer)",
                jwt.issuer
            ));
        }
        if let Some(uri) = &jwt.jwks_uri
            && !trusted_url(uri)
        {
            return Err(format!(
                "jwt.jwksUri `{uri}` must be an https:// URL (http:// only on loopback)"
            ));
        }
        if jwt.audiences.is_empty() {
            return Err(
                "jwt.audiences: name the audience(s) the tokens must be minted for (`aud`), or `*` to accept tokens for any audience of the issuer"
                    .into(),
            );
        }
    }
    if let Some(limit) = &trigger.rate_limit {
        if !(1..=1_000_000).contains(&limit.requests) {
            return Err(format!(
                "rateLimit.requests must be between 1 and 1000000, got {}",
                limit.requests
            ));
        }
        if !(1..=86_400).contains(&limit.per_seconds) {
            return Err(format!(
                "rateLimit.perSeconds must be between 1 and 86400, got {}",
                limit.per_seconds
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Vec<String> {
        p.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn literal_and_parameter_segments_match_one_segment_each() {
        let route = RouteTemplate::parse("orders/{id}").unwrap();
        assert!(route.matches(&path("orders/42")));
        assert!(route.matches(&path("ORDERS/42")));
        assert!(!route.matches(&path("orders")));
        assert!(!route.matches(&path("orders/42/lines")));
        assert!(!route.matches(&path("invoices/42")));
    }

    #[test]
    fn a_catch_all_matches_the_rest_even_nothing() {
        let route = RouteTemplate::parse("/api/files/{*path}").unwrap();
        assert!(route.matches(&path("files")));
        assert!(route.matches(&path("files/a/b/c.txt")));
        assert!(!route.matches(&path("filez/a")));
    }

    #[test]
    fn literals_are_more_specific_than_parameters() {
        let new = RouteTemplate::parse("orders/new").unwrap();
        let any = RouteTemplate::parse("orders/{id}").unwrap();
        let rest = RouteTemplate::parse("orders/{*rest}").unwrap();
        assert!(new.specificity() < any.specificity());
        assert!(any.specificity() < rest.specificity());
        assert!(!new.same_shape(&any));
        assert!(any.same_shape(&RouteTemplate::parse("Orders/{key}").unwrap()));
    }

    #[test]
    fn malformed_and_reserved_routes_are_refused_with_the_reason() {
        for (route, why) in [
            ("", "empty"),
            ("queues/{q}", "management API"),
            ("api/traces", "management API"),
            ("{id}", "starts with a literal"),
            ("files/{*rest}/more", "catch-all must be the last"),
            ("orders/{}", "a parameter is"),
            ("orders/a b", "literal segment"),
        ] {
            let error = RouteTemplate::parse(route).unwrap_err();
            assert!(error.contains(why), "{route}: {error}");
        }
    }

    #[test]
    fn jwt_keys_come_over_https_or_from_this_machine_and_an_audience_is_named() {
        use crate::functions::JwtAuth;
        let trigger = |issuer: &str, audiences: &[&str]| HttpTrigger {
            route: "orders".into(),
            methods: Vec::new(),
            auth: HttpAuth::Jwt(JwtAuth {
                issuer: issuer.into(),
                audiences: audiences.iter().map(|a| a.to_string()).collect(),
                jwks_uri: None,
            }),
            rate_limit: None,
        };
        assert!(validate_trigger(&trigger("https://login.example.com/", &["api://x"])).is_ok());
        assert!(validate_trigger(&trigger("http://127.0.0.1:8080", &["*"])).is_ok());
        assert!(validate_trigger(&trigger("http://localhost/", &["a"])).is_ok());
        let plain = validate_trigger(&trigger("http://login.example.com/", &["a"])).unwrap_err();
        assert!(plain.contains("https://"), "{plain}");
        let sneaky = validate_trigger(&trigger("http://127.0.0.1.evil.com/", &["a"])).unwrap_err();
        assert!(sneaky.contains("https://"), "{sneaky}");
        let any = validate_trigger(&trigger("https://login.example.com/", &[])).unwrap_err();
        assert!(any.contains("audiences"), "{any}");
    }

    #[test]
    fn methods_overlap_when_one_list_is_empty_or_they_share_one() {
        let post = vec!["POST".to_string()];
        let get = vec!["GET".to_string()];
        assert!(methods_overlap(&post, &[]));
        assert!(methods_overlap(&post, &post));
        assert!(!methods_overlap(&post, &get));
    }
}
