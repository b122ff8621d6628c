//! Subscription rule filters with Azure Service Bus semantics.
//!
//! This module owns what a subscription rule's filter is and how it is
//! decided against a message: [`RuleFilter`] (true, false, correlation or
//! SQL), the [`CorrelationFilter`] fields, and the SQL-like language of
//! [`SqlFilter`] with its lexer, parser and evaluator. It knows nothing of
//! topics or storage: the broker hands it a [`FilterView`] of a message.
//!
//! # SQL filters
//!
//! The subset Service Bus defines for `SqlFilter`, keywords case-insensitive:
//!
//! - comparison `=`, `<>`, `!=`, `<`, `>`, `<=`, `>=`; `AND`, `OR`, `NOT`, parentheses;
//! - `x [NOT] IN (a, b, ...)`, `x [NOT] LIKE 'pat%' [ESCAPE '!']` (`%` any
//!   sequence, `_` one character), `x IS [NOT] NULL`, `EXISTS(x)`;
//! - literals: `'strings'` (with `''` for a quote), integers, decimals
//!   (`1.5`, `2e3`, optionally signed), `TRUE`, `FALSE`, `NULL`;
//! - names: `sys.MessageId`, `sys.CorrelationId`, `sys.Label` (or
//!   `sys.Subject`), `sys.To`, `sys.ReplyTo`, `sys.ContentType`,
//!   `sys.SessionId`, `sys.SequenceNumber`; user properties as `user.name`
//!   or a bare `name`; any name may be delimited as `[my prop]` or
//!   `"my prop"`. Names are case-insensitive; an unknown `sys.` name is an
//!   error when the filter is created, a missing user property is not.
//!
//! Arithmetic, functions and `@parameters` are rejected with a
//! [`FilterError`] naming the position. Expressions are at most
//! [`MAX_SQL_EXPRESSION_CHARS`] characters and nest at most
//! [`MAX_SQL_NESTING`] levels, so parsing and evaluation never recurse deeply.
//!
//! Values: user properties are text. A comparison is numeric when one side
//! is a number and the other is a number or text that reads as one, or when
//! both sides are property text that reads as numbers; otherwise it compares
//! strings, ordinally and case-sensitively. `TRUE`/`FALSE` equal the texts
//! `true`/`false` in any case. A comparison that cannot be made (a missing
//! property, text that is not a number against a number) is UNKNOWN, as in
//! SQL three-valued logic: `NOT` of UNKNOWN is UNKNOWN, and a filter matches
//! only when the whole expression is TRUE.
//!
//! # JSON form
//!
//! [`RuleFilter`] is internally tagged by `type`:
//!
//! ```json
//! {"type": "true"}
//! {"type": "false"}
//! {"type": "correlation", "correlationId": "abc", "subject": "orders", "properties": {"region": "eu"}}
//! {"type": "sql", "expression": "sys.Label = 'orders' AND region IN ('eu', 'uk')"}
//! ```
//!
//! A SQL filter is stored as its text and parsed again when read, so a
//! stored rule is checked again on load. Unset correlation fields and empty
//! `properties` are left out; unknown fields are rejected. On input, the
//! shorthand `{"sql": "<expression>"}` is accepted as well (it is written
//! back in the tagged form), and so are the Service Bus names `label` for a
//! correlation filter's `subject` and `sqlExpression` for `expression`.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Longest SQL filter expression accepted, in characters (the Service Bus limit).
pub const MAX_SQL_EXPRESSION_CHARS: usize = 1024;

/// Deepest nesting of parentheses and `NOT`s a SQL filter may have.
pub const MAX_SQL_NESTING: usize = 32;

/// The message as a filter sees it: system properties and user properties.
#[derive(Clone, Copy, Debug)]
pub struct FilterView<'a> {
    /// `sys.MessageId`.
    pub message_id: &'a str,
    /// `sys.CorrelationId`.
    pub correlation_id: Option<&'a str>,
    /// `sys.Label` (also `sys.Subject`): the Service Bus "Label".
    pub subject: Option<&'a str>,
    /// `sys.To`.
    pub to: Option<&'a str>,
    /// `sys.ReplyTo`.
    pub reply_to: Option<&'a str>,
    /// `sys.ContentType`.
    pub content_type: Option<&'a str>,
    /// `sys.SessionId`.
    pub session_id: Option<&'a str>,
    /// `sys.SequenceNumber`.
    pub sequence_number: u64,
    /// When the message was enqueued, in milliseconds since the Unix epoch
    /// (not reachable from SQL filters yet).
    pub enqueued_time_ms: i64,
    /// User (application) properties, as name and text; the first of equal names wins.
    pub user_properties: &'a [(String, String)],
}

/// A filter that matches when every field it sets equals the message's
/// (case-sensitive, as Service Bus); unset fields match anything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorrelationFilter {
    /// Must equal `sys.CorrelationId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Must equal `sys.MessageId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Must equal `sys.Label`; `label` is accepted as another name on input.
    #[serde(default, alias = "label", skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Must equal `sys.To`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Must equal `sys.ReplyTo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// Must equal `sys.ContentType`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Must equal `sys.SessionId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// User properties that must be present with exactly these values (names case-sensitive).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

impl CorrelationFilter {
    /// Whether the filter sets no field at all (Service Bus rejects such a filter).
    pub fn is_empty(&self) -> bool {
        self.correlation_id.is_none()
            && self.message_id.is_none()
            && self.subject.is_none()
            && self.to.is_none()
            && self.reply_to.is_none()
            && self.content_type.is_none()
            && self.session_id.is_none()
            && self.properties.is_empty()
    }

    /// Whether every field the filter sets equals the message's.
    pub fn matches(&self, m: &FilterView<'_>) -> bool {
        fn same(want: Option<&String>, have: Option<&str>) -> bool {
            want.is_none_or(|w| have == Some(w.as_str()))
        }
        same(self.correlation_id.as_ref(), m.correlation_id)
            && same(self.message_id.as_ref(), Some(m.message_id))
            && same(self.subject.as_ref(), m.subject)
            && same(self.to.as_ref(), m.to)
            && same(self.reply_to.as_ref(), m.reply_to)
            && same(self.content_type.as_ref(), m.content_type)
            && same(self.session_id.as_ref(), m.session_id)
            && self.properties.iter().all(|(name, value)| {
                m.user_properties
                    .iter()
                    .find(|(n, _)| n == name)
                    .is_some_and(|(_, v)| v == value)
            })
    }
}

/// A subscription rule's filter. See the module docs for its JSON form.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum RuleFilter {
    /// Matches every message (`{"type":"true"}`).
    True,
    /// Matches no message (`{"type":"false"}`).
    False,
    /// Matches on equal system and user properties.
    Correlation(CorrelationFilter),
    /// Matches when a SQL-like expression is TRUE.
    Sql(SqlFilter),
}

/// The tagged form [`RuleFilter`] is read from (it mirrors the enum).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum TaggedRuleFilter {
    True,
    False,
    Correlation(CorrelationFilter),
    Sql(SqlFilter),
}

impl<'de> Deserialize<'de> for RuleFilter {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = serde_json::Value::deserialize(deserializer)?;
        let Some(object) = value.as_object() else {
            return Err(D::Error::custom(
                "a rule filter is an object with a `type` (true, false, correlation or sql)",
            ));
        };
        if !object.contains_key("type") {
            return match object.get("sql") {
                Some(sql) if object.len() == 1 => {
                    let text = sql
                        .as_str()
                        .ok_or_else(|| D::Error::custom("`sql` must be a string"))?;
                    RuleFilter::sql(text).map_err(D::Error::custom)
                }
                _ => Err(D::Error::custom(
                    "a rule filter needs a `type` (true, false, correlation or sql), \
                     or is written {\"sql\": \"<expression>\"}",
                )),
            };
        }
        let tagged = TaggedRuleFilter::deserialize(value).map_err(D::Error::custom)?;
        Ok(match tagged {
            TaggedRuleFilter::True => RuleFilter::True,
            TaggedRuleFilter::False => RuleFilter::False,
            TaggedRuleFilter::Correlation(filter) => RuleFilter::Correlation(filter),
            TaggedRuleFilter::Sql(filter) => RuleFilter::Sql(filter),
        })
    }
}

impl RuleFilter {
    /// Parses a SQL filter expression into a rule filter.
    pub fn sql(expr: &str) -> Result<RuleFilter, FilterError> {
        SqlFilter::parse(expr).map(RuleFilter::Sql)
    }

    /// Whether the message passes the filter.
    pub fn matches(&self, m: &FilterView<'_>) -> bool {
        match self {
            RuleFilter::True => true,
            RuleFilter::False => false,
            RuleFilter::Correlation(filter) => filter.matches(m),
            RuleFilter::Sql(filter) => filter.matches(m),
        }
    }

    /// Checks what deserializing cannot: a correlation filter must set a field.
    /// (A SQL filter is checked when it is parsed.)
    pub fn validate(&self) -> Result<(), FilterError> {
        match self {
            RuleFilter::Correlation(filter) if filter.is_empty() => {
                Err(FilterError::EmptyCorrelation)
            }
            _ => Ok(()),
        }
    }
}

