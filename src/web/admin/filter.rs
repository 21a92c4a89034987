//! The filters of the records API, evaluated on the server while a
//! partition is scanned: key (substring), header (`name` or `name=value`),
//! time range, and a JSON-path comparison on the value
//! (`$.customer == "Ada"`, `$.total != 3`, `$.items[0].qty >= 2`).
//!
//! The path itself is RFC 9535 JSONPath, parsed and evaluated by
//! `serde_json_path`; this file only splits `PATH OP LITERAL` and compares.
//! A record matches a comparison when any node the path selects compares
//! true (`!=`: when the path selects nothing, or no node equals it).
//! Must never: allocate per record beyond parsing the value's JSON.

use kafka_protocol::records::Record;
use serde_json::Value;
use serde_json_path::JsonPath;

/// Why a filter parameter was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("jsonpath: {0}")]
    JsonPath(String),
}

/// How a JSON-path result is compared with the literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// `PATH OP LITERAL`, or a bare `PATH` (matches when it selects anything).
#[derive(Debug)]
pub struct JsonPathFilter {
    path: JsonPath,
    comparison: Option<(Op, Value)>,
}

impl JsonPathFilter {
    /// Parse `$.a.b == "x"` (literals: JSON strings, numbers, true, false, null).
    pub fn parse(text: &str) -> Result<Self, FilterError> {
        let text = text.trim();
        let bad = |m: &str| FilterError::JsonPath(m.to_owned());
        let split = find_operator(text);
        let (path_text, comparison) = match split {
            None => (text, None),
            Some((at, op, len)) => {
                let literal = text[at + len..].trim();
                let value: Value = serde_json::from_str(literal).map_err(|_| {
                    bad("the right side must be a JSON literal: \"text\", a number, true, false or null")
                })?;
                if matches!(value, Value::Array(_) | Value::Object(_)) {
                    return Err(bad("compare with a string, number, boolean or null"));
                }
                (text[..at].trim(), Some((op, value)))
            }
        };
        if !path_text.starts_with('$') {
            return Err(bad("the path must start with $"));
        }
        let path = JsonPath::parse(path_text).map_err(|e| FilterError::JsonPath(e.to_string()))?;
        Ok(JsonPathFilter { path, comparison })
    }

    /// Whether the JSON document `value` matches.
    pub fn matches(&self, value: &Value) -> bool {
        let nodes = self.path.query(value);
        match &self.comparison {
            None => !nodes.is_empty(),
            Some((Op::Ne, literal)) => !nodes.iter().any(|n| *n == literal),
            Some((op, literal)) => nodes.iter().any(|n| compare(n, *op, literal)),
        }
    }
}

/// The first comparison operator outside string literals and brackets.
fn find_operator(text: &str) -> Option<(usize, Op, usize)> {
    let bytes = text.as_bytes();
    let mut quote: Option<u8> = None;
    let mut depth = 0i32;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match quote {
            Some(q) => {
                if c == b'\\' {
                    i += 1;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                b'"' | b'\'' => quote = Some(c),
                b'[' | b'(' => depth += 1,
                b']' | b')' => depth -= 1,
                _ if depth == 0 => {
                    let two = bytes.get(i..i + 2);
                    let op = match two {
                        Some(b"==") => Some((Op::Eq, 2)),
                        Some(b"!=") => Some((Op::Ne, 2)),
                        Some(b"<=") => Some((Op::Le, 2)),
                        Some(b">=") => Some((Op::Ge, 2)),
                        _ => match c {
                            b'<' => Some((Op::Lt, 1)),
                            b'>' => Some((Op::Gt, 1)),
                            _ => None,
                        },
                    };
                    if let Some((op, len)) = op {
                        return Some((i, op, len));
                    }
                }
                _ => {}
            },
        }
        i += 1;
    }
    None
}

