//! Event Grid advanced filters on event fields.
//!
//! Owns the ARM JSON shape of `filter.advancedFilters` entries (tagged by `operatorType`),
//! subscription-time validation against Azure's documented limits, and evaluation of one
//! filter (or a subscription's whole list, AND-ed) against a delivered event in either the
//! Event Grid or the CloudEvents 1.0 schema. Semantics follow
//! <https://learn.microsoft.com/azure/event-grid/event-filtering>; event-type and subject
//! filters are not handled here.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Most advanced filters one event subscription may hold.
pub const MAX_FILTERS: usize = 25;
/// Most filter values one subscription may hold, counted across all of its filters.
pub const MAX_VALUES: usize = 25;
/// Longest string filter value, in characters.
pub const MAX_STRING_LEN: usize = 512;
/// Most `.` separators in a key (Azure documents no depth limit; this bounds it).
pub const MAX_KEY_DOTS: usize = 10;

/// One advanced filter, in Azure's ARM JSON shape, e.g.
/// `{"operatorType":"NumberIn","key":"data.size","values":[1,2]}`.
///
/// `key` is a dotted path into the event (`subject`, `data.a.b`, a CloudEvents extension
/// attribute, ...). Multi-value operators take `values` (OR-ed; the `Not` variants require
/// none to hold), single-value ones take `value`, and the null checks take neither.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "operatorType", deny_unknown_fields)]
#[allow(
    missing_docs,
    reason = "the `key`, `value` and `values` fields are described once, above"
)]
pub enum AdvancedFilter {
    /// The number equals one of `values`.
    NumberIn { key: String, values: Vec<f64> },
    /// The number equals none of `values`.
    NumberNotIn { key: String, values: Vec<f64> },
    /// The number is below `value`.
    NumberLessThan { key: String, value: f64 },
    /// The number is above `value`.
    NumberGreaterThan { key: String, value: f64 },
    /// The number is at most `value`.
    NumberLessThanOrEquals { key: String, value: f64 },
    /// The number is at least `value`.
    NumberGreaterThanOrEquals { key: String, value: f64 },
    /// The number lies in one of the inclusive `[low, high]` ranges.
    NumberInRange { key: String, values: Vec<Vec<f64>> },
    /// The number lies in none of the inclusive `[low, high]` ranges.
    NumberNotInRange { key: String, values: Vec<Vec<f64>> },
    /// The boolean equals `value`.
    BoolEquals { key: String, value: bool },
    /// The string equals one of `values`, ignoring case.
    StringIn { key: String, values: Vec<String> },
    /// The string equals none of `values`, ignoring case.
    StringNotIn { key: String, values: Vec<String> },
    /// The string contains one of `values`, ignoring case.
    StringContains { key: String, values: Vec<String> },
    /// The string contains none of `values`, ignoring case.
    StringNotContains { key: String, values: Vec<String> },
    /// The string begins with one of `values`, ignoring case.
    StringBeginsWith { key: String, values: Vec<String> },
    /// The string begins with none of `values`, ignoring case.
    StringNotBeginsWith { key: String, values: Vec<String> },
    /// The string ends with one of `values`, ignoring case.
    StringEndsWith { key: String, values: Vec<String> },
    /// The string ends with none of `values`, ignoring case.
    StringNotEndsWith { key: String, values: Vec<String> },
    /// The key is absent or null.
    IsNullOrUndefined { key: String },
    /// The key is present and not null.
    IsNotNull { key: String },
}

/// String comparison of a string operator.
#[derive(Clone, Copy)]
enum StrOp {
    In,
    Contains,
    BeginsWith,
    EndsWith,
}