/// A parsed SQL filter expression. Two filters are equal when their texts are.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "SqlFilterText", into = "SqlFilterText")]
pub struct SqlFilter {
    expression: String,
    root: Expr,
}

/// The stored form of a [`SqlFilter`]: its text only.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlFilterText {
    #[serde(alias = "sqlExpression")]
    expression: String,
}

impl TryFrom<SqlFilterText> for SqlFilter {
    type Error = FilterError;
    fn try_from(text: SqlFilterText) -> Result<Self, Self::Error> {
        SqlFilter::parse(&text.expression)
    }
}

impl From<SqlFilter> for SqlFilterText {
    fn from(filter: SqlFilter) -> Self {
        SqlFilterText {
            expression: filter.expression,
        }
    }
}

impl PartialEq for SqlFilter {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression
    }
}

impl SqlFilter {
    /// Parses a SQL filter expression, reporting the first problem and where it is.
    pub fn parse(text: &str) -> Result<SqlFilter, FilterError> {
        let length = text.chars().count();
        if length > MAX_SQL_EXPRESSION_CHARS {
            return Err(FilterError::TooLong {
                length,
                max: MAX_SQL_EXPRESSION_CHARS,
            });
        }
        if text.trim().is_empty() {
            return Err(FilterError::EmptySql);
        }
        let tokens = lex(text)?;
        let mut parser = Parser {
            tokens,
            next: 0,
            depth: 0,
        };
        let root = parser.parse_or()?;
        if !matches!(parser.peek().kind, Kind::End) {
            return Err(parser.unexpected("`AND`, `OR` or the end of the expression"));
        }
        Ok(SqlFilter {
            expression: text.to_string(),
            root,
        })
    }

    /// The expression's text, as given.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// Whether the expression is TRUE for the message (FALSE and UNKNOWN do not match).
    pub fn matches(&self, m: &FilterView<'_>) -> bool {
        self.root.eval(m) == Some(true)
    }
}

/// Why a filter was rejected. SQL problems say what was found and where
/// (positions count characters from 1).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A correlation filter that sets no field.
    #[error("a correlation filter needs at least one property")]
    EmptyCorrelation,
    /// A SQL filter with no expression.
    #[error("SQL filter: the expression is empty")]
    EmptySql,
    /// A SQL filter longer than [`MAX_SQL_EXPRESSION_CHARS`].
    #[error("SQL filter: the expression has {length} characters, more than the {max} allowed")]
    TooLong {
        /// Characters in the expression.
        length: usize,
        /// The limit.
        max: usize,
    },
    /// A SQL filter nested deeper than [`MAX_SQL_NESTING`].
    #[error("SQL filter: more than {max} nested parentheses or NOTs at position {position}")]
    TooDeep {
        /// Where the limit was passed.
        position: usize,
        /// The limit.
        max: usize,
    },
    /// A token where another was expected.
    #[error("SQL filter: unexpected {found} at position {position}, expected {expected}")]
    Unexpected {
        /// What was found, e.g. "`)`" or "the end of the expression".
        found: String,
        /// Where it was found.
        position: usize,
        /// What would have been valid there.
        expected: &'static str,
    },
    /// Anything else wrong with a SQL filter: an unterminated string, an
    /// unknown function or system property, unsupported syntax.
    #[error("SQL filter: {problem} at position {position}")]
    Invalid {
        /// What is wrong.
        problem: String,
        /// Where.
        position: usize,
    },
}

fn invalid(problem: impl Into<String>, position: usize) -> FilterError {
    FilterError::Invalid {
        problem: problem.into(),
        position,
    }
}

// ---------------------------------------------------------------------------
// Syntax tree and evaluation

#[derive(Clone, Debug)]
enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Compare {
        left: Operand,
        op: CmpOp,
        right: Operand,
    },
    In {
        operand: Operand,
        list: Vec<Operand>,
        negated: bool,
    },
    Like {
        operand: Operand,
        pattern: Vec<PatternItem>,
        negated: bool,
    },
    IsNull {
        operand: Operand,
        negated: bool,
    },
    Exists(Property),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

impl CmpOp {
    fn text(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "<>",
            CmpOp::Lt => "<",
            CmpOp::Gt => ">",
            CmpOp::Le => "<=",
            CmpOp::Ge => ">=",
        }
    }

    fn holds(self, ordering: Ordering) -> bool {
        match self {
            CmpOp::Eq => ordering == Ordering::Equal,
            CmpOp::Ne => ordering != Ordering::Equal,
            CmpOp::Lt => ordering == Ordering::Less,
            CmpOp::Gt => ordering == Ordering::Greater,
            CmpOp::Le => ordering != Ordering::Greater,
            CmpOp::Ge => ordering != Ordering::Less,
        }
    }
}

#[derive(Clone, Debug)]
enum Operand {
    Property(Property),
    Literal(Literal),
}

#[derive(Clone, Debug)]
enum Literal {
    Str(String),
    Int(i64),
    Dec(f64),
    Bool(bool),
    Null,
}

#[derive(Clone, Debug)]
enum Property {
    System(SystemProperty),
    /// A user property; the name is lower-cased, as lookups ignore case.
    User(String),
}

#[derive(Clone, Copy, Debug)]
enum SystemProperty {
    MessageId,
    CorrelationId,
    Label,
    To,
    ReplyTo,
    ContentType,
    SessionId,
    SequenceNumber,
}

const SYSTEM_PROPERTIES: &str =
    "MessageId, CorrelationId, Label, Subject, To, ReplyTo, ContentType, SessionId, SequenceNumber";