fn compare(node: &Value, op: Op, literal: &Value) -> bool {
    use std::cmp::Ordering;
    let ordering = match (node, literal) {
        (Value::Number(a), Value::Number(b)) => match (a.as_f64(), b.as_f64()) {
            (Some(a), Some(b)) => a.partial_cmp(&b),
            _ => None,
        },
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (a, b) if a == b => Some(Ordering::Equal),
        _ => None,
    };
    match (op, ordering) {
        (Op::Eq, Some(o)) => o == Ordering::Equal,
        (Op::Ne, Some(o)) => o != Ordering::Equal,
        (Op::Ne, None) => true,
        (Op::Lt, Some(o)) => o == Ordering::Less,
        (Op::Le, Some(o)) => o != Ordering::Greater,
        (Op::Gt, Some(o)) => o == Ordering::Greater,
        (Op::Ge, Some(o)) => o != Ordering::Less,
        _ => false,
    }
}

/// Every filter of one records request.
#[derive(Debug, Default)]
pub struct RecordFilter {
    /// A substring of the key (as UTF-8, lossy).
    pub key: Option<String>,
    /// A header name, and the value it must have if given.
    pub header: Option<(String, Option<String>)>,
    pub json_path: Option<JsonPathFilter>,
    /// Inclusive bounds on the record timestamp (ms since the epoch).
    pub from_ts: Option<i64>,
    pub to_ts: Option<i64>,
}

impl RecordFilter {
    /// `name` or `name=value` as the header filter.
    pub fn parse_header(text: &str) -> (String, Option<String>) {
        match text.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (text.to_owned(), None),
        }
    }

    /// Whether `record` passes every filter; the cheap ones first.
    pub fn matches(&self, record: &Record) -> bool {
        if self.from_ts.is_some_and(|t| record.timestamp < t)
            || self.to_ts.is_some_and(|t| record.timestamp > t)
        {
            return false;
        }
        if let Some(key) = &self.key {
            let Some(k) = &record.key else {
                return false;
            };
            if !String::from_utf8_lossy(k).contains(key.as_str()) {
                return false;
            }
        }
        if let Some((name, value)) = &self.header {
            let found = record.headers.iter().any(|(n, v)| {
                n.as_str() == name
                    && value.as_ref().is_none_or(|want| {
                        v.as_ref().is_some_and(|v| v.as_ref() == want.as_bytes())
                    })
            });
            if !found {
                return false;
            }
        }
        if let Some(filter) = &self.json_path {
            let Some(value) = &record.value else {
                return false;
            };
            match serde_json::from_slice::<Value>(value) {
                Ok(doc) => filter.matches(&doc),
                Err(_) => false,
            }
        } else {
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(filter: &str, doc: Value) -> bool {
        JsonPathFilter::parse(filter).expect("parses").matches(&doc)
    }

    #[test]
    fn json_path_comparisons_match_strings_numbers_and_nesting() {
        let doc = json!({"customer": "Ada", "total": 12.5, "items": [{"sku": "a", "qty": 2}], "a": {"b": "x"}});
        assert!(m("$.customer == \"Ada\"", doc.clone()));
        assert!(!m("$.customer == \"Bob\"", doc.clone()));
        assert!(m("$.customer != \"Bob\"", doc.clone()));
        assert!(m("$.a.b == \"x\"", doc.clone()));
        assert!(m("$.total > 12", doc.clone()));
        assert!(m("$.total == 12.5", doc.clone()));
        assert!(!m("$.total < 12", doc.clone()));
        assert!(m("$.items[0].qty >= 2", doc.clone()));
        assert!(m(
            "$.items[*].sku == 'a'".replace('\'', "\"").as_str(),
            doc.clone()
        ));
        assert!(m("$.missing != 1", doc.clone()));
        assert!(m("$.a", doc.clone()));
        assert!(!m("$.nope", doc));
    }

    #[test]
    fn operators_inside_strings_and_bad_input_are_handled() {
        assert!(m("$.s == \"a==b\"", json!({"s": "a==b"})));
        assert!(m("$['x>y'] == 1", json!({"x>y": 1})));
        assert!(JsonPathFilter::parse("customer == \"Ada\"").is_err());
        assert!(JsonPathFilter::parse("$.a == Ada").is_err());
        assert!(JsonPathFilter::parse("$.a == [1]").is_err());
        assert!(JsonPathFilter::parse("$..[").is_err());
    }

    #[test]
    fn header_filter_parses_name_and_value() {
        assert_eq!(
            RecordFilter::parse_header("trace=abc"),
            ("trace".into(), Some("abc".into()))
        );
        assert_eq!(RecordFilter::parse_header("trace"), ("trace".into(), None));
    }
}