/// The positive test behind an operator; `Not` operators negate it.
enum Test<'a> {
    NumberIn(&'a [f64]),
    Cmp(f64, fn(&f64, &f64) -> bool),
    Ranges(&'a [Vec<f64>]),
    Bool(bool),
    Str(StrOp, &'a [String]),
    IsNullOrUndefined,
    IsNotNull,
}

impl AdvancedFilter {
    /// The `operatorType` this filter serialises with, e.g. `"NumberIn"`.
    pub fn operator_type(&self) -> &'static str {
        use AdvancedFilter as F;
        match self {
            F::NumberIn { .. } => "NumberIn",
            F::NumberNotIn { .. } => "NumberNotIn",
            F::NumberLessThan { .. } => "NumberLessThan",
            F::NumberGreaterThan { .. } => "NumberGreaterThan",
            F::NumberLessThanOrEquals { .. } => "NumberLessThanOrEquals",
            F::NumberGreaterThanOrEquals { .. } => "NumberGreaterThanOrEquals",
            F::NumberInRange { .. } => "NumberInRange",
            F::NumberNotInRange { .. } => "NumberNotInRange",
            F::BoolEquals { .. } => "BoolEquals",
            F::StringIn { .. } => "StringIn",
            F::StringNotIn { .. } => "StringNotIn",
            F::StringContains { .. } => "StringContains",
            F::StringNotContains { .. } => "StringNotContains",
            F::StringBeginsWith { .. } => "StringBeginsWith",
            F::StringNotBeginsWith { .. } => "StringNotBeginsWith",
            F::StringEndsWith { .. } => "StringEndsWith",
            F::StringNotEndsWith { .. } => "StringNotEndsWith",
            F::IsNullOrUndefined { .. } => "IsNullOrUndefined",
            F::IsNotNull { .. } => "IsNotNull",
        }
    }

    /// The dotted event key this filter reads.
    pub fn key(&self) -> &str {
        self.spec().0
    }

    /// The key, whether the operator negates its test, and the positive test.
    fn spec(&self) -> (&str, bool, Test<'_>) {
        use AdvancedFilter as F;
        use StrOp::{BeginsWith, Contains, EndsWith, In};
        match self {
            F::NumberIn { key, values } => (key, false, Test::NumberIn(values)),
            F::NumberNotIn { key, values } => (key, true, Test::NumberIn(values)),
            F::NumberLessThan { key, value } => (key, false, Test::Cmp(*value, f64::lt)),
            F::NumberGreaterThan { key, value } => (key, false, Test::Cmp(*value, f64::gt)),
            F::NumberLessThanOrEquals { key, value } => (key, false, Test::Cmp(*value, f64::le)),
            F::NumberGreaterThanOrEquals { key, value } => (key, false, Test::Cmp(*value, f64::ge)),
            F::NumberInRange { key, values } => (key, false, Test::Ranges(values)),
            F::NumberNotInRange { key, values } => (key, true, Test::Ranges(values)),
            F::BoolEquals { key, value } => (key, false, Test::Bool(*value)),
            F::StringIn { key, values } => (key, false, Test::Str(In, values)),
            F::StringNotIn { key, values } => (key, true, Test::Str(In, values)),
            F::StringContains { key, values } => (key, false, Test::Str(Contains, values)),
            F::StringNotContains { key, values } => (key, true, Test::Str(Contains, values)),
            F::StringBeginsWith { key, values } => (key, false, Test::Str(BeginsWith, values)),
            F::StringNotBeginsWith { key, values } => (key, true, Test::Str(BeginsWith, values)),
            F::StringEndsWith { key, values } => (key, false, Test::Str(EndsWith, values)),
            F::StringNotEndsWith { key, values } => (key, true, Test::Str(EndsWith, values)),
            F::IsNullOrUndefined { key } => (key, false, Test::IsNullOrUndefined),
            F::IsNotNull { key } => (key, false, Test::IsNotNull),
        }
    }

    /// Whether `event` (one event's JSON object as delivered, Event Grid or CloudEvents 1.0
    /// schema) passes this filter. `arrays` is the subscription's
    /// `enableAdvancedFilteringOnArrays`.
    ///
    /// - The key's segments are matched case-insensitively (exact case wins), so `Subject`,
    ///   `Data.Key1` and CloudEvents extension attributes such as `comexampleextension1` work.
    /// - A missing key matches only `IsNullOrUndefined`, `NumberNotIn` and `StringNotIn`
    ///   (as Azure documents; `StringNotContains`, `StringNotBeginsWith` and
    ///   `StringNotEndsWith` do not match) and `NumberNotInRange` (undocumented; it follows
    ///   `NumberNotIn`). A null value is treated exactly like a missing key.
    /// - Values of another type are ignored: number operators need a JSON number (a numeric
    ///   string is not one), `BoolEquals` a JSON boolean; string operators read strings and
    ///   the text of numbers and booleans. An ignored value fails the positive operators and
    ///   passes the `Not` ones. Objects are never compared.
    /// - An array value fails every operator but `IsNotNull` unless `arrays` is set; then a
    ///   positive operator needs any element to pass and a `Not` operator needs every element
    ///   to pass (no element may match the values).
    pub fn matches(&self, event: &Value, arrays: bool) -> bool {
        let (key, negated, test) = self.spec();
        let found = resolve(event, key).filter(|value| !value.is_null());
        let is_set = matches!(
            test,
            Test::NumberIn(_) | Test::Ranges(_) | Test::Str(StrOp::In, _)
        );
        match (&test, found) {
            (Test::IsNullOrUndefined, found) => found.is_none(),
            (Test::IsNotNull, found) => found.is_some(),
            (_, None) => negated && is_set,
            (test, Some(Value::Array(items))) => {
                arrays && items.iter().any(|item| test.holds(item)) != negated
            }
            (test, Some(value)) => test.holds(value) != negated,
        }
    }
}

impl Test<'_> {
    /// The positive test on one scalar; values of a type the test does not read fail it.
    fn holds(&self, value: &Value) -> bool {
        let number = value.as_f64().filter(|_| value.is_number());
        match (self, number) {
            (Test::NumberIn(values), Some(n)) => values.contains(&n),
            (Test::Cmp(limit, cmp), Some(n)) => cmp(&n, limit),
            (Test::Ranges(ranges), Some(n)) => ranges
                .iter()
                .any(|range| matches!(range.as_slice(), [low, high] if *low <= n && n <= *high)),
            (Test::Bool(expected), _) => value.as_bool() == Some(*expected),
            (Test::Str(op, values), _) => {
                let text = match value {
                    Value::String(s) => s.to_lowercase(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return false,
                };
                values.iter().any(|wanted| {
                    let wanted = wanted.to_lowercase();
                    match op {
                        StrOp::In => text == wanted,
                        StrOp::Contains => text.contains(&wanted),
                        StrOp::BeginsWith => text.starts_with(&wanted),
                        StrOp::EndsWith => text.ends_with(&wanted),
                    }
                })
            }
            _ => false,
        }
    }

    /// How many filter values this operand counts towards the subscription limit.
    fn value_count(&self) -> usize {
        match self {
            Test::NumberIn(values) => values.len(),
            Test::Ranges(ranges) => ranges.len(),
            Test::Str(_, values) => values.len(),
            Test::Cmp(..) | Test::Bool(_) => 1,
            Test::IsNullOrUndefined | Test::IsNotNull => 0,
        }
    }
}

/// Follows a dotted key from the top-level event object down through nested objects.
fn resolve<'v>(event: &'v Value, key: &str) -> Option<&'v Value> {
    key.split('.')
        .try_fold(event, |node, segment| field(node.as_object()?, segment))
}