impl SystemProperty {
    fn from_name(name: &str) -> Option<SystemProperty> {
        const ALL: [(&str, SystemProperty); 9] = [
            ("MessageId", SystemProperty::MessageId),
            ("CorrelationId", SystemProperty::CorrelationId),
            ("Label", SystemProperty::Label),
            ("Subject", SystemProperty::Label),
            ("To", SystemProperty::To),
            ("ReplyTo", SystemProperty::ReplyTo),
            ("ContentType", SystemProperty::ContentType),
            ("SessionId", SystemProperty::SessionId),
            ("SequenceNumber", SystemProperty::SequenceNumber),
        ];
        ALL.iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map(|(_, property)| *property)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PatternItem {
    Char(char),
    One,
    Any,
}

/// A value during evaluation.
#[derive(Clone, Copy, Debug)]
enum Value<'a> {
    /// A missing property or `NULL`.
    Missing,
    /// Property text: a number when it reads as one and the other side is numeric.
    Text(&'a str),
    /// A string literal.
    Str(&'a str),
    Int(i64),
    Dec(f64),
    Bool(bool),
}

/// Three-valued truth: `None` is UNKNOWN.
type Truth = Option<bool>;

impl Expr {
    fn eval(&self, m: &FilterView<'_>) -> Truth {
        match self {
            Expr::And(items) => {
                let mut result = Some(true);
                for item in items {
                    match item.eval(m) {
                        Some(false) => return Some(false),
                        Some(true) => {}
                        None => result = None,
                    }
                }
                result
            }
            Expr::Or(items) => {
                let mut result = Some(false);
                for item in items {
                    match item.eval(m) {
                        Some(true) => return Some(true),
                        Some(false) => {}
                        None => result = None,
                    }
                }
                result
            }
            Expr::Not(inner) => inner.eval(m).map(|t| !t),
            Expr::Compare { left, op, right } => compare(value(left, m), *op, value(right, m)),
            Expr::In {
                operand,
                list,
                negated,
            } => {
                let v = value(operand, m);
                let mut result = Some(false);
                for item in list {
                    match compare(v, CmpOp::Eq, value(item, m)) {
                        Some(true) => {
                            result = Some(true);
                            break;
                        }
                        Some(false) => {}
                        None => result = None,
                    }
                }
                result.map(|t| t != *negated)
            }
            Expr::Like {
                operand,
                pattern,
                negated,
            } => match value(operand, m) {
                Value::Text(s) | Value::Str(s) => Some(like(pattern, s) != *negated),
                _ => None,
            },
            Expr::IsNull { operand, negated } => {
                Some(matches!(value(operand, m), Value::Missing) != *negated)
            }
            Expr::Exists(property) => Some(!matches!(lookup(property, m), Value::Missing)),
        }
    }
}

fn value<'a>(operand: &'a Operand, m: &FilterView<'a>) -> Value<'a> {
    match operand {
        Operand::Property(property) => lookup(property, m),
        Operand::Literal(Literal::Str(s)) => Value::Str(s),
        Operand::Literal(Literal::Int(i)) => Value::Int(*i),
        Operand::Literal(Literal::Dec(d)) => Value::Dec(*d),
        Operand::Literal(Literal::Bool(b)) => Value::Bool(*b),
        Operand::Literal(Literal::Null) => Value::Missing,
    }
}

fn lookup<'a>(property: &Property, m: &FilterView<'a>) -> Value<'a> {
    let text = |s: Option<&'a str>| s.map_or(Value::Missing, Value::Text);
    match property {
        Property::System(SystemProperty::MessageId) => Value::Text(m.message_id),
        Property::System(SystemProperty::CorrelationId) => text(m.correlation_id),
        Property::System(SystemProperty::Label) => text(m.subject),
        Property::System(SystemProperty::To) => text(m.to),
        Property::System(SystemProperty::ReplyTo) => text(m.reply_to),
        Property::System(SystemProperty::ContentType) => text(m.content_type),
        Property::System(SystemProperty::SessionId) => text(m.session_id),
        Property::System(SystemProperty::SequenceNumber) => i64::try_from(m.sequence_number)
            .map_or(Value::Dec(m.sequence_number as f64), Value::Int),
        Property::User(lower) => text(
            m.user_properties
                .iter()
                .find(|(name, _)| same_name(name, lower))
                .map(|(_, v)| v.as_str()),
        ),
    }
}

/// Whether `name` equals the already lower-cased `lower`, ignoring case.
fn same_name(name: &str, lower: &str) -> bool {
    name.chars().flat_map(char::to_lowercase).eq(lower.chars())
}

fn compare(a: Value<'_>, op: CmpOp, b: Value<'_>) -> Truth {
    use Value::{Bool, Dec, Int, Missing, Str, Text};
    match (a, b) {
        (Missing, _) | (_, Missing) => None,
        (Bool(x), other) | (other, Bool(x)) => {
            let y = as_bool(other)?;
            match op {
                CmpOp::Eq => Some(x == y),
                CmpOp::Ne => Some(x != y),
                _ => None,
            }
        }
        (Int(_) | Dec(_), _) | (_, Int(_) | Dec(_)) => {
            Some(op.holds(compare_numbers(as_number(a)?, as_number(b)?)?))
        }
        (Text(x), Text(y)) => match (parse_number(x), parse_number(y)) {
            (Some(nx), Some(ny)) => Some(op.holds(compare_numbers(nx, ny)?)),
            _ => Some(op.holds(x.cmp(y))),
        },
        (Text(x) | Str(x), Text(y) | Str(y)) => Some(op.holds(x.cmp(y))),
    }
}

fn as_bool(v: Value<'_>) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(b),
        Value::Text(s) | Value::Str(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::Text(s) | Value::Str(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Number {
    Int(i64),
    Dec(f64),
}

fn as_number(v: Value<'_>) -> Option<Number> {
    match v {
        Value::Int(i) => Some(Number::Int(i)),
        Value::Dec(d) => Some(Number::Dec(d)),
        Value::Text(s) => parse_number(s),
        Value::Str(_) | Value::Bool(_) | Value::Missing => None,
    }
}

fn compare_numbers(a: Number, b: Number) -> Option<Ordering> {
    match (a, b) {
        (Number::Int(x), Number::Int(y)) => Some(x.cmp(&y)),
        (Number::Int(x), Number::Dec(y)) => (x as f64).partial_cmp(&y),
        (Number::Dec(x), Number::Int(y)) => x.partial_cmp(&(y as f64)),
        (Number::Dec(x), Number::Dec(y)) => x.partial_cmp(&y),
    }
}

/// Reads property text as a number: `[+-]digits[.digits][e[+-]digits]`
/// (or `.digits`), nothing else (no spaces, `NaN` or `inf`).
fn parse_number(s: &str) -> Option<Number> {
    let bytes = s.as_bytes();
    let mut i = usize::from(matches!(bytes.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let start = *i;
        while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let whole = digits(&mut i);
    let mut integral = true;
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        integral = false;
        if whole + digits(&mut i) == 0 {
            return None;
        }
    } else if whole == 0 {
        return None;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        integral = false;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return None;
        }
    }
    if i != bytes.len() {
        return None;
    }
    if integral && let Ok(n) = s.parse::<i64>() {
        return Some(Number::Int(n));
    }
    s.parse::<f64>()
        .ok()
        .filter(|d| d.is_finite())
        .map(Number::Dec)
}

/// `LIKE` matching: `%` any sequence, `_` one character, case-sensitive.
/// Backtracks only to the last `%`, so it is linear in practice and never recursive.
fn like(pattern: &[PatternItem], text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(PatternItem::Char(c)) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            Some(PatternItem::One) => {
                p += 1;
                t += 1;
            }
            Some(PatternItem::Any) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..]
        .iter()
        .all(|item| *item == PatternItem::Any)
}

// ---------------------------------------------------------------------------
// Lexer

#[derive(Clone, Debug)]
enum Kind {
    /// A regular identifier or keyword.
    Word(String),
    /// A `[delimited]` or `"quoted"` identifier.
    Name(String),
    Str(String),
    /// An unsigned integer literal, as written.
    Int(String),
    Dec(f64),
    Op(CmpOp),
    Dot,
    Comma,
    Open,
    Close,
    Minus,
    Plus,
    End,
}

#[derive(Clone, Debug)]
struct Token {
    kind: Kind,
    /// 1-based character position.
    position: usize,
}

impl Token {
    fn describe(&self) -> String {
        match &self.kind {
            Kind::Word(w) => format!("`{w}`"),
            Kind::Name(n) => format!("name `{n}`"),
            Kind::Str(s) => format!("string '{s}'"),
            Kind::Int(i) => format!("number `{i}`"),
            Kind::Dec(d) => format!("number `{d}`"),
            Kind::Op(op) => format!("`{}`", op.text()),
            Kind::Dot => "`.`".to_string(),
            Kind::Comma => "`,`".to_string(),
            Kind::Open => "`(`".to_string(),
            Kind::Close => "`)`".to_string(),
            Kind::Minus => "`-`".to_string(),
            Kind::Plus => "`+`".to_string(),
            Kind::End => "the end of the expression".to_string(),
        }
    }
}

fn is_word_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn lex(text: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let position = i + 1;
        let single = |kind| Token { kind, position };
        match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '\'' => {
                let (s, next) = quoted(&chars, i, '\'', "string")?;
                tokens.push(single(Kind::Str(s)));
                i = next;
                continue;
            }
            '"' => {
                let (s, next) = quoted(&chars, i, '"', "quoted name")?;
                if s.is_empty() {
                    return Err(invalid("empty property name", position));
                }
                tokens.push(single(Kind::Name(s)));
                i = next;
                continue;
            }
            '[' => {
                let (s, next) = quoted(&chars, i, ']', "bracketed name")?;
                if s.is_empty() {
                    return Err(invalid("empty property name", position));
                }
                tokens.push(single(Kind::Name(s)));
                i = next;
                continue;
            }
            c if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let (kind, next) = number(&chars, i)?;
                tokens.push(single(kind));
                i = next;
                continue;
            }
            c if is_word_start(c) => {
                let start = i;
                while i < chars.len() && is_word_char(chars[i]) {
                    i += 1;
                }
                tokens.push(single(Kind::Word(chars[start..i].iter().collect())));
                continue;
            }
            '=' => tokens.push(single(Kind::Op(CmpOp::Eq))),
            '<' => match chars.get(i + 1) {
                Some('=') => {
                    i += 1;
                    tokens.push(single(Kind::Op(CmpOp::Le)));
                }
                Some('>') => {
                    i += 1;
                    tokens.push(single(Kind::Op(CmpOp::Ne)));
                }
                _ => tokens.push(single(Kind::Op(CmpOp::Lt))),
            },
            '>' => {
                if chars.get(i + 1) == Some(&'=') {
                    i += 1;
                    tokens.push(single(Kind::Op(CmpOp::Ge)));
                } else {
                    tokens.push(single(Kind::Op(CmpOp::Gt)));
                }
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                i += 1;
                tokens.push(single(Kind::Op(CmpOp::Ne)));
            }
            '.' => tokens.push(single(Kind::Dot)),
            ',' => tokens.push(single(Kind::Comma)),
            '(' => tokens.push(single(Kind::Open)),
            ')' => tokens.push(single(Kind::Close)),
            '-' => tokens.push(single(Kind::Minus)),
            '+' => tokens.push(single(Kind::Plus)),
            '*' | '/' | '%' => {
                return Err(invalid(
                    format!("arithmetic (`{c}`) is not supported"),
                    position,
                ));
            }
            '@' => {
                return Err(invalid("parameters (`@name`) are not supported", position));
            }
            c => {
                return Err(invalid(format!("unexpected character `{c}`"), position));
            }
        }
        i += 1;
    }
    tokens.push(Token {
        kind: Kind::End,
        position: chars.len() + 1,
    });
    Ok(tokens)
}

/// Reads a quoted run starting at `chars[start]` up to `close`, where a
/// doubled `close` stands for itself. Returns the text and the index after it.
fn quoted(
    chars: &[char],
    start: usize,
    close: char,
    what: &str,
) -> Result<(String, usize), FilterError> {
    let mut out = String::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => {
                return Err(invalid(format!("unterminated {what}"), start + 1));
            }
            Some(&c) if c == close => {
                if chars.get(i + 1) == Some(&close) {
                    out.push(close);
                    i += 2;
                } else {
                    return Ok((out, i + 1));
                }
            }
            Some(&c) => {
                out.push(c);
                i += 1;
            }
        }
    }
}

