//! JSON Schema → regular expression, for OpenAI's `response_format: {"type": "json_schema"}`.
//!
//! The output is compact JSON with optional whitespace in llama.cpp's shape (one space, or a
//! newline and up to 20 spaces/tabs of indentation — `json-schema-to-grammar`'s `space` rule) at
//! every place JSON allows it except before the first and after the last byte, so the DFA stays
//! small and generation can end the moment the root value closes.
//!
//! Supported: `type` (one or a list) object / array / string / integer / number / boolean /
//! null; `properties` (emitted in the schema's order, optional ones may be left out),
//! `required`, `additionalProperties` (`false`; `true` or a schema: further members after the
//! declared ones, as llama.cpp's `json-schema-to-grammar` places them, with keys that are none of
//! the declared names and are written without escapes, so that a name has one spelling; absent
//! beside `properties` it means `false`, as llama.cpp reads it, and OpenAI's strict mode demands
//! it); `items`,
//! `minItems`, `maxItems`; `minLength`, `maxLength`, `pattern`, `format` (date, time, date-time,
//! uuid); `enum` and `const` of any value; `anyOf` / `oneOf` as alternation, `allOf` of one
//! schema; `$ref` into `#/$defs` or `#/definitions`, not recursive. Annotations (`title`,
//! `description`, `default`, ...) are ignored. Anything else is an error, since silently
//! ignoring a constraint would hand back output that fails the caller's validation.
//!
//! Numbers are bounded like llama.cpp's (16 integer digits, 16 fraction digits), so a model that
//! loves digits still reaches the end of a value.

use serde_json::{Map, Value};

use crate::error::{ForgeError, Result};

/// llama.cpp's `space`: nothing, one space, or a newline and some indentation.
pub(super) const WS: &str = r"(?: |\n[ \t]{0,20})?";
const STRING_CHAR: &str = r#"(?:[^"\\\x00-\x1F]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})"#;
// No `-0`: JSON allows it, but parsers read it as the float -0.0 (serde_json does), which an
// "integer" field must not be.
const INTEGER: &str = r"(?:0|-?[1-9][0-9]{0,15})";
const NUMBER: &str = r"-?(?:0|[1-9][0-9]{0,15})(?:\.[0-9]{1,16})?(?:[eE][-+]?[0-9]{1,3})?";
const BOOLEAN: &str = "(?:true|false)";
const NULL: &str = "null";
/// Containers nested inside an unconstrained value (`{"type": "object"}` without
/// `properties`, arrays without `items`): JSON nesting is not regular, so it is bounded.
const ANY_DEPTH: usize = 3;
/// Array length bounds and string lengths beyond this would be spelled out as that many copies
/// in the DFA.
const MAX_REPEAT: u64 = 256;
/// `$ref` chains deeper than this are refused (recursion is caught earlier; this bounds size).
const MAX_REF_DEPTH: usize = 16;

const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "$schema",
    "$id",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$defs",
    "definitions",
];

pub fn json_schema_to_regex(schema: &Value) -> Result<String> {
    Compiler { root: schema, refs: Vec::new() }.value(schema)
}

/// Any JSON value, with containers nested at most `depth` deep (0: scalars only).
pub(super) fn any_value(depth: usize) -> String {
    let scalar = format!("(?:{}|{NUMBER}|{BOOLEAN}|{NULL})", string(0, None));
    if depth == 0 {
        return scalar;
    }
    format!("(?:{scalar}|{}|{})", any_object(depth), any_array(depth))
}

/// Any JSON object, counting itself among the `depth >= 1` levels of nesting allowed.
pub(super) fn any_object(depth: usize) -> String {
    let kv = format!("{}{WS}:{WS}{}", string(0, None), any_value(depth - 1));
    format!(r"\{{{WS}(?:{kv}(?:{WS},{WS}{kv})*)?{WS}\}}")
}

/// Any JSON array, counting itself among the `depth >= 1` levels of nesting allowed.
fn any_array(depth: usize) -> String {
    list(&any_value(depth - 1), 0, None)
}