/// Looks a field up by exact name, else ignoring case.
fn field<'v>(object: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    object.get(name).or_else(|| {
        let lower = name.to_lowercase();
        object
            .iter()
            .find(|(k, _)| k.to_lowercase() == lower)
            .map(|(_, value)| value)
    })
}

/// Whether every filter matches `event` (a subscription's advanced filters are AND-ed);
/// true for an empty list. `arrays` is `enableAdvancedFilteringOnArrays`.
pub fn all_match(filters: &[AdvancedFilter], event: &Value, arrays: bool) -> bool {
    filters.iter().all(|filter| filter.matches(event, arrays))
}

/// Checks a subscription's advanced filters against Azure's limits: at most 25 filters and
/// 25 values across all of them, non-empty keys of at most [`MAX_KEY_DOTS`] dots, non-empty
/// value lists, ranges of exactly `[low, high]` with `low <= high`, and string values of at
/// most 512 characters. A single `value` counts as one value, each range as one. The error
/// names the offending filter (index, operator and key).
pub fn validate(filters: &[AdvancedFilter]) -> Result<(), String> {
    if filters.len() > MAX_FILTERS {
        return Err(format!(
            "advancedFilters has {} filters; at most {MAX_FILTERS} are allowed per event subscription",
            filters.len()
        ));
    }
    let mut total = 0;
    for (index, filter) in filters.iter().enumerate() {
        let (key, _, test) = filter.spec();
        let name = filter.operator_type();
        check_filter(key, &test)
            .map_err(|e| format!("advancedFilters[{index}] ({name} on key '{key}'): {e}"))?;
        total += test.value_count();
    }
    if total > MAX_VALUES {
        return Err(format!(
            "advancedFilters have {total} values in total; at most {MAX_VALUES} are allowed \
             across all filters of an event subscription"
        ));
    }
    Ok(())
}

/// Checks one filter's key and operand.
fn check_filter(key: &str, test: &Test<'_>) -> Result<(), String> {
    let dots = key.matches('.').count();
    let count = test.value_count();
    if key.trim().is_empty() {
        Err("key must not be empty".into())
    } else if key.split('.').any(|segment| segment.trim().is_empty()) {
        Err("key has an empty segment; use a dotted path like data.key1.key2".into())
    } else if dots > MAX_KEY_DOTS {
        Err(format!(
            "key has {dots} dots; at most {MAX_KEY_DOTS} are allowed"
        ))
    } else if count == 0 && !matches!(test, Test::IsNullOrUndefined | Test::IsNotNull) {
        Err("values must not be empty".into())
    } else if count > MAX_VALUES {
        Err(format!(
            "values has {count} entries; at most {MAX_VALUES} allowed"
        ))
    } else if let Test::Ranges(ranges) = test {
        ranges.iter().enumerate().try_for_each(check_range)
    } else if let Test::Str(_, values) = test {
        match values
            .iter()
            .position(|v| v.chars().count() > MAX_STRING_LEN)
        {
            Some(i) => Err(format!("values[{i}] is over {MAX_STRING_LEN} characters")),
            None => Ok(()),
        }
    } else {
        Ok(())
    }
}