/// Reads a numeric literal starting at `chars[start]`.
fn number(chars: &[char], start: usize) -> Result<(Kind, usize), FilterError> {
    let mut i = start;
    let digits = |i: &mut usize| {
        while chars.get(*i).is_some_and(char::is_ascii_digit) {
            *i += 1;
        }
    };
    digits(&mut i);
    let mut integral = true;
    if chars.get(i) == Some(&'.') {
        integral = false;
        i += 1;
        digits(&mut i);
    }
    if matches!(chars.get(i), Some('e' | 'E')) {
        let mut j = i + 1;
        if matches!(chars.get(j), Some('+' | '-')) {
            j += 1;
        }
        if chars.get(j).is_some_and(char::is_ascii_digit) {
            integral = false;
            i = j;
            digits(&mut i);
        }
    }
    if let Some(&c) = chars.get(i)
        && (is_word_char(c) || c == '.')
    {
        return Err(invalid(
            format!("unexpected character `{c}` after a number"),
            i + 1,
        ));
    }
    let text: String = chars[start..i].iter().collect();
    if integral {
        return Ok((Kind::Int(text), i));
    }
    match text.parse::<f64>() {
        Ok(d) if d.is_finite() => Ok((Kind::Dec(d), i)),
        _ => Err(invalid(
            format!("number `{text}` is out of range"),
            start + 1,
        )),
    }
}

// ---------------------------------------------------------------------------
// Parser

const KEYWORDS: [&str; 11] = [
    "AND", "OR", "NOT", "IN", "LIKE", "ESCAPE", "IS", "NULL", "EXISTS", "TRUE", "FALSE",
];