/// A JSON string of `min..=max` characters (an escape counts as one).
fn string(min: u64, max: Option<u64>) -> String {
    match (min, max) {
        (0, None) => format!(r#""{STRING_CHAR}*""#),
        (min, None) => format!(r#""{STRING_CHAR}{{{min},}}""#),
        (min, Some(max)) => format!(r#""{STRING_CHAR}{{{min},{max}}}""#),
    }
}

/// `[item, item, ...]` with `min..=max` items.
fn list(item: &str, min: u64, max: Option<u64>) -> String {
    let sep_item = format!("{WS},{WS}{item}");
    let more = match max {
        Some(0) => return format!(r"\[{WS}\]"),
        None => format!("(?:{sep_item}){{{},}}", min.saturating_sub(1)),
        Some(max) => format!("(?:{sep_item}){{{},{}}}", min.saturating_sub(1), max - 1),
    };
    let items = format!("{item}{more}");
    let items = if min == 0 { format!("(?:{items})?") } else { items };
    format!(r"\[{WS}{items}{WS}\]")
}

/// The exact JSON text of `v`, as a regex.
fn literal(v: &Value) -> String {
    regex_syntax_escape(&v.to_string())
}

fn regex_syntax_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if r"\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn unsupported(what: impl Into<String>) -> ForgeError {
    ForgeError::InvalidArgument { what: format!("response format: JSON schema: {}", what.into()) }
}

struct Compiler<'a> {
    root: &'a Value,
    /// The `$ref`s being expanded, outermost first: a repeat is recursion.
    refs: Vec<&'a str>,
}

impl<'a> Compiler<'a> {
    fn value(&mut self, schema: &'a Value) -> Result<String> {
        let obj = match schema {
            Value::Bool(true) => return Ok(any_value(ANY_DEPTH)),
            Value::Bool(false) => return Err(unsupported("the schema `false` admits no value")),
            Value::Object(o) => o,
            _ => return Err(unsupported(format!("a schema must be an object, found {schema}"))),
        };
        if let Some(r) = obj.get("$ref") {
            return self.reference(r);
        }
        if let Some(c) = obj.get("const") {
            return Ok(literal(c));
        }
        if let Some(e) = obj.get("enum") {
            let vals = e
                .as_array()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| unsupported("`enum` must be a non-empty array"))?;
            return Ok(format!("(?:{})", vals.iter().map(literal).collect::<Vec<_>>().join("|")));
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(alts) = obj.get(key) {
                return self.alternatives(key, alts);
            }
        }
        let types: Vec<&str> = match obj.get("type") {
            Some(Value::String(t)) => vec![t],
            Some(Value::Array(ts)) if !ts.is_empty() => ts
                .iter()
                .map(|t| t.as_str().ok_or_else(|| unsupported("`type` lists must hold strings")))
                .collect::<Result<_>>()?,
            Some(t) => {
                return Err(unsupported(format!("`type` must be a string or a non-empty list of strings, found {t}")));
            }
            None if obj.contains_key("properties") => vec!["object"],
            None if obj.contains_key("items") => vec!["array"],
            None => {
                check_keys(obj, &[])?;
                return Ok(any_value(ANY_DEPTH));
            }
        };
        // With a type list (`["string", "null"]`) each keyword applies to the types it belongs to.
        let mut allowed = Vec::new();
        for t in &types {
            allowed.extend_from_slice(keywords(t)?);
        }
        check_keys(obj, &allowed)?;
        let alts = types.iter().map(|t| self.typed(t, obj)).collect::<Result<Vec<_>>>()?;
        Ok(if alts.len() == 1 {
            alts.into_iter().next().expect("one alternative")
        } else {
            format!("(?:{})", alts.join("|"))
        })
    }

    fn alternatives(&mut self, key: &str, alts: &'a Value) -> Result<String> {
        let alts = alts
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| unsupported(format!("`{key}` must be a non-empty array")))?;
        if key == "allOf" && alts.len() != 1 {
            return Err(unsupported("`allOf` with more than one schema is not supported"));
        }
        let res = alts.iter().map(|s| self.value(s)).collect::<Result<Vec<_>>>()?;
        Ok(format!("(?:{})", res.join("|")))
    }

    fn reference(&mut self, r: &'a Value) -> Result<String> {
        let r = r.as_str().ok_or_else(|| unsupported("`$ref` must be a string"))?;
        if self.refs.contains(&r) {
            return Err(unsupported(format!(
                "`$ref` {r} is recursive; recursive schemas are not regular and cannot be enforced"
            )));
        }
        if self.refs.len() >= MAX_REF_DEPTH {
            return Err(unsupported(format!("`$ref` chains deeper than {MAX_REF_DEPTH}")));
        }
        let target = ["#/$defs/", "#/definitions/"]
            .iter()
            .find_map(|prefix| {
                let name = r.strip_prefix(prefix)?;
                self.root.get(&prefix[2..prefix.len() - 1])?.get(name)
            })
            .ok_or_else(|| {
                unsupported(format!(
                    "`$ref` {r}: only references into #/$defs or #/definitions of this schema are supported"
                ))
            })?;
        self.refs.push(r);
        let re = self.value(target);
        self.refs.pop();
        re
    }

    fn typed(&mut self, t: &str, obj: &'a Map<String, Value>) -> Result<String> {
        match t {
            "object" => self.object(obj),
            "array" => self.array(obj),
            "string" => string_schema(obj),
            "integer" => Ok(INTEGER.to_string()),
            "number" => Ok(NUMBER.to_string()),
            "boolean" => Ok(BOOLEAN.to_string()),
            _ => Ok(NULL.to_string()),
        }
    }

    fn object(&mut self, obj: &'a Map<String, Value>) -> Result<String> {
        let additional = obj.get("additionalProperties");
        let extra_value = match additional {
            None | Some(Value::Bool(false)) => None,
            // Counted as one level inside this object, like an array's unconstrained items.
            Some(Value::Bool(true)) => Some(any_value(ANY_DEPTH - 1)),
            Some(s @ Value::Object(_)) => Some(self.value(s)?),
            Some(other) => return Err(unsupported(format!("`additionalProperties` must be a boolean or a schema, found {other}"))),
        };
        let Some(props) = obj.get("properties") else {
            return Ok(match (additional, extra_value) {
                (None, _) => any_object(ANY_DEPTH),
                (_, None) => format!(r"\{{{WS}\}}"),
                (_, Some(v)) => format!(r"\{{{WS}{}{WS}\}}", properties(&[(extra_members(&string(0, None), &v), false)])),
            });
        };
        let props = props.as_object().ok_or_else(|| unsupported("`properties` must be an object"))?;
        let required: Vec<&str> = match obj.get("required") {
            None => Vec::new(),
            Some(Value::Array(r)) => r
                .iter()
                .map(|v| v.as_str().ok_or_else(|| unsupported("`required` must list strings")))
                .collect::<Result<_>>()?,
            Some(_) => return Err(unsupported("`required` must be an array")),
        };
        if let Some(missing) = required.iter().find(|r| !props.contains_key(**r)) {
            return Err(unsupported(format!("required property `{missing}` is not in `properties`")));
        }
        // The schema's order when serde_json keeps it (feature `preserve_order`), else sorted.
        let mut kvs = Vec::with_capacity(props.len() + 1);
        for (name, schema) in props {
            let key = regex_syntax_escape(&Value::String(name.clone()).to_string());
            kvs.push((format!("{key}{WS}:{WS}{}", self.value(schema)?), required.contains(&name.as_str())));
        }
        if let Some(v) = extra_value {
            let names: Vec<&str> = props.keys().map(String::as_str).collect();
            kvs.push((extra_members(&key_except(&names), &v), false));
        }
        Ok(format!(r"\{{{WS}{}{WS}\}}", properties(&kvs)))
    }

    fn array(&mut self, obj: &'a Map<String, Value>) -> Result<String> {
        let item = match obj.get("items") {
            Some(items) => self.value(items)?,
            None => any_value(ANY_DEPTH - 1),
        };
        let (min, max) = bounds(obj, "minItems", "maxItems")?;
        Ok(list(&item, min, max))
    }
}