/// Checks that one `NumberInRange`/`NumberNotInRange` entry is an ordered `[low, high]` pair.
fn check_range((index, range): (usize, &Vec<f64>)) -> Result<(), String> {
    match range.as_slice() {
        [low, high] if low > high => Err(format!("values[{index}] has low {low} > high {high}")),
        [_, _] => Ok(()),
        other => Err(format!(
            "values[{index}] has {} numbers, not [low, high]",
            other.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The shape of the event value a table row exercises.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Shape {
        Match,
        NoMatch,
        Missing,
        Null,
        Mismatch,
        ArrayOn,
        ArrayOff,
        KeyLookup,
    }
    use Shape::*;

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Schema {
        Eg,
        Ce,
    }
    use Schema::*;

    const OPERATORS: &str = "NumberIn NumberNotIn NumberLessThan NumberGreaterThan \
        NumberLessThanOrEquals NumberGreaterThanOrEquals NumberInRange NumberNotInRange \
        BoolEquals StringIn StringNotIn StringContains StringNotContains StringBeginsWith \
        StringNotBeginsWith StringEndsWith StringNotEndsWith IsNullOrUndefined IsNotNull";

    fn event(schema: Schema) -> Value {
        let data = json!({
            "size": 5, "ratio": 2.5, "name": "Contoso Widget", "ok": true, "gone": null,
            "okText": "true", "text5": "5", "sizes": [1, 5, 9], "tags": ["Urgent", "billing"],
            "flags": [true, true], "objs": [{"a": 1}], "Nested": {"Level": {"Deep": "Value"}}
        });
        match schema {
            Eg => json!({
                "id": "e1", "topic": "/subscriptions/s/resourceGroups/g/providers/Microsoft.EventGrid/topics/t",
                "subject": "/blobServices/default/containers/c/blobs/photo.JPG",
                "eventType": "Contoso.Items.ItemCreated", "eventTime": "2024-01-01T00:00:00Z",
                "dataVersion": "1.0", "data": data
            }),
            Ce => json!({
                "specversion": "1.0", "id": "C234-1234", "source": "/mycontext",
                "type": "com.example.someevent", "subject": "/items/42",
                "time": "2024-01-01T00:00:00Z", "comexampleextension1": "Value",
                "comexampleothervalue": 5, "data": data
            }),
        }
    }

    /// Builds a filter from its ARM JSON, putting `operand` under `value` or `values`.
    fn filter(op: &str, key: &str, operand: &str) -> AdvancedFilter {
        let single = op.contains("Than") || op == "BoolEquals";
        let field = match (op.starts_with("Is"), single) {
            (true, _) => String::new(),
            (false, true) => format!(r#","value":{operand}"#),
            (false, false) => format!(r#","values":{operand}"#),
        };
        let text = format!(r#"{{"operatorType":"{op}","key":"{key}"{field}}}"#);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[rustfmt::skip]
    const TABLE: &[(Shape, &str, &str, &str, Schema, bool)] = &[
        (Match, "NumberIn", "data.size", "[7,5]", Eg, true),
        (NoMatch, "NumberIn", "data.size", "[1,2]", Ce, false),
        (Missing, "NumberIn", "data.absent", "[5]", Eg, false),
        (Null, "NumberIn", "data.gone", "[5]", Ce, false),
        (Mismatch, "NumberIn", "data.text5", "[5]", Eg, false),
        (ArrayOn, "NumberIn", "data.sizes", "[9]", Eg, true),
        (ArrayOff, "NumberIn", "data.sizes", "[9]", Ce, false),
        (Match, "NumberNotIn", "data.size", "[1,2]", Eg, true),
        (NoMatch, "NumberNotIn", "data.size", "[1,5]", Ce, false),
        (Missing, "NumberNotIn", "data.absent", "[5]", Eg, true),
        (Null, "NumberNotIn", "data.gone", "[5]", Ce, true),
        (Mismatch, "NumberNotIn", "data.text5", "[5]", Eg, true),
        (ArrayOn, "NumberNotIn", "data.sizes", "[2,3]", Ce, true),
        (ArrayOn, "NumberNotIn", "data.sizes", "[5]", Eg, false),
        (ArrayOff, "NumberNotIn", "data.sizes", "[2]", Eg, false),
        (Match, "NumberLessThan", "data.size", "6", Eg, true),
        (NoMatch, "NumberLessThan", "data.size", "5", Ce, false),
        (Missing, "NumberLessThan", "data.absent", "6", Eg, false),
        (Null, "NumberLessThan", "data.gone", "6", Ce, false),
        (Mismatch, "NumberLessThan", "data.text5", "6", Eg, false),
        (ArrayOn, "NumberLessThan", "data.sizes", "2", Eg, true),
        (ArrayOff, "NumberLessThan", "data.sizes", "2", Ce, false),
        (Match, "NumberGreaterThan", "data.ratio", "2.4", Eg, true),
        (NoMatch, "NumberGreaterThan", "data.size", "5", Ce, false),
        (Missing, "NumberGreaterThan", "data.absent", "0", Eg, false),
        (Null, "NumberGreaterThan", "data.gone", "0", Ce, false),
        (Mismatch, "NumberGreaterThan", "data.ok", "0", Eg, false),
        (ArrayOn, "NumberGreaterThan", "data.sizes", "9", Eg, false),
        (ArrayOff, "NumberGreaterThan", "data.sizes", "0", Ce, false),
        (Match, "NumberLessThanOrEquals", "data.size", "5", Eg, true),
        (NoMatch, "NumberLessThanOrEquals", "data.size", "4.9", Ce, false),
        (Missing, "NumberLessThanOrEquals", "data.absent", "9", Eg, false),
        (Null, "NumberLessThanOrEquals", "data.gone", "9", Ce, false),
        (Mismatch, "NumberLessThanOrEquals", "data.name", "9", Eg, false),
        (ArrayOn, "NumberLessThanOrEquals", "data.sizes", "1", Ce, true),
        (ArrayOff, "NumberLessThanOrEquals", "data.sizes", "9", Eg, false),
        (Match, "NumberGreaterThanOrEquals", "data.size", "5", Eg, true),
        (NoMatch, "NumberGreaterThanOrEquals", "data.size", "6", Ce, false),
        (Missing, "NumberGreaterThanOrEquals", "data.absent", "0", Eg, false),
        (Null, "NumberGreaterThanOrEquals", "data.gone", "0", Ce, false),
        (Mismatch, "NumberGreaterThanOrEquals", "data.text5", "0", Eg, false),
        (ArrayOn, "NumberGreaterThanOrEquals", "data.sizes", "9", Eg, true),
        (ArrayOff, "NumberGreaterThanOrEquals", "data.sizes", "0", Ce, false),
        (Match, "NumberInRange", "data.ratio", "[[0,1],[2,3]]", Eg, true),
        (Match, "NumberInRange", "data.size", "[[5,5]]", Ce, true),
        (NoMatch, "NumberInRange", "data.size", "[[0,4.99],[6,10]]", Eg, false),
        (Missing, "NumberInRange", "data.absent", "[[0,10]]", Eg, false),
        (Null, "NumberInRange", "data.gone", "[[0,10]]", Ce, false),
        (Mismatch, "NumberInRange", "data.text5", "[[0,10]]", Eg, false),
        (ArrayOn, "NumberInRange", "data.sizes", "[[8,10]]", Eg, true),
        (ArrayOff, "NumberInRange", "data.sizes", "[[0,10]]", Ce, false),
        (Match, "NumberNotInRange", "data.size", "[[6,10]]", Eg, true),
        (NoMatch, "NumberNotInRange", "data.size", "[[0,1],[4,6]]", Ce, false),
        (Missing, "NumberNotInRange", "data.absent", "[[0,10]]", Eg, true),
        (Null, "NumberNotInRange", "data.gone", "[[0,10]]", Ce, true),
        (Mismatch, "NumberNotInRange", "data.text5", "[[0,10]]", Eg, true),
        (ArrayOn, "NumberNotInRange", "data.sizes", "[[10,20]]", Eg, true),
        (ArrayOn, "NumberNotInRange", "data.sizes", "[[8,10]]", Ce, false),
        (ArrayOff, "NumberNotInRange", "data.sizes", "[[10,20]]", Eg, false),
        (Match, "BoolEquals", "data.ok", "true", Eg, true),
        (NoMatch, "BoolEquals", "data.ok", "false", Ce, false),
        (Missing, "BoolEquals", "data.absent", "false", Eg, false),
        (Null, "BoolEquals", "data.gone", "false", Ce, false),
        (Mismatch, "BoolEquals", "data.okText", "true", Eg, false),
        (ArrayOn, "BoolEquals", "data.flags", "true", Eg, true),
        (ArrayOn, "BoolEquals", "data.flags", "false", Ce, false),
        (ArrayOff, "BoolEquals", "data.flags", "true", Eg, false),
        (Match, "StringIn", "data.name", r#"["x","CONTOSO widget"]"#, Eg, true),
        (NoMatch, "StringIn", "data.name", r#"["contoso"]"#, Ce, false),
        (Missing, "StringIn", "data.absent", r#"["x"]"#, Eg, false),
        (Null, "StringIn", "data.gone", r#"["null"]"#, Ce, false),
        (Mismatch, "StringIn", "data.Nested", r#"["x"]"#, Eg, false),
        (Mismatch, "StringIn", "comexampleothervalue", r#"["5"]"#, Ce, true),
        (ArrayOn, "StringIn", "data.tags", r#"["URGENT"]"#, Eg, true),
        (ArrayOff, "StringIn", "data.tags", r#"["urgent"]"#, Ce, false),
        (Match, "StringNotIn", "data.name", r#"["aws","bridge"]"#, Eg, true),
        (NoMatch, "StringNotIn", "data.name", r#"["aws","contoso WIDGET"]"#, Ce, false),
        (Missing, "StringNotIn", "data.absent", r#"["x"]"#, Eg, true),
        (Null, "StringNotIn", "data.gone", r#"["x"]"#, Ce, true),
        (Mismatch, "StringNotIn", "data.Nested", r#"["x"]"#, Eg, true),
        (ArrayOn, "StringNotIn", "data.tags", r#"["aws"]"#, Ce, true),
        (ArrayOn, "StringNotIn", "data.tags", r#"["BILLING"]"#, Eg, false),
        (ArrayOff, "StringNotIn", "data.tags", r#"["aws"]"#, Eg, false),
        (Match, "StringContains", "data.name", r#"["gadget","WIDG"]"#, Eg, true),
        (NoMatch, "StringContains", "data.name", r#"["gadget"]"#, Ce, false),
        (Missing, "StringContains", "data.absent", r#"["x"]"#, Eg, false),
        (Null, "StringContains", "data.gone", r#"["x"]"#, Ce, false),
        (Mismatch, "StringContains", "data.objs", r#"["a"]"#, Eg, false),
        (ArrayOn, "StringContains", "data.tags", r#"["bill"]"#, Eg, true),
        (ArrayOff, "StringContains", "data.tags", r#"["bill"]"#, Ce, false),
        (Match, "StringNotContains", "data.name", r#"["contoso2"]"#, Eg, true),
        (NoMatch, "StringNotContains", "data.name", r#"["x","o w"]"#, Ce, false),
        (Missing, "StringNotContains", "data.absent", r#"["x"]"#, Eg, false),
        (Null, "StringNotContains", "data.gone", r#"["x"]"#, Ce, false),
        (Mismatch, "StringNotContains", "data.Nested", r#"["x"]"#, Eg, true),
        (ArrayOn, "StringNotContains", "data.tags", r#"["x"]"#, Ce, true),
        (ArrayOn, "StringNotContains", "data.tags", r#"["URG"]"#, Eg, false),
        (ArrayOff, "StringNotContains", "data.tags", r#"["x"]"#, Eg, false),
        (Match, "StringBeginsWith", "subject", r#"["/BLOBSERVICES/"]"#, Eg, true),
        (NoMatch, "StringBeginsWith", "subject", r#"["/blobServices/"]"#, Ce, false),
        (Missing, "StringBeginsWith", "data.absent", r#"["x"]"#, Eg, false),
        (Null, "StringBeginsWith", "data.gone", r#"["n"]"#, Ce, false),
        (Mismatch, "StringBeginsWith", "data.Nested", r#"["{"]"#, Eg, false),
        (ArrayOn, "StringBeginsWith", "data.tags", r#"["bi"]"#, Ce, true),
        (ArrayOff, "StringBeginsWith", "data.tags", r#"["bi"]"#, Eg, false),
        (Match, "StringNotBeginsWith", "data.name", r#"["widget"]"#, Eg, true),
        (NoMatch, "StringNotBeginsWith", "data.name", r#"["x","contoso"]"#, Ce, false),
        (Missing, "StringNotBeginsWith", "data.absent", r#"["x"]"#, Eg, false),
        (Null, "StringNotBeginsWith", "data.gone", r#"["x"]"#, Ce, false),
        (Mismatch, "StringNotBeginsWith", "data.Nested", r#"["x"]"#, Eg, true),
        (ArrayOn, "StringNotBeginsWith", "data.tags", r#"["x"]"#, Eg, true),
        (ArrayOn, "StringNotBeginsWith", "data.tags", r#"["BI"]"#, Ce, false),
        (ArrayOff, "StringNotBeginsWith", "data.tags", r#"["x"]"#, Eg, false),
        (Match, "StringEndsWith", "subject", r#"[".png",".jpg"]"#, Eg, true),
        (NoMatch, "StringEndsWith", "subject", r#"[".jpg"]"#, Ce, false),
        (Missing, "StringEndsWith", "data.absent", r#"["x"]"#, Eg, false),
        (Null, "StringEndsWith", "data.gone", r#"["l"]"#, Ce, false),
        (Mismatch, "StringEndsWith", "data.objs", r#"["}]"]"#, Eg, false),
        (ArrayOn, "StringEndsWith", "data.tags", r#"["ENT"]"#, Eg, true),
        (ArrayOff, "StringEndsWith", "data.tags", r#"["ent"]"#, Ce, false),
        (Match, "StringNotEndsWith", "subject", r#"[".png"]"#, Eg, true),
        (NoMatch, "StringNotEndsWith", "subject", r#"["/42"]"#, Ce, false),
        (Missing, "StringNotEndsWith", "data.absent", r#"["x"]"#, Eg, false),
        (Null, "StringNotEndsWith", "data.gone", r#"["x"]"#, Ce, false),
        (Mismatch, "StringNotEndsWith", "data.Nested", r#"["x"]"#, Eg, true),
        (ArrayOn, "StringNotEndsWith", "data.tags", r#"["x"]"#, Ce, true),
        (ArrayOn, "StringNotEndsWith", "data.tags", r#"["ING"]"#, Eg, false),
        (ArrayOff, "StringNotEndsWith", "data.tags", r#"["x"]"#, Eg, false),
        (Match, "IsNullOrUndefined", "data.gone", "", Eg, true),
        (NoMatch, "IsNullOrUndefined", "data.size", "", Ce, false),
        (Missing, "IsNullOrUndefined", "data.absent", "", Eg, true),
        (Null, "IsNullOrUndefined", "data.gone", "", Ce, true),
        (Mismatch, "IsNullOrUndefined", "data.Nested", "", Eg, false),
        (ArrayOn, "IsNullOrUndefined", "data.sizes", "", Eg, false),
        (ArrayOff, "IsNullOrUndefined", "data.sizes", "", Ce, false),
        (Match, "IsNotNull", "data.size", "", Eg, true),
        (NoMatch, "IsNotNull", "data.gone", "", Ce, false),
        (Missing, "IsNotNull", "data.absent", "", Eg, false),
        (Null, "IsNotNull", "data.gone", "", Ce, false),
        (Mismatch, "IsNotNull", "data.Nested", "", Eg, true),
        (ArrayOn, "IsNotNull", "data.sizes", "", Eg, true),
        (ArrayOff, "IsNotNull", "data.sizes", "", Ce, true),
        (KeyLookup, "StringIn", "ID", r#"["E1"]"#, Eg, true),
        (KeyLookup, "StringIn", "EventType", r#"["contoso.items.itemcreated"]"#, Eg, true),
        (KeyLookup, "StringBeginsWith", "Topic", r#"["/subscriptions/s/"]"#, Eg, true),
        (KeyLookup, "StringIn", "DataVersion", r#"["1.0"]"#, Eg, true),
        (KeyLookup, "StringIn", "Data.NESTED.level.deep", r#"["value"]"#, Eg, true),
        (KeyLookup, "StringIn", "data.size.deeper", r#"["5"]"#, Eg, false),
        (KeyLookup, "StringIn", "source", r#"["/MyContext"]"#, Ce, true),
        (KeyLookup, "StringIn", "Type", r#"["com.example.someevent"]"#, Ce, true),
        (KeyLookup, "StringIn", "specversion", r#"["1.0"]"#, Ce, true),
        (KeyLookup, "StringIn", "comexampleextension1", r#"["value"]"#, Ce, true),
        (KeyLookup, "NumberIn", "comexampleothervalue", "[5]", Ce, true),
        (KeyLookup, "StringBeginsWith", "comexampleothervalue", r#"["5","1"]"#, Ce, true),
        (KeyLookup, "IsNullOrUndefined", "comexampleextension1", "", Eg, true),
        (KeyLookup, "IsNotNull", "source", "", Eg, false),
    ];

    #[test]
    fn every_operator_follows_azure_semantics_for_every_value_shape() {
        let failures: Vec<String> = TABLE
            .iter()
            .filter(|&&(shape, op, key, operand, schema, expected)| {
                filter(op, key, operand).matches(&event(schema), shape == ArrayOn) != expected
            })
            .map(|row| format!("{row:?}"))
            .collect();
        assert_eq!(failures, [""; 0], "these rows did not evaluate as expected");
    }

    #[test]
    fn the_table_covers_every_operator_with_every_value_shape_in_both_schemas() {
        let shapes = [Match, NoMatch, Missing, Null, Mismatch, ArrayOn, ArrayOff];
        for op in OPERATORS.split_whitespace() {
            let rows: Vec<_> = TABLE.iter().filter(|row| row.1 == op).collect();
            for shape in shapes {
                assert!(
                    rows.iter().any(|row| row.0 == shape),
                    "{op} has no {shape:?} row"
                );
            }
            assert!(
                rows.iter().any(|r| r.4 == Eg) && rows.iter().any(|r| r.4 == Ce),
                "{op}"
            );
            let name = rows.first().map(|r| filter(r.1, r.2, r.3).operator_type());
            assert_eq!(name, Some(op));
        }
    }

    #[test]
    fn a_subscription_matches_only_when_all_its_filters_match() {
        let size = filter("NumberIn", "data.size", "[5]");
        let png = filter("StringEndsWith", "subject", r#"[".png"]"#);
        let ok = filter("BoolEquals", "data.ok", "true");
        assert!(all_match(&[size.clone(), ok], &event(Eg), false));
        assert!(!all_match(&[size, png], &event(Eg), false));
        assert!(all_match(&[], &event(Ce), false));
    }

    #[test]
    fn documented_json_shapes_round_trip_unchanged() {
        let cases = [
            json!({"operatorType": "NumberIn", "key": "data.size", "values": [1.0, 2.0]}),
            json!({"operatorType": "NumberLessThan", "key": "data.size", "value": 5.0}),
            json!({"operatorType": "BoolEquals", "key": "data.ok", "value": true}),
            json!({"operatorType": "NumberInRange", "key": "data.x", "values": [[0.0, 10.0]]}),
            json!({"operatorType": "StringContains", "key": "Subject", "values": ["a", "b"]}),
            json!({"operatorType": "IsNullOrUndefined", "key": "data.x"}),
        ];
        for case in cases {
            let parsed: AdvancedFilter = serde_json::from_value(case.clone()).unwrap();
            assert_eq!(serde_json::to_value(&parsed).unwrap(), case);
        }
    }

    #[test]
    fn integer_json_numbers_deserialise_into_number_filters() {
        let text = r#"{"operatorType":"NumberInRange","key":"data.x","values":[[0,10],[20,30]]}"#;
        let parsed: AdvancedFilter = serde_json::from_str(text).unwrap();
        let values = vec![vec![0.0, 10.0], vec![20.0, 30.0]];
        assert_eq!(
            parsed,
            AdvancedFilter::NumberInRange {
                key: "data.x".into(),
                values
            }
        );
    }

    #[test]
    fn unknown_operators_and_fields_are_rejected_with_their_names() {
        let parse = |v: Value| serde_json::from_value::<AdvancedFilter>(v).unwrap_err();
        let err = parse(json!({"operatorType": "NumberBetween", "key": "k"})).to_string();
        assert!(err.contains("unknown variant `NumberBetween`"), "{err}");
        let err = parse(json!({"operatorType": "NumberIn", "key": "k", "value": 1})).to_string();
        assert!(err.contains("unknown field `value`"), "{err}");
        let err = parse(json!({"key": "k", "values": [1]})).to_string();
        assert!(err.contains("missing field `operatorType`"), "{err}");
    }

    fn strings(n: usize) -> String {
        json!((0..n).map(|i| i.to_string()).collect::<Vec<_>>()).to_string()
    }

    fn rejection(filters: &[AdvancedFilter]) -> String {
        validate(filters).unwrap_err()
    }

    #[test]
    fn validate_accepts_documented_examples() {
        let filters = [
            filter("NumberGreaterThanOrEquals", "Data.Key1", "5"),
            filter("StringContains", "Subject", r#"["a","b"]"#),
            filter(
                "NumberInRange",
                "data.key1",
                "[[3.14159,999.95],[3000,4000]]",
            ),
            filter("IsNullOrUndefined", "data.a.b.c.d.e.f.g.h.i.j", ""),
        ];
        assert_eq!(validate(&filters), Ok(()));
    }

    #[test]
    fn validate_rejects_more_than_25_filters() {
        let filters = vec![filter("IsNotNull", "data.x", ""); 26];
        assert!(rejection(&filters).contains("26 filters"));
    }

    #[test]
    fn validate_rejects_more_than_25_values_in_one_filter_naming_its_key() {
        let err = rejection(&[filter("StringIn", "data.colour", &strings(26))]);
        let expected = "advancedFilters[0] (StringIn on key 'data.colour'): values has 26 entries";
        assert!(err.starts_with(expected), "{err}");
    }

    #[test]
    fn validate_rejects_more_than_25_values_across_all_filters() {
        let filters = [
            filter("StringIn", "data.a", &strings(13)),
            filter("NumberLessThan", "data.b", "1"),
            filter("StringIn", "data.c", &strings(12)),
        ];
        assert!(rejection(&filters).contains("26 values in total"));
    }

    #[test]
    fn validate_rejects_ranges_that_are_not_ordered_pairs() {
        let err = rejection(&[filter("NumberInRange", "data.x", "[[0,10],[1,2,3]]")]);
        assert!(
            err.contains("values[1] has 3 numbers, not [low, high]"),
            "{err}"
        );
        let err = rejection(&[filter("NumberNotInRange", "data.x", "[[10,0]]")]);
        assert!(err.contains("low 10 > high 0"), "{err}");
    }

    #[test]
    fn validate_rejects_empty_keys_and_empty_value_lists() {
        assert!(rejection(&[filter("IsNotNull", " ", "")]).contains("key must not be empty"));
        assert!(rejection(&[filter("IsNotNull", "data..x", "")]).contains("empty segment"));
        assert!(rejection(&[filter("StringIn", "data.x", "[]")]).contains("must not be empty"));
    }

    #[test]
    fn validate_rejects_overlong_keys_and_string_values() {
        let deep = filter("IsNotNull", "data.a.b.c.d.e.f.g.h.i.j.k", "");
        assert!(rejection(&[deep]).contains("has 11 dots"));
        let long = json!(["x".repeat(513)]).to_string();
        assert!(
            rejection(&[filter("StringIn", "data.x", &long)])
                .contains("values[0] is over 512 characters")
        );
    }

    #[test]
    fn evaluation_never_panics_on_odd_events_or_unvalidated_filters() {
        let values = vec![vec![], vec![f64::NAN, 1.0]];
        let odd = AdvancedFilter::NumberInRange {
            key: String::new(),
            values,
        };
        for event in [json!(null), json!([1, 2]), json!("text"), json!({"": 1})] {
            assert!(!odd.matches(&event, true));
        }
    }
}