struct Parser {
    tokens: Vec<Token>,
    next: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        // The lexer always ends the list with `End`, and `advance` never passes it.
        &self.tokens[self.next.min(self.tokens.len() - 1)]
    }

    fn peek_second(&self) -> &Kind {
        self.tokens
            .get(self.next + 1)
            .map_or(&Kind::End, |t| &t.kind)
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if self.next + 1 < self.tokens.len() {
            self.next += 1;
        }
        token
    }

    fn at_keyword(&self, keyword: &str) -> bool {
        matches!(&self.peek().kind, Kind::Word(w) if w.eq_ignore_ascii_case(keyword))
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let found = self.at_keyword(keyword);
        if found {
            self.advance();
        }
        found
    }

    fn unexpected(&self, expected: &'static str) -> FilterError {
        let token = self.peek();
        FilterError::Unexpected {
            found: token.describe(),
            position: token.position,
            expected,
        }
    }

    fn expect_close(&mut self) -> Result<(), FilterError> {
        if matches!(self.peek().kind, Kind::Close) {
            self.advance();
            Ok(())
        } else {
            Err(self.unexpected("`)`"))
        }
    }

    fn nested<T>(
        &mut self,
        position: usize,
        parse: impl FnOnce(&mut Self) -> Result<T, FilterError>,
    ) -> Result<T, FilterError> {
        if self.depth >= MAX_SQL_NESTING {
            return Err(FilterError::TooDeep {
                position,
                max: MAX_SQL_NESTING,
            });
        }
        self.depth += 1;
        let result = parse(self);
        self.depth -= 1;
        result
    }

    fn parse_or(&mut self) -> Result<Expr, FilterError> {
        let mut items = vec![self.parse_and()?];
        while self.eat_keyword("OR") {
            items.push(self.parse_and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn parse_and(&mut self) -> Result<Expr, FilterError> {
        let mut items = vec![self.parse_not()?];
        while self.eat_keyword("AND") {
            items.push(self.parse_not()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn parse_not(&mut self) -> Result<Expr, FilterError> {
        if self.at_keyword("NOT") {
            let position = self.advance().position;
            let inner = self.nested(position, Self::parse_not)?;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.parse_predicate()
    }

    fn parse_predicate(&mut self) -> Result<Expr, FilterError> {
        if matches!(self.peek().kind, Kind::Open) {
            let position = self.advance().position;
            return self.nested(position, |p| {
                let inner = p.parse_or()?;
                p.expect_close()?;
                Ok(inner)
            });
        }
        if self.at_keyword("EXISTS") {
            self.advance();
            if !matches!(self.peek().kind, Kind::Open) {
                return Err(self.unexpected("`(` after EXISTS"));
            }
            self.advance();
            let position = self.peek().position;
            let Operand::Property(property) = self.parse_operand("a property name")? else {
                return Err(invalid("EXISTS takes a property name", position));
            };
            self.expect_close()?;
            return Ok(Expr::Exists(property));
        }
        let operand = self.parse_operand("a property, a value, `(`, `NOT` or `EXISTS`")?;
        let token = self.peek().clone();
        match &token.kind {
            Kind::Op(op) => {
                self.advance();
                let right = self.parse_operand("a value or a property")?;
                check_comparison(&operand, *op, &right, token.position)?;
                Ok(Expr::Compare {
                    left: operand,
                    op: *op,
                    right,
                })
            }
            Kind::Word(w) if w.eq_ignore_ascii_case("IS") => {
                self.advance();
                let negated = self.eat_keyword("NOT");
                if !self.eat_keyword("NULL") {
                    return Err(self.unexpected(if negated {
                        "`NULL`"
                    } else {
                        "`NULL` or `NOT NULL`"
                    }));
                }
                Ok(Expr::IsNull { operand, negated })
            }
            Kind::Word(w) if w.eq_ignore_ascii_case("NOT") => {
                self.advance();
                if self.eat_keyword("IN") {
                    self.parse_in(operand, true)
                } else if self.eat_keyword("LIKE") {
                    self.parse_like(operand, true)
                } else {
                    Err(self.unexpected("`IN` or `LIKE` after NOT"))
                }
            }
            Kind::Word(w) if w.eq_ignore_ascii_case("IN") => {
                self.advance();
                self.parse_in(operand, false)
            }
            Kind::Word(w) if w.eq_ignore_ascii_case("LIKE") => {
                self.advance();
                self.parse_like(operand, false)
            }
            _ => Err(self.unexpected("a comparison, `IN`, `LIKE` or `IS`")),
        }
    }

    fn parse_in(&mut self, operand: Operand, negated: bool) -> Result<Expr, FilterError> {
        if !matches!(self.peek().kind, Kind::Open) {
            return Err(self.unexpected("`(` after IN"));
        }
        self.advance();
        let mut list = Vec::new();
        loop {
            let position = self.peek().position;
            let item = self.parse_operand("a value")?;
            if matches!(item, Operand::Literal(Literal::Null)) {
                return Err(invalid("NULL cannot be in an IN list", position));
            }
            list.push(item);
            match self.peek().kind {
                Kind::Comma => {
                    self.advance();
                }
                Kind::Close => {
                    self.advance();
                    break;
                }
                _ => return Err(self.unexpected("`,` or `)`")),
            }
        }
        Ok(Expr::In {
            operand,
            list,
            negated,
        })
    }

    fn parse_like(&mut self, operand: Operand, negated: bool) -> Result<Expr, FilterError> {
        let Kind::Str(pattern) = self.peek().kind.clone() else {
            return Err(self.unexpected("a quoted pattern after LIKE"));
        };
        let pattern_position = self.advance().position;
        let mut escape = None;
        if self.at_keyword("ESCAPE") {
            self.advance();
            let token = self.peek().clone();
            let Kind::Str(text) = &token.kind else {
                return Err(self.unexpected("a quoted character after ESCAPE"));
            };
            let mut chars = text.chars();
            let (Some(c), None) = (chars.next(), chars.next()) else {
                return Err(invalid(
                    "ESCAPE takes exactly one character",
                    token.position,
                ));
            };
            escape = Some(c);
            self.advance();
        }
        Ok(Expr::Like {
            operand,
            pattern: compile_pattern(&pattern, escape, pattern_position)?,
            negated,
        })
    }

    fn parse_operand(&mut self, expected: &'static str) -> Result<Operand, FilterError> {
        let token = self.peek().clone();
        let literal = |l| Ok(Operand::Literal(l));
        match &token.kind {
            Kind::Str(s) => {
                self.advance();
                literal(Literal::Str(s.clone()))
            }
            Kind::Int(_) | Kind::Dec(_) => {
                self.advance();
                literal(number_literal(&token, false)?)
            }
            Kind::Minus | Kind::Plus => {
                self.advance();
                let number = self.peek().clone();
                if !matches!(number.kind, Kind::Int(_) | Kind::Dec(_)) {
                    return Err(invalid(
                        "arithmetic is not supported: a sign must be followed by a number",
                        token.position,
                    ));
                }
                self.advance();
                literal(number_literal(&number, matches!(token.kind, Kind::Minus))?)
            }
            Kind::Name(name) => {
                self.advance();
                Ok(Operand::Property(Property::User(lower(name))))
            }
            Kind::Word(word) => {
                if word.eq_ignore_ascii_case("TRUE") {
                    self.advance();
                    return literal(Literal::Bool(true));
                }
                if word.eq_ignore_ascii_case("FALSE") {
                    self.advance();
                    return literal(Literal::Bool(false));
                }
                if word.eq_ignore_ascii_case("NULL") {
                    self.advance();
                    return literal(Literal::Null);
                }
                if KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word)) {
                    return Err(self.unexpected(expected));
                }
                match self.peek_second() {
                    Kind::Open => {
                        return Err(invalid(
                            format!("unknown function `{word}` (only EXISTS(...) is supported)"),
                            token.position,
                        ));
                    }
                    Kind::Dot => {}
                    _ => {
                        self.advance();
                        return Ok(Operand::Property(Property::User(lower(word))));
                    }
                }
                let system = word.eq_ignore_ascii_case("sys");
                if !system && !word.eq_ignore_ascii_case("user") {
                    return Err(invalid(
                        format!(
                            "unknown scope `{word}` (use `sys.` or `user.`, or bracket a name containing dots: [a.b])"
                        ),
                        token.position,
                    ));
                }
                self.advance();
                self.advance();
                let name_token = self.peek().clone();
                let name = match &name_token.kind {
                    Kind::Word(n) | Kind::Name(n) => n.clone(),
                    _ => return Err(self.unexpected("a property name after the scope")),
                };
                self.advance();
                if matches!(self.peek().kind, Kind::Open) {
                    return Err(invalid(
                        format!("unknown function `{word}.{name}`"),
                        token.position,
                    ));
                }
                if !system {
                    return Ok(Operand::Property(Property::User(lower(&name))));
                }
                SystemProperty::from_name(&name)
                    .map(|p| Operand::Property(Property::System(p)))
                    .ok_or_else(|| {
                        invalid(
                            format!(
                                "unknown system property `sys.{name}` (known: {SYSTEM_PROPERTIES})"
                            ),
                            token.position,
                        )
                    })
            }
            _ => Err(self.unexpected(expected)),
        }
    }
}

fn lower(name: &str) -> String {
    name.chars().flat_map(char::to_lowercase).collect()
}

fn number_literal(token: &Token, negative: bool) -> Result<Literal, FilterError> {
    match &token.kind {
        Kind::Int(digits) => {
            let text = if negative {
                format!("-{digits}")
            } else {
                digits.clone()
            };
            text.parse::<i64>().map(Literal::Int).map_err(|_| {
                invalid(
                    format!("integer `{text}` does not fit in 64 bits"),
                    token.position,
                )
            })
        }
        Kind::Dec(d) => Ok(Literal::Dec(if negative { -d } else { *d })),
        _ => Err(invalid("expected a number", token.position)),
    }
}

fn check_comparison(
    left: &Operand,
    op: CmpOp,
    right: &Operand,
    position: usize,
) -> Result<(), FilterError> {
    let is = |o: &Operand, f: fn(&Literal) -> bool| matches!(o, Operand::Literal(l) if f(l));
    let null = |l: &Literal| matches!(l, Literal::Null);
    let boolean = |l: &Literal| matches!(l, Literal::Bool(_));
    if is(left, null) || is(right, null) {
        return Err(invalid(
            format!(
                "`{}` with NULL is never true; use IS NULL or IS NOT NULL",
                op.text()
            ),
            position,
        ));
    }
    if !matches!(op, CmpOp::Eq | CmpOp::Ne) && (is(left, boolean) || is(right, boolean)) {
        return Err(invalid(
            format!(
                "`{}` cannot order TRUE or FALSE; compare them with `=`, `<>` or `!=`",
                op.text()
            ),
            position,
        ));
    }
    Ok(())
}

fn compile_pattern(
    pattern: &str,
    escape: Option<char>,
    position: usize,
) -> Result<Vec<PatternItem>, FilterError> {
    let mut items = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        let item = if Some(c) == escape {
            match chars.next() {
                Some(escaped) => PatternItem::Char(escaped),
                None => {
                    return Err(invalid(
                        "the LIKE pattern ends with its escape character",
                        position,
                    ));
                }
            }
        } else {
            match c {
                '%' => PatternItem::Any,
                '_' => PatternItem::One,
                c => PatternItem::Char(c),
            }
        };
        // `%%` means the same as `%`; collapsing keeps matching cheap.
        if !(item == PatternItem::Any && items.last() == Some(&PatternItem::Any)) {
            items.push(item);
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// User properties as a test row writes them.
    type Pairs = &'static [(&'static str, &'static str)];
    /// (expression, user properties, whether it matches).
    type SqlCase = (&'static str, Pairs, bool);

    fn props(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A message with a few system properties set and the given user properties.
    fn view(user_properties: &[(String, String)]) -> FilterView<'_> {
        FilterView {
            message_id: "msg-1",
            correlation_id: Some("corr-1"),
            subject: Some("orders.created"),
            to: Some("billing"),
            reply_to: None,
            content_type: Some("application/json"),
            session_id: None,
            sequence_number: 42,
            enqueued_time_ms: 1_700_000_000_000,
            user_properties,
        }
    }

    fn check_sql_cases(cases: &[SqlCase]) {
        for (expression, pairs, expected) in cases {
            let filter = SqlFilter::parse(expression)
                .unwrap_or_else(|e| panic!("`{expression}` should parse: {e}"));
            let properties = props(pairs);
            assert_eq!(
                filter.matches(&view(&properties)),
                *expected,
                "`{expression}` with {pairs:?}"
            );
        }
    }

    #[test]
    fn sql_filter_cases_match_as_service_bus_does() {
        let cases: &[SqlCase] = &[
            // System properties, case-insensitive names, Subject = Label.
            ("sys.Label = 'orders.created'", &[], true),
            ("sys.label = 'orders.created'", &[], true),
            ("SYS.LABEL = 'orders.created'", &[], true),
            ("sys.Subject = 'orders.created'", &[], true),
            ("sys.Label = 'Orders.Created'", &[], false),
            ("sys.MessageId = 'msg-1'", &[], true),
            ("sys.CorrelationId = 'corr-1'", &[], true),
            ("sys.To = 'billing'", &[], true),
            ("sys.ContentType = 'application/json'", &[], true),
            ("sys.SequenceNumber = 42", &[], true),
            (
                "sys.SequenceNumber >= 40 AND sys.SequenceNumber < 43",
                &[],
                true,
            ),
            ("sys.SequenceNumber > 42", &[], false),
            ("sys.[Label] = 'orders.created'", &[], true),
            // Comparison operators on user properties.
            ("color = 'red'", &[("color", "red")], true),
            ("color = 'red'", &[("color", "blue")], false),
            ("color <> 'red'", &[("color", "blue")], true),
            ("color != 'red'", &[("color", "red")], false),
            ("color = 'RED'", &[("color", "red")], false),
            ("color < 'b'", &[("color", "a")], true),
            ("color > 'b'", &[("color", "a")], false),
            ("color <= 'a'", &[("color", "a")], true),
            ("color >= 'b'", &[("color", "a")], false),
            // Scopes, brackets, quoted names, case-insensitive names.
            ("user.color = 'red'", &[("color", "red")], true),
            ("USER.Color = 'red'", &[("color", "red")], true),
            ("Color = 'red'", &[("COLOR", "red")], true),
            ("[my prop] = 'x'", &[("my prop", "x")], true),
            ("user.[my prop] = 'x'", &[("my prop", "x")], true),
            ("\"my prop\" = 'x'", &[("My Prop", "x")], true),
            ("[a.b] = 'x'", &[("a.b", "x")], true),
            ("[a]]b] = 'x'", &[("a]b", "x")], true),
            ("[and] = 'x'", &[("and", "x")], true),
            ("user.null = 'x'", &[("null", "x")], true),
            ("sys = 'x'", &[("sys", "x")], true),
            ("größe = 'L'", &[("GRÖSSE", "L")], false),
            ("größe = 'L'", &[("Größe", "L")], true),
            ("sys.To = user.dest", &[("dest", "billing")], true),
            ("sys.To = dest", &[("dest", "finance")], false),
            // Numbers: numeric when both sides read as numbers.
            ("quantity > 10", &[("quantity", "11")], true),
            ("quantity > 10", &[("quantity", "9")], false),
            ("quantity = 5", &[("quantity", "5.0")], true),
            ("quantity = 5", &[("quantity", "05")], true),
            ("quantity = 5.5", &[("quantity", "5.5")], true),
            ("quantity < 1e3", &[("quantity", "999")], true),
            ("quantity > -3", &[("quantity", "-2")], true),
            ("quantity = +3", &[("quantity", "3")], true),
            ("quantity >= .5", &[("quantity", "0.5")], true),
            ("quantity = 10", &[("quantity", "ten")], false),
            ("NOT (quantity = 10)", &[("quantity", "ten")], false),
            ("quantity = '5'", &[("quantity", "5")], true),
            ("quantity = '5'", &[("quantity", "5.0")], false),
            ("a > b", &[("a", "10"), ("b", "9")], true),
            ("a > b", &[("a", "apple"), ("b", "banana")], false),
            (
                "big = 9223372036854775807",
                &[("big", "9223372036854775807")],
                true,
            ),
            ("big > -9223372036854775808", &[("big", "-1e18")], true),
            ("big < -9223372036854775808", &[("big", "-1e19")], true),
            ("1 = 1", &[], true),
            ("1 = 0", &[], false),
            ("'5' = 5", &[], false),
            ("NOT ('5' = 5)", &[], false),
            // Booleans.
            ("flag = TRUE", &[("flag", "true")], true),
            ("flag = true", &[("flag", "True")], true),
            ("flag = TRUE", &[("flag", "false")], false),
            ("flag <> FALSE", &[("flag", "TRUE")], true),
            ("flag = TRUE", &[("flag", "yes")], false),
            ("NOT (flag = TRUE)", &[("flag", "yes")], false),
            ("TRUE = TRUE", &[], true),
            ("'true' = TRUE", &[], true),
            // AND, OR, NOT and precedence.
            ("a = '1' AND b = '2'", &[("a", "1"), ("b", "2")], true),
            ("a = '1' AND b = '2'", &[("a", "1"), ("b", "3")], false),
            ("a = '1' OR b = '2'", &[("a", "0"), ("b", "2")], true),
            ("a = '1' or b = '2'", &[("a", "0"), ("b", "0")], false),
            (
                "a = '1' OR a = '2' AND b = '9'",
                &[("a", "1"), ("b", "0")],
                true,
            ),
            (
                "(a = '1' OR a = '2') AND b = '9'",
                &[("a", "1"), ("b", "0")],
                false,
            ),
            ("NOT a = '1'", &[("a", "2")], true),
            ("NOT NOT a = '1'", &[("a", "1")], true),
            // NOT binds tighter than AND: (NOT a = '1') AND b = '2'.
            ("NOT a = '1' AND b = '2'", &[("a", "2"), ("b", "3")], false),
            ("NOT a = '1' AND b = '2'", &[("a", "2"), ("b", "2")], true),
            ("not (a = '1' and b = '2')", &[("a", "1"), ("b", "3")], true),
            // IN and NOT IN.
            ("color IN ('red', 'green')", &[("color", "green")], true),
            ("color IN ('red', 'green')", &[("color", "blue")], false),
            ("color NOT IN ('red', 'green')", &[("color", "blue")], true),
            ("color not in ('red', 'green')", &[("color", "red")], false),
            ("n IN (1, 2, 3)", &[("n", "2")], true),
            ("n IN (1, 2, 3)", &[("n", "2.0")], true),
            ("n IN ('x', 3)", &[("n", "3")], true),
            ("sys.To IN ('billing', dest)", &[], true),
            // LIKE and NOT LIKE.
            ("sys.Label LIKE 'orders.%'", &[], true),
            ("sys.Label LIKE 'orders._reated'", &[], true),
            ("sys.Label LIKE '%created'", &[], true),
            ("sys.Label LIKE '%.%'", &[], true),
            ("sys.Label LIKE 'orders'", &[], false),
            ("sys.Label LIKE 'ORDERS%'", &[], false),
            ("sys.Label NOT LIKE 'invoices%'", &[], true),
            ("code LIKE '100!%' ESCAPE '!'", &[("code", "100%")], true),
            ("code LIKE '100!%' ESCAPE '!'", &[("code", "1000")], false),
            ("code LIKE '100%'", &[("code", "1000")], true),
            ("code like 'a\\_%' escape '\\'", &[("code", "a_b")], true),
            ("code LIKE 'it''s%'", &[("code", "it's here")], true),
            ("sys.SequenceNumber LIKE '4%'", &[], false),
            // IS NULL and EXISTS.
            ("color IS NULL", &[], true),
            ("color IS NULL", &[("color", "red")], false),
            ("color IS NOT NULL", &[("color", "")], true),
            ("sys.ReplyTo IS NULL", &[], true),
            ("sys.To is not null", &[], true),
            ("EXISTS(color)", &[("color", "red")], true),
            ("EXISTS (user.color)", &[], false),
            ("NOT EXISTS(color)", &[], true),
            ("exists([my prop])", &[("MY PROP", "1")], true),
            ("EXISTS(sys.SessionId)", &[], false),
            ("EXISTS(sys.Label)", &[], true),
            // Strings with quotes, whitespace, duplicates (the first wins).
            ("name = 'O''Brien'", &[("name", "O'Brien")], true),
            ("name = ''", &[("name", "")], true),
            ("  a\t=\n'1'  ", &[("a", "1")], true),
            ("a = '1'", &[("a", "1"), ("A", "2")], true),
            ("a = '2'", &[("a", "1"), ("A", "2")], false),
        ];
        check_sql_cases(cases);
    }

    #[test]
    fn sql_filter_treats_missing_properties_as_unknown() {
        let cases: &[SqlCase] = &[
            ("x = 1", &[], false),
            ("x <> 1", &[], false),
            ("NOT (x = 1)", &[], false),
            ("NOT (x <> 1)", &[], false),
            ("x IN (1, 2)", &[], false),
            ("x NOT IN (1, 2)", &[], false),
            ("x LIKE '%'", &[], false),
            ("x NOT LIKE 'a%'", &[], false),
            ("sys.SessionId = 's'", &[], false),
            ("NOT (sys.SessionId = 's')", &[], false),
            // UNKNOWN AND FALSE is FALSE, so its NOT is TRUE.
            ("NOT (x = 1 AND y = 1)", &[("y", "2")], true),
            // UNKNOWN AND TRUE is UNKNOWN.
            ("NOT (x = 1 AND y = 1)", &[("y", "1")], false),
            // UNKNOWN OR TRUE is TRUE.
            ("x = 1 OR y = 1", &[("y", "1")], true),
            // UNKNOWN OR FALSE is UNKNOWN.
            ("NOT (x = 1 OR y = 1)", &[("y", "2")], false),
            ("x IS NULL OR x = 1", &[], true),
            ("x IS NOT NULL AND x = 1", &[], false),
            ("NOT EXISTS(x) OR x > 5", &[], true),
            // An IN list with no match but an unknown element is UNKNOWN.
            ("NOT (n IN (1, y))", &[("n", "2")], false),
            ("NOT (n IN (2, y))", &[("n", "2")], false),
            ("n IN (2, y)", &[("n", "2")], true),
        ];
        check_sql_cases(cases);
    }

    #[test]
    fn sql_filter_rejects_malformed_expressions_saying_what_and_where() {
        let cases: &[(&str, &str)] = &[
            ("", "the expression is empty"),
            ("   ", "the expression is empty"),
            (
                "(a = 1 OR b = 2))",
                "unexpected `)` at position 17, expected `AND`, `OR`",
            ),
            (
                "a = (b = 1)",
                "unexpected `(` at position 5, expected a value or a property",
            ),
            ("a = ", "unexpected the end of the expression at position 5"),
            (
                "a =  )",
                "unexpected `)` at position 6, expected a value or a property",
            ),
            (
                "(a = 1",
                "unexpected the end of the expression at position 7, expected `)`",
            ),
            ("a = 'abc", "unterminated string at position 5"),
            ("[abc = 1", "unterminated bracketed name at position 1"),
            ("\"abc = 1", "unterminated quoted name at position 1"),
            ("[] = 1", "empty property name at position 1"),
            (
                "a = 1 b = 2",
                "unexpected `b` at position 7, expected `AND`, `OR` or the end",
            ),
            (
                "a = 1 AND",
                "unexpected the end of the expression at position 10",
            ),
            ("AND a = 1", "unexpected `AND` at position 1"),
            (
                "a",
                "unexpected the end of the expression at position 2, expected a comparison",
            ),
            (
                "a b",
                "unexpected `b` at position 3, expected a comparison, `IN`, `LIKE` or `IS`",
            ),
            ("a == 1", "unexpected `=` at position 4"),
            ("a = 1 NOT", "unexpected `NOT` at position 7"),
            (
                "a NOT = 1",
                "unexpected `=` at position 7, expected `IN` or `LIKE` after NOT",
            ),
            (
                "a IS 1",
                "unexpected number `1` at position 6, expected `NULL` or `NOT NULL`",
            ),
            ("a IS NOT 1", "expected `NULL`"),
            ("a IN 1", "expected `(` after IN"),
            ("a IN ()", "unexpected `)` at position 7, expected a value"),
            (
                "a IN (1,)",
                "unexpected `)` at position 9, expected a value",
            ),
            (
                "a IN (1 2)",
                "unexpected number `2` at position 9, expected `,` or `)`",
            ),
            (
                "a IN (1, NULL)",
                "NULL cannot be in an IN list at position 10",
            ),
            ("a LIKE b", "expected a quoted pattern after LIKE"),
            (
                "a LIKE 'x' ESCAPE '!!'",
                "ESCAPE takes exactly one character at position 19",
            ),
            ("a LIKE 'x' ESCAPE ''", "ESCAPE takes exactly one character"),
            (
                "a LIKE 'x!' ESCAPE '!'",
                "the LIKE pattern ends with its escape character at position 8",
            ),
            (
                "a LIKE 'x' ESCAPE",
                "expected a quoted character after ESCAPE",
            ),
            (
                "EXISTS a",
                "unexpected `a` at position 8, expected `(` after EXISTS",
            ),
            ("EXISTS('a')", "EXISTS takes a property name at position 8"),
            ("EXISTS(a", "expected `)`"),
            (
                "newid() = 'x'",
                "unknown function `newid` (only EXISTS(...) is supported) at position 1",
            ),
            ("property('a') = 'x'", "unknown function `property`"),
            ("sys.Foo = 1", "unknown system property `sys.Foo`"),
            (
                "sys.DeliveryCount > 1",
                "unknown system property `sys.DeliveryCount`",
            ),
            (
                "app.color = 'x'",
                "unknown scope `app` (use `sys.` or `user.`",
            ),
            (
                "sys. = 1",
                "unexpected `=` at position 6, expected a property name after the scope",
            ),
            ("a = 1 + 2", "unexpected `+` at position 7"),
            ("a = b - 1", "unexpected `-` at position 7"),
            (
                "a = 2 * 3",
                "arithmetic (`*`) is not supported at position 7",
            ),
            (
                "a % 2 = 0",
                "arithmetic (`%`) is not supported at position 3",
            ),
            (
                "a = -b",
                "a sign must be followed by a number at position 5",
            ),
            (
                "a = @p",
                "parameters (`@name`) are not supported at position 5",
            ),
            ("a = 1 ; DROP", "unexpected character `;` at position 7"),
            ("a ! 1", "unexpected character `!` at position 3"),
            (
                "a = 12abc",
                "unexpected character `a` after a number at position 7",
            ),
            (
                "a = 1.2.3",
                "unexpected character `.` after a number at position 8",
            ),
            ("a = 1e999", "number `1e999` is out of range at position 5"),
            (
                "a = 9223372036854775808",
                "does not fit in 64 bits at position 5",
            ),
            (
                "a = NULL",
                "`=` with NULL is never true; use IS NULL or IS NOT NULL at position 3",
            ),
            ("NULL <> a", "`<>` with NULL is never true"),
            ("a < TRUE", "`<` cannot order TRUE or FALSE"),
            (
                "TRUE",
                "unexpected the end of the expression at position 5, expected a comparison",
            ),
            (
                "()",
                "unexpected `)` at position 2, expected a property, a value",
            ),
            (
                "a = 'x' AND ()",
                "unexpected `)` at position 14, expected a property, a value",
            ),
        ];
        for (expression, fragment) in cases {
            match SqlFilter::parse(expression) {
                Ok(_) => panic!("`{expression}` should be rejected"),
                Err(e) => {
                    let message = e.to_string();
                    assert!(
                        message.starts_with("SQL filter: "),
                        "`{expression}`: {message}"
                    );
                    assert!(
                        message.contains(fragment),
                        "`{expression}`: `{message}` should contain `{fragment}`"
                    );
                }
            }
        }
    }

    #[test]
    fn sql_filter_bounds_nesting_and_length() {
        let nested = |n: usize| format!("{}a = 1{}", "(".repeat(n), ")".repeat(n));
        assert!(SqlFilter::parse(&nested(MAX_SQL_NESTING)).is_ok());
        for n in [MAX_SQL_NESTING + 1, 64, 500] {
            let error = SqlFilter::parse(&nested(n)).err();
            assert_eq!(
                error,
                Some(FilterError::TooDeep {
                    position: MAX_SQL_NESTING + 1,
                    max: MAX_SQL_NESTING
                }),
                "{n} parentheses"
            );
        }
        let nots = |n: usize| format!("{}a = 1", "NOT ".repeat(n));
        let properties = props(&[("a", "1")]);
        let even = SqlFilter::parse(&nots(MAX_SQL_NESTING)).map(|f| f.matches(&view(&properties)));
        assert_eq!(even, Ok(true));
        assert!(matches!(
            SqlFilter::parse(&nots(MAX_SQL_NESTING + 1)),
            Err(FilterError::TooDeep { .. })
        ));
        // Mixed: NOT ( NOT ( ... counts both.
        let mixed = format!("{}a = 1{}", "NOT (".repeat(20), ")".repeat(20));
        assert!(matches!(
            SqlFilter::parse(&mixed),
            Err(FilterError::TooDeep { .. })
        ));

        let pad = |len: usize| format!("a = '{}'", "x".repeat(len - 6));
        assert_eq!(
            pad(MAX_SQL_EXPRESSION_CHARS).chars().count(),
            MAX_SQL_EXPRESSION_CHARS
        );
        assert!(SqlFilter::parse(&pad(MAX_SQL_EXPRESSION_CHARS)).is_ok());
        let error = SqlFilter::parse(&pad(MAX_SQL_EXPRESSION_CHARS + 1)).err();
        assert_eq!(
            error.map(|e| e.to_string()),
            Some(
                "SQL filter: the expression has 1025 characters, more than the 1024 allowed"
                    .to_string()
            )
        );
        // The limit counts characters, not bytes.
        let wide = format!("a = '{}'", "é".repeat(MAX_SQL_EXPRESSION_CHARS - 6));
        assert!(SqlFilter::parse(&wide).is_ok());

        // A long flat AND chain stays flat: no deep recursion to parse, match or drop.
        let chain = vec!["a = 1"; 100].join(" AND ");
        assert!(chain.len() <= MAX_SQL_EXPRESSION_CHARS);
        let matched = SqlFilter::parse(&chain).map(|f| f.matches(&view(&properties)));
        assert_eq!(matched, Ok(true));
    }

    #[test]
    fn sql_filter_never_panics_on_arbitrary_input() {
        const PIECES: &[&str] = &[
            "a",
            "sys.",
            "user.",
            "Label",
            "[x",
            "]",
            "\"",
            "'",
            "''",
            "(",
            ")",
            "NOT",
            "AND",
            "OR",
            "IN",
            "LIKE",
            "ESCAPE",
            "IS",
            "NULL",
            "EXISTS",
            "TRUE",
            "=",
            "<",
            ">",
            "<>",
            "!",
            "!=",
            ",",
            ".",
            "-",
            "+",
            "1",
            "2.5",
            "1e",
            "9999999999999999999999",
            "%",
            "_",
            "é",
            "\u{0}",
            " ",
            "'%a_'",
            "sys.SequenceNumber",
            "newid",
        ];
        let mut seed: u64 = 0x5eed_cafe;
        let mut next = || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize
        };
        let properties = props(&[("a", "1"), ("x", "abc")]);
        let mut parsed = 0;
        for _ in 0..20_000 {
            let len = next() % 12;
            let text: String = (0..len)
                .map(|_| PIECES[next() % PIECES.len()])
                .collect::<Vec<_>>()
                .join(if next() % 2 == 0 { " " } else { "" });
            if let Ok(filter) = SqlFilter::parse(&text) {
                parsed += 1;
                let _ = filter.matches(&view(&properties));
            }
        }
        assert!(
            parsed > 0,
            "the generator should produce some valid expressions"
        );
    }

    #[test]
    fn like_patterns_match_percent_underscore_and_escapes() {
        // (pattern, escape, text, matches)
        let cases: &[(&str, Option<char>, &str, bool)] = &[
            ("", None, "", true),
            ("", None, "a", false),
            ("%", None, "", true),
            ("%", None, "anything", true),
            ("%%", None, "x", true),
            ("_", None, "", false),
            ("_", None, "é", true),
            ("__", None, "a", false),
            ("a%", None, "abc", true),
            ("a%", None, "bac", false),
            ("%c", None, "abc", true),
            ("%b%", None, "abc", true),
            ("%b%", None, "acd", false),
            ("a%b%c", None, "aXbYc", true),
            ("a%b%c", None, "aXcYb", false),
            ("%aab", None, "aaab", true),
            ("a_c", None, "abc", true),
            ("a_c", None, "abbc", false),
            ("%_%", None, "", false),
            ("%_%", None, "z", true),
            ("abc", None, "ABC", false),
            ("5!%", Some('!'), "5%", true),
            ("5!%", Some('!'), "50", false),
            ("!_x", Some('!'), "_x", true),
            ("!_x", Some('!'), "ax", false),
            ("a!!b", Some('!'), "a!b", true),
            ("%!%%", Some('!'), "100% sure", true),
            ("%!%%", Some('!'), "100 sure", false),
            ("a%%", Some('%'), "a%", true),
            ("a%%", Some('%'), "ab", false),
        ];
        for (pattern, escape, text, expected) in cases {
            let compiled = compile_pattern(pattern, *escape, 1)
                .unwrap_or_else(|e| panic!("pattern `{pattern}`: {e}"));
            assert_eq!(
                like(&compiled, text),
                *expected,
                "`{text}` LIKE `{pattern}` ESCAPE {escape:?}"
            );
        }
        // Pathological patterns stay fast (no exponential backtracking).
        let pattern = compile_pattern(&"%a".repeat(20), None, 1).unwrap_or_default();
        assert!(!like(&pattern, &"a".repeat(19)));
        assert!(like(&pattern, &"a".repeat(2000)));
    }

    #[test]
    fn property_text_reads_as_a_number_only_when_it_is_one() {
        let cases: &[(&str, Option<Number>)] = &[
            ("5", Some(Number::Int(5))),
            ("-5", Some(Number::Int(-5))),
            ("+5", Some(Number::Int(5))),
            ("007", Some(Number::Int(7))),
            ("5.", Some(Number::Dec(5.0))),
            (".5", Some(Number::Dec(0.5))),
            ("1.5e2", Some(Number::Dec(150.0))),
            ("1E-2", Some(Number::Dec(0.01))),
            ("99999999999999999999", Some(Number::Dec(1e20))),
            ("", None),
            ("-", None),
            (".", None),
            (" 5", None),
            ("5 ", None),
            ("5x", None),
            ("1e", None),
            ("0x10", None),
            ("NaN", None),
            ("inf", None),
            ("1e999", None),
            ("1_000", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_number(text), *expected, "`{text}`");
        }
    }

    #[test]
    fn correlation_filter_cases_match_every_set_field_exactly() {
        let with = |f: fn(&mut CorrelationFilter)| {
            let mut filter = CorrelationFilter::default();
            f(&mut filter);
            filter
        };
        let cases: &[(&str, CorrelationFilter, Pairs, bool)] = &[
            (
                "correlation id equal",
                with(|f| f.correlation_id = Some("corr-1".into())),
                &[],
                true,
            ),
            (
                "correlation id differs in case",
                with(|f| f.correlation_id = Some("CORR-1".into())),
                &[],
                false,
            ),
            (
                "message id",
                with(|f| f.message_id = Some("msg-1".into())),
                &[],
                true,
            ),
            (
                "subject",
                with(|f| f.subject = Some("orders.created".into())),
                &[],
                true,
            ),
            (
                "subject is not a prefix",
                with(|f| f.subject = Some("orders".into())),
                &[],
                false,
            ),
            ("to", with(|f| f.to = Some("billing".into())), &[], true),
            (
                "reply to unset on message",
                with(|f| f.reply_to = Some("x".into())),
                &[],
                false,
            ),
            (
                "content type",
                with(|f| f.content_type = Some("application/json".into())),
                &[],
                true,
            ),
            (
                "session id unset on message",
                with(|f| f.session_id = Some("s".into())),
                &[],
                false,
            ),
            (
                "every set field must match",
                with(|f| {
                    f.to = Some("billing".into());
                    f.subject = Some("other".into());
                }),
                &[],
                false,
            ),
            (
                "system and user fields together",
                with(|f| {
                    f.to = Some("billing".into());
                    f.properties.insert("region".into(), "eu".into());
                }),
                &[("region", "eu")],
                true,
            ),
            (
                "user property value differs",
                with(|f| {
                    f.properties.insert("region".into(), "eu".into());
                }),
                &[("region", "us")],
                false,
            ),
            (
                "user property missing",
                with(|f| {
                    f.properties.insert("region".into(), "eu".into());
                }),
                &[],
                false,
            ),
            (
                "user property names are case-sensitive",
                with(|f| {
                    f.properties.insert("region".into(), "eu".into());
                }),
                &[("Region", "eu")],
                false,
            ),
            (
                "user property values are compared as text",
                with(|f| {
                    f.properties.insert("n".into(), "5".into());
                }),
                &[("n", "5.0")],
                false,
            ),
            (
                "all user properties must match",
                with(|f| {
                    f.properties.insert("a".into(), "1".into());
                    f.properties.insert("b".into(), "2".into());
                }),
                &[("a", "1"), ("b", "2"), ("c", "3")],
                true,
            ),
            (
                "an empty value must be present and empty",
                with(|f| {
                    f.properties.insert("a".into(), String::new());
                }),
                &[("a", "")],
                true,
            ),
        ];
        for (name, filter, pairs, expected) in cases {
            let properties = props(pairs);
            let rule = RuleFilter::Correlation(filter.clone());
            assert!(rule.validate().is_ok(), "{name}");
            assert_eq!(rule.matches(&view(&properties)), *expected, "{name}");
        }
    }

    #[test]
    fn validate_rejects_an_empty_correlation_filter_only() {
        let empty = RuleFilter::Correlation(CorrelationFilter::default());
        assert_eq!(
            empty.validate().map_err(|e| e.to_string()),
            Err("a correlation filter needs at least one property".to_string())
        );
        for filter in [
            RuleFilter::True,
            RuleFilter::False,
            RuleFilter::Correlation(CorrelationFilter {
                to: Some(String::new()),
                ..CorrelationFilter::default()
            }),
        ] {
            assert!(filter.validate().is_ok(), "{filter:?}");
        }
        assert!(RuleFilter::sql("1 = 1").is_ok_and(|f| f.validate().is_ok()));
    }

    #[test]
    fn true_and_false_filters_match_all_or_nothing() {
        let none = props(&[]);
        assert!(RuleFilter::True.matches(&view(&none)));
        assert!(!RuleFilter::False.matches(&view(&none)));
    }

    #[test]
    fn rule_filters_round_trip_through_json_in_the_documented_shape() {
        let mut correlation = CorrelationFilter {
            correlation_id: Some("abc".into()),
            subject: Some("orders".into()),
            ..CorrelationFilter::default()
        };
        correlation.properties.insert("region".into(), "eu".into());
        let sql = RuleFilter::sql("sys.Label = 'orders' AND region IN ('eu', 'uk')");
        let Ok(sql) = sql else {
            panic!("the SQL filter should parse: {sql:?}");
        };
        let cases = [
            (RuleFilter::True, r#"{"type":"true"}"#),
            (RuleFilter::False, r#"{"type":"false"}"#),
            (
                RuleFilter::Correlation(correlation),
                r#"{"type":"correlation","correlationId":"abc","subject":"orders","properties":{"region":"eu"}}"#,
            ),
            (
                sql,
                r#"{"type":"sql","expression":"sys.Label = 'orders' AND region IN ('eu', 'uk')"}"#,
            ),
        ];
        let properties = props(&[("region", "uk")]);
        for (filter, json) in cases {
            assert_eq!(serde_json::to_string(&filter).ok().as_deref(), Some(json));
            let back: RuleFilter = serde_json::from_str(json)
                .unwrap_or_else(|e| panic!("`{json}` should deserialize: {e}"));
            assert_eq!(back, filter);
            let view = view(&properties);
            assert_eq!(back.matches(&view), filter.matches(&view), "{json}");
        }
    }

    #[test]
    fn deserializing_accepts_service_bus_names_and_rejects_bad_filters() {
        let accepted: &[(&str, &str)] = &[
            (
                r#"{"type":"correlation","label":"orders"}"#,
                "label is subject",
            ),
            (
                r#"{"type":"sql","sqlExpression":"a = 1"}"#,
                "sqlExpression is expression",
            ),
            (
                r#"{"type":"correlation","to":"x","correlationId":null}"#,
                "null means unset",
            ),
            (r#"{"sql":"sys.Label = 'x'"}"#, "the sql shorthand"),
        ];
        for (json, why) in accepted {
            let parsed: Result<RuleFilter, _> = serde_json::from_str(json);
            assert!(parsed.is_ok(), "{why}: {parsed:?}");
        }
        let label: Result<RuleFilter, _> =
            serde_json::from_str(r#"{"type":"correlation","label":"orders"}"#);
        assert!(
            matches!(label, Ok(RuleFilter::Correlation(c)) if c.subject.as_deref() == Some("orders"))
        );

        let rejected: &[(&str, &str)] = &[
            (
                r#"{"type":"sql","expression":"a = "}"#,
                "SQL filter: unexpected the end",
            ),
            (
                r#"{"type":"sql","expression":"sys.Nope = 1"}"#,
                "unknown system property",
            ),
            (r#"{"type":"sql"}"#, "missing field `expression`"),
            (
                r#"{"type":"sql","expression":"a = 1","extra":1}"#,
                "unknown field `extra`",
            ),
            (
                r#"{"type":"correlation","corelationId":"x"}"#,
                "unknown field `corelationId`",
            ),
            (r#"{"type":"maybe"}"#, "unknown variant `maybe`"),
            (r#"{"expression":"a = 1"}"#, "a rule filter needs a `type`"),
            (
                r#"{"sql":"a = "}"#,
                "SQL filter: unexpected the end of the expression",
            ),
            (r#"{"sql":1}"#, "`sql` must be a string"),
            (
                r#"{"sql":"a = 1","to":"x"}"#,
                "a rule filter needs a `type`",
            ),
            (r#""true""#, "a rule filter is an object"),
            (
                r#"{"type":"sql","expression":"a = 1"} x"#,
                "trailing characters",
            ),
        ];
        for (json, fragment) in rejected {
            match serde_json::from_str::<RuleFilter>(json) {
                Ok(filter) => panic!("`{json}` should be rejected, got {filter:?}"),
                Err(e) => assert!(
                    e.to_string().contains(fragment),
                    "`{json}`: `{e}` should contain `{fragment}`"
                ),
            }
        }
        let shorthand: Result<RuleFilter, _> = serde_json::from_str(r#"{"sql":"sys.Label = 'x'"}"#);
        assert_eq!(
            shorthand
                .ok()
                .and_then(|f| serde_json::to_string(&f).ok())
                .as_deref(),
            Some(r#"{"type":"sql","expression":"sys.Label = 'x'"}"#),
            "the shorthand is written back in the tagged form"
        );
        // An empty correlation filter deserializes; validate() is what rejects it.
        let empty: Result<RuleFilter, _> = serde_json::from_str(r#"{"type":"correlation"}"#);
        assert!(matches!(empty, Ok(ref f) if f.validate() == Err(FilterError::EmptyCorrelation)));
    }

    #[test]
    fn sql_filters_keep_their_text_and_compare_by_it() {
        let text = "  Color = 'red'  ";
        let a = SqlFilter::parse(text);
        let b = SqlFilter::parse(text);
        let c = SqlFilter::parse("color = 'red'");
        assert_eq!(a.as_ref().map(SqlFilter::expression), Ok(text));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