/// The members of an object, in order, separated by commas, where optional ones may be absent.
/// The first member present decides where commas go, so the regex branches on it; every member
/// after it is `,kv` (or `(?:,kv)?` if optional). Size is quadratic in the number of leading
/// optional members, not exponential.
fn properties(kvs: &[(String, bool)]) -> String {
    let first_required = kvs.iter().position(|(_, req)| *req);
    let tail = |from: usize| -> String {
        kvs[from..]
            .iter()
            .map(|(kv, req)| if *req { format!("{WS},{WS}{kv}") } else { format!("(?:{WS},{WS}{kv})?") })
            .collect()
    };
    let last_first = first_required.unwrap_or(kvs.len().saturating_sub(1));
    let mut alts: Vec<String> =
        kvs.iter().take(last_first + 1).enumerate().map(|(k, (kv, _))| format!("{kv}{}", tail(k + 1))).collect();
    if first_required.is_none() {
        alts.push(String::new());
    }
    format!("(?:{})", alts.join("|"))
}

/// One or more `key: value` members, comma-separated: the additional properties of an object.
fn extra_members(key: &str, value: &str) -> String {
    let kv = format!("{key}{WS}:{WS}{value}");
    format!("{kv}(?:{WS},{WS}{kv})*")
}

/// A JSON object key (quotes included) that is none of `names`, written without escapes. A name
/// that needs an escape in JSON cannot be spelled without one, so only the others are excluded.
///
/// The names form a trie; at each node the key may end (unless a name ends there), go on with
/// one of the node's children, or leave the trie with any other character and then go on freely.
/// The regex grows with the names' total length.
fn key_except(names: &[&str]) -> String {
    #[derive(Default)]
    struct Node {
        is_name: bool,
        next: std::collections::BTreeMap<char, Node>,
    }
    const PLAIN: &str = r#"[^"\\\x00-\x1F]"#;
    fn regex(node: &Node) -> String {
        let mut alts = Vec::with_capacity(node.next.len() + 2);
        if !node.is_name {
            alts.push(String::new());
        }
        for (c, child) in &node.next {
            alts.push(format!("{}{}", regex_syntax_escape(&c.to_string()), regex(child)));
        }
        let others: String = node.next.keys().map(|c| regex_syntax_escape(&c.to_string())).collect();
        alts.push(format!(r#"[^"\\\x00-\x1F{others}]{PLAIN}*"#));
        format!("(?:{})", alts.join("|"))
    }
    let mut root = Node::default();
    for name in names.iter().filter(|n| !n.chars().any(|c| c == '"' || c == '\\' || c < '\u{20}')) {
        let node = name.chars().fold(&mut root, |node, c| node.next.entry(c).or_default());
        node.is_name = true;
    }
    format!(r#""{}""#, regex(&root))
}

fn string_schema(obj: &Map<String, Value>) -> Result<String> {
    if let Some(p) = obj.get("pattern") {
        if obj.contains_key("minLength") || obj.contains_key("maxLength") || obj.contains_key("format") {
            return Err(unsupported("`pattern` together with `minLength`, `maxLength` or `format` is not supported"));
        }
        let p = p.as_str().ok_or_else(|| unsupported("`pattern` must be a string"))?;
        // JSON Schema patterns are unanchored; an explicit ^...$ is the common case and is what
        // the value has to match in full here.
        let p = p.strip_prefix('^').unwrap_or(p);
        let p = p.strip_suffix('$').filter(|s| !s.ends_with('\\')).unwrap_or(p);
        return Ok(format!(r#""(?:{p})""#));
    }
    if let Some(f) = obj.get("format") {
        let d2 = "[0-9]{2}";
        let date = format!("[0-9]{{4}}-{d2}-{d2}");
        let time = format!(r"{d2}:{d2}:{d2}(?:\.[0-9]{{1,9}})?(?:Z|[+-]{d2}:{d2})?");
        let h = "[0-9a-fA-F]";
        let re = match f.as_str() {
            Some("date") => date,
            Some("time") => time,
            Some("date-time") => format!("{date}T{time}"),
            Some("uuid") => format!("{h}{{8}}-{h}{{4}}-{h}{{4}}-{h}{{4}}-{h}{{12}}"),
            _ => return Err(unsupported(format!("string `format` {f} (supported: date, time, date-time, uuid)"))),
        };
        return Ok(format!(r#""{re}""#));
    }
    let (min, max) = bounds(obj, "minLength", "maxLength")?;
    Ok(string(min, max))
}

fn bounds(obj: &Map<String, Value>, min_key: &str, max_key: &str) -> Result<(u64, Option<u64>)> {
    let get = |k: &str| -> Result<Option<u64>> {
        match obj.get(k) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n <= MAX_REPEAT => Ok(Some(n)),
                _ => Err(unsupported(format!("`{k}` must be an integer from 0 to {MAX_REPEAT}, found {v}"))),
            },
        }
    };
    let (min, max) = (get(min_key)?.unwrap_or(0), get(max_key)?);
    if max.is_some_and(|m| m < min) {
        return Err(unsupported(format!("`{max_key}` is below `{min_key}`")));
    }
    Ok((min, max))
}

/// The keywords each type understands.
fn keywords(t: &str) -> Result<&'static [&'static str]> {
    Ok(match t {
        "object" => &["properties", "required", "additionalProperties"],
        "array" => &["items", "minItems", "maxItems"],
        "string" => &["minLength", "maxLength", "pattern", "format"],
        "integer" | "number" | "boolean" | "null" => &[],
        _ => return Err(unsupported(format!("unknown type `{t}`"))),
    })
}

/// Refuses keywords this compiler would otherwise silently ignore.
fn check_keys(obj: &Map<String, Value>, allowed: &[&str]) -> Result<()> {
    let known = |k: &str| k == "type" || allowed.contains(&k) || ANNOTATIONS.contains(&k);
    match obj.keys().find(|k| !known(k)) {
        Some(k) => Err(unsupported(format!("the keyword `{k}` is not supported here"))),
        None => Ok(()),
    }
}
