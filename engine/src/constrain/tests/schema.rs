//! JSON schema → regex, checked by matching texts against the regex (regex-automata's search).

use serde_json::json;

use super::full_match;
use crate::constrain::json_schema_to_regex;
use crate::error::ForgeError;

fn accepts(schema: serde_json::Value, yes: &[&str], no: &[&str]) {
    let re = json_schema_to_regex(&schema).unwrap();
    for t in yes {
        assert!(full_match(&re, t), "{schema} should accept {t:?}; regex {re}");
    }
    for t in no {
        assert!(!full_match(&re, t), "{schema} should reject {t:?}; regex {re}");
    }
}

#[test]
fn scalars() {
    accepts(
        json!({"type": "integer"}),
        &["0", "-7", "1234567890123456"],
        &["01", "1.5", "+1", "", "12345678901234567"],
    );
    accepts(json!({"type": "number"}), &["0", "-0.5", "3.25e+10", "1E5"], &["1.", ".5", "1e", "NaN"]);
    accepts(json!({"type": "boolean"}), &["true", "false"], &["True", "1"]);
    accepts(json!({"type": "null"}), &["null"], &["None", ""]);
    accepts(json!({"type": ["integer", "null"]}), &["3", "null"], &["\"3\""]);
}

#[test]
fn strings() {
    accepts(
        json!({"type": "string"}),
        &[r#""""#, r#""a \"q\" \\ \u00e9 é""#],
        &[r#""a"b""#, "\"\n\"", r#""\x""#, "abc"],
    );
    accepts(
        json!({"type": "string", "minLength": 2, "maxLength": 3}),
        &[r#""ab""#, r#""a\nc""#],
        &[r#""a""#, r#""abcd""#],
    );
    accepts(json!({"type": "string", "pattern": "^[A-Z][a-z]+$"}), &[r#""Ann""#], &[r#""ann""#, r#""A""#]);
    accepts(json!({"type": "string", "format": "date"}), &[r#""2024-07-26""#], &[r#""2024-7-26""#]);
    accepts(json!({"type": "string", "format": "uuid"}), &[r#""123e4567-e89b-12d3-a456-426614174000""#], &[r#""123""#]);
    // A type list applies each keyword to its own type.
    accepts(json!({"type": ["string", "null"], "maxLength": 1}), &[r#""a""#, "null"], &[r#""ab""#]);
}

#[test]
fn enum_const_and_alternatives() {
    accepts(json!({"enum": ["a\"b", 1, null, [1, 2]]}), &[r#""a\"b""#, "1", "null", "[1,2]"], &[r#""a""#, "2"]);
    accepts(json!({"const": {"k": "v"}}), &[r#"{"k":"v"}"#], &[r#"{"k": "w"}"#]);
    accepts(json!({"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 1}]}), &["5", r#""x""#], &["true"]);
    accepts(json!({"oneOf": [{"type": "boolean"}, {"type": "null"}]}), &["true", "null"], &["0"]);
}

#[test]
fn objects_keep_order_and_may_omit_optional_properties() {
    // a, b, c are in the schema's order whether or not serde_json preserves it.
    let schema = json!({"type": "object", "additionalProperties": false, "required": ["b"],
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}, "c": {"type": "integer"}}});
    accepts(
        schema,
        &[
            r#"{"b":1}"#,
            r#"{"a":1,"b":2}"#,
            r#"{"b":1,"c":2}"#,
            r#"{"a":1,"b":2,"c":3}"#,
            "{\n  \"a\": 1,\n  \"b\": 2\n}",
        ],
        &[
            "{}",
            r#"{"a":1}"#,
            r#"{"b":1,}"#,
            r#"{,"b":1}"#,
            r#"{"c":1,"b":2}"#,
            r#"{"b":1,"d":2}"#,
            r#" {"b":1}"#,
            r#"{"b":1} "#,
        ],
    );
    let all_optional = json!({"type": "object", "properties": {"a": {"type": "null"}, "b": {"type": "null"}}});
    accepts(
        all_optional,
        &["{}", "{ }", r#"{"a":null}"#, r#"{"b":null}"#, r#"{"a":null,"b":null}"#],
        &[r#"{"b":null,"a":null}"#],
    );
    // No properties: any object, nesting bounded.
    accepts(json!({"type": "object"}), &["{}", r#"{"x":[1,{"y":null}]}"#], &["[]", r#"{"x":[[[[1]]]]}"#]);
}

#[test]
fn additional_properties_follow_the_declared_ones() {
    // `true`: any further members after the declared ones, never a declared name again.
    let open = json!({"type": "object", "required": ["a"], "additionalProperties": true,
        "properties": {"a": {"type": "integer"}, "ab": {"type": "integer"}}});
    accepts(
        open,
        &[r#"{"a":1}"#, r#"{"a":1,"x":[1,"y"]}"#, r#"{"a":1,"ab":2,"abc":{},"b":null,"":true}"#, r#"{"a":1,"é":"z"}"#],
        &[r#"{"a":1,"a":2}"#, r#"{"a":1,"ab":2,"ab":3}"#, r#"{"x":1,"a":1}"#, r#"{"a":1,"\u0061":2}"#, r#"{"a":1,"x":}"#],
    );
    // A schema: each additional value must match it.
    let typed = json!({"type": "object", "properties": {"id": {"type": "string"}}, "additionalProperties": {"type": "integer"}});
    accepts(typed, &["{}", r#"{"id":"k"}"#, r#"{"id":"k","n":1,"m":-2}"#, r#"{"n":1}"#], &[r#"{"id":"k","n":"1"}"#, r#"{"id":"k","id":3}"#]);
    // Without `properties`: a map; `false` is the empty object; absent is any object.
    let map = json!({"type": "object", "additionalProperties": {"type": "boolean"}});
    accepts(map, &["{}", r#"{"a":true}"#, r#"{"a":true, "b\n":false}"#], &[r#"{"a":1}"#, r#"{"a":true,}"#]);
    accepts(json!({"type": "object", "additionalProperties": false}), &["{}", "{ }"], &[r#"{"a":1}"#]);
    accepts(json!({"type": "object", "properties": {"a": {"type": "null"}}}), &[r#"{"a":null}"#], &[r#"{"a":null,"b":1}"#]);
    // A declared name that needs an escape cannot be spelled by an additional key anyway.
    accepts(json!({"type": "object", "properties": {"q\"": {"type": "null"}}, "additionalProperties": true}), &[r#"{"q\"":null,"q":1}"#], &[]);
}

#[test]
fn arrays_and_refs() {
    accepts(
        json!({"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3}),
        &["[1]", "[1, 2,3]"],
        &["[]", "[1,2,3,4]", "[1,]"],
    );
    accepts(json!({"type": "array", "maxItems": 0}), &["[]"], &["[1]"]);
    let schema = json!({"$defs": {"pt": {"type": "object", "required": ["x"], "properties": {"x": {"type": "integer"}}}},
        "type": "array", "items": {"$ref": "#/$defs/pt"}});
    accepts(schema, &[r#"[{"x":1},{"x":2}]"#, "[]"], &[r#"[{"y":1}]"#]);
}

#[test]
fn unsupported_schemas_are_invalid_arguments() {
    let bad = [
        json!({"$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}}}, "$ref": "#/$defs/n"}),
        json!({"type": "object", "patternProperties": {"^a": {}}}),
        json!({"type": "object", "additionalProperties": 1}),
        json!({"type": "object", "additionalProperties": {"type": "tuple"}}),
        json!({"type": "integer", "minimum": 0}),
        json!({"type": "string", "format": "email"}),
        json!({"type": "array", "maxItems": 100000}),
        json!({"type": "tuple"}),
        json!({"type": "object", "properties": {}, "required": ["a"]}),
        json!({"$ref": "https://example.com/schema"}),
        json!({"enum": []}),
        json!(false),
        json!(3),
    ];
    for schema in bad {
        match json_schema_to_regex(&schema) {
            Err(ForgeError::InvalidArgument { what }) => assert!(what.contains("JSON schema"), "{what}"),
            other => panic!("{schema}: expected InvalidArgument, got {other:?}"),
        }
    }
}
