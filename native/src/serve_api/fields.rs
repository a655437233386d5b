//! Typed reads of one JSON object's fields, each error naming the field by its path
//! (`response_format.json_schema.schema`, `messages.[2].content`) as OpenAI's `param` does.

use serde_json::{Map, Value};

use super::ApiError;

type Result<T> = std::result::Result<T, ApiError>;

/// One JSON object and the path it was found at.
pub(crate) struct Fields<'a> {
    obj: &'a Map<String, Value>,
    path: String,
}

/// The name of a JSON value's type, for "expected X, got Y" messages.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'a> Fields<'a> {
    /// The request body's top level, which must be an object.
    pub fn top(v: &'a Value) -> Result<Fields<'a>> {
        match v {
            Value::Object(obj) => Ok(Fields { obj, path: String::new() }),
            other => Err(ApiError::InvalidJson(format!("the body must be a JSON object, not {}", type_name(other)))),
        }
    }

    /// An element found at `path` that must be an object.
    pub fn at(v: &'a Value, path: String) -> Result<Fields<'a>> {
        match v {
            Value::Object(obj) => Ok(Fields { obj, path }),
            other => Err(ApiError::field(path.clone(), format!("`{path}` must be an object, not {}", type_name(other)))),
        }
    }

    /// The path of field `name`.
    pub fn param(&self, name: &str) -> String {
        if self.path.is_empty() { name.to_owned() } else { format!("{}.{name}", self.path) }
    }

    fn wrong(&self, name: &str, expected: &str, got: &Value) -> ApiError {
        let p = self.param(name);
        ApiError::field(p.clone(), format!("`{p}` must be {expected}, not {}", type_name(got)))
    }

    /// The field's value; an explicit `null` counts as absent, since SDKs send optional fields as null.
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.obj.get(name).filter(|v| !v.is_null())
    }

    /// Whether any field is set (not null).
    pub fn has_values(&self) -> bool {
        self.obj.values().any(|v| !v.is_null())
    }

    pub fn string(&self, name: &str) -> Result<Option<&'a str>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong(name, "a string", v)),
        }
    }

    pub fn required_string(&self, name: &str) -> Result<&'a str> {
        self.string(name)?.ok_or_else(|| {
            let p = self.param(name);
            ApiError::field(p.clone(), format!("`{p}` is required"))
        })
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong(name, "a boolean", v)),
        }
    }

    /// A number within `[lo, hi]`.
    pub fn number(&self, name: &str, lo: f64, hi: f64) -> Result<Option<f64>> {
        let Some(v) = self.get(name) else { return Ok(None) };
        let x = v.as_f64().ok_or_else(|| self.wrong(name, "a number", v))?;
        if !(lo..=hi).contains(&x) {
            let p = self.param(name);
            return Err(ApiError::field(p.clone(), format!("`{p}` must be between {lo} and {hi}, got {x}")));
        }
        Ok(Some(x))
    }

    /// An integer within `[lo, hi]` (a float such as `1.5`, or `1e30`, is refused).
    pub fn integer(&self, name: &str, lo: i64, hi: i64) -> Result<Option<i64>> {
        let Some(v) = self.get(name) else { return Ok(None) };
        let out_of_range = || {
            let p = self.param(name);
            ApiError::field(p.clone(), format!("`{p}` must be an integer between {lo} and {hi}, got {v}"))
        };
        let x = match v {
            Value::Number(n) if n.is_i64() || n.is_u64() => n.as_i64().ok_or_else(out_of_range)?,
            other => return Err(self.wrong(name, "an integer", other)),
        };
        if !(lo..=hi).contains(&x) {
            return Err(out_of_range());
        }
        Ok(Some(x))
    }

    pub fn object(&self, name: &str) -> Result<Option<Fields<'a>>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => Fields::at(v, self.param(name)).map(Some),
        }
    }

    pub fn array(&self, name: &str) -> Result<Option<&'a Vec<Value>>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(v) => Err(self.wrong(name, "an array", v)),
        }
    }
}
