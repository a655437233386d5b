//! `/v1/chat/completions` and `/v1/completions` request bodies, parsed and checked against
//! [`Limits`].

use serde_json::Value;

use super::fields::Fields;
use super::{ApiError, Limits};

type Result<T> = std::result::Result<T, ApiError>;

/// Sampling settings with OpenAI's defaults filled in (temperature 1, top_p 1, no penalties).
#[derive(Clone, Debug, PartialEq)]
pub struct Sampling {
    pub temperature: f32,
    pub top_p: f32,
    /// 0: all tokens.
    pub top_k: usize,
    pub min_p: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// 1: off.
    pub repetition_penalty: f32,
    pub seed: Option<u64>,
}

/// Structured output: what the completion's text must match.
#[derive(Clone, Debug, PartialEq)]
pub enum Constraint {
    /// `response_format: {"type": "json_schema", "json_schema": {"schema": {...}}}`.
    JsonSchema(Value),
    /// `response_format: {"type": "json_object"}`: any JSON object.
    JsonObject,
    /// `response_format: {"type": "regex", "regex": "..."}` or a top-level `"regex"` (extension).
    Regex(String),
}

impl Constraint {
    /// The key built grammars are cached by: the constraint's text. Object keys keep their order,
    /// since a schema's property order may decide the order of the generated fields.
    pub fn cache_key(&self) -> String {
        match self {
            Constraint::JsonSchema(s) => format!("schema:{s}"),
            Constraint::JsonObject => "json_object".into(),
            Constraint::Regex(r) => format!("regex:{r}"),
        }
    }
}

/// What both endpoints share.
#[derive(Clone, Debug, PartialEq)]
pub struct Common {
    /// `None`: as much as the context leaves (chat) or 16 (completions), as OpenAI.
    pub max_tokens: Option<usize>,
    pub sampling: Sampling,
    /// Non-empty strings; generation ends at the first, which is not returned.
    pub stop: Vec<String>,
    /// Completions per prompt.
    pub n: usize,
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with the token counts.
    pub include_usage: bool,
    pub constraint: Option<Constraint>,
    /// `return_tokens_as_token_ids` (vLLM's extension): log-probabilities name each token
    /// `token_id:ID` rather than by its text, which may be ambiguous or not valid UTF-8.
    pub tokens_as_ids: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    /// `None`: no log-probabilities; `Some(k)`: each token's, with `k` alternatives.
    pub logprobs: Option<usize>,
    pub common: Common,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct CompletionRequest {
    /// One or more prompts; choice `i * n + j` is prompt `i`'s `j`-th completion.
    pub prompts: Vec<Prompt>,
    /// Legacy `logprobs: k`: each token's log-probability with `k` alternatives.
    pub logprobs: Option<usize>,
    /// `echo`: the text returned starts with the prompt, and with `logprobs` so do the
    /// log-probabilities (the first token's `null`). `max_tokens` may then be 0.
    pub echo: bool,
    pub common: Common,
}

fn parse_json(body: &[u8]) -> Result<Value> {
    let text = std::str::from_utf8(body).map_err(|e| ApiError::InvalidJson(format!("the body is not UTF-8: invalid byte at offset {}", e.valid_up_to())))?;
    serde_json::from_str(text).map_err(|e| ApiError::InvalidJson(e.to_string()))
}

fn check_model(f: &Fields, limits: &Limits) -> Result<()> {
    let model = f.required_string("model")?;
    if model != limits.model_id {
        return Err(ApiError::ModelNotFound(model.to_owned()));
    }
    Ok(())
}

fn unsupported(param: &str, what: &str) -> ApiError {
    ApiError::field(param, format!("`{param}` is not supported by this server: {what}"))
}

pub fn parse_chat(body: &[u8], limits: &Limits) -> Result<ChatRequest> {
    let v = parse_json(body)?;
    let f = Fields::top(&v)?;
    check_model(&f, limits)?;
    let list = f.array("messages")?.ok_or_else(|| ApiError::field("messages", "`messages` is required"))?;
    if list.is_empty() {
        return Err(ApiError::field("messages", "`messages` must hold at least one message"));
    }
    let messages = list.iter().enumerate().map(|(i, m)| message(m, format!("messages.[{i}]"))).collect::<Result<Vec<_>>>()?;
    if f.array("tools")?.is_some_and(|t| !t.is_empty()) {
        return Err(unsupported("tools", "tool calls are not implemented"));
    }
    let top = f.integer("top_logprobs", 0, limits.max_top_logprobs as i64)?;
    let logprobs = match (f.bool("logprobs")?.unwrap_or(false), top) {
        (true, k) => Some(k.unwrap_or(0) as usize),
        (false, None) => None,
        (false, Some(_)) => return Err(ApiError::field("top_logprobs", "`top_logprobs` needs `logprobs: true`")),
    };
    // `max_completion_tokens` is OpenAI's newer name; it wins where both are sent.
    let max_tokens = match f.get("max_completion_tokens") {
        Some(_) => max_tokens(&f, "max_completion_tokens", 1, limits)?,
        None => max_tokens(&f, "max_tokens", 1, limits)?,
    };
    let common = common(&f, limits, max_tokens)?;
    Ok(ChatRequest { messages, logprobs, common })
}

/// One chat message: `content` a string, or an array of `{"type": "text", "text": ...}` parts
/// (joined by newlines); `null` content (an assistant turn that only called tools) is empty.
fn message(v: &Value, path: String) -> Result<Message> {
    let f = Fields::at(v, path)?;
    let role = match f.required_string("role")? {
        // OpenAI's newer name for the system role; chat templates know only `system`.
        "developer" => "system",
        r @ ("system" | "user" | "assistant" | "tool") => r,
        other => return Err(ApiError::field(f.param("role"), format!("unknown role `{other}` (system, developer, user, assistant or tool)"))),
    };
    let content = match f.get("content") {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (i, p) in parts.iter().enumerate() {
                let pf = Fields::at(p, format!("{}.[{i}]", f.param("content")))?;
                match pf.required_string("type")? {
                    "text" => texts.push(pf.required_string("text")?),
                    other => return Err(unsupported(&pf.param("type"), &format!("content parts of type `{other}` (only text)"))),
                }
            }
            texts.join("\n")
        }
        Some(_) => return Err(ApiError::field(f.param("content"), format!("`{}` must be a string or an array of text parts", f.param("content")))),
    };
    Ok(Message { role: role.to_owned(), content })
}

pub fn parse_completion(body: &[u8], limits: &Limits) -> Result<CompletionRequest> {
    let v = parse_json(body)?;
    let f = Fields::top(&v)?;
    check_model(&f, limits)?;
    let prompts = prompts(f.get("prompt").ok_or_else(|| ApiError::field("prompt", "`prompt` is required"))?, limits)?;
    let echo = f.bool("echo")?.unwrap_or(false);
    if f.string("suffix")?.is_some_and(|s| !s.is_empty()) {
        return Err(unsupported("suffix", "insertion is not implemented"));
    }
    let logprobs = f.integer("logprobs", 0, limits.max_completion_logprobs as i64)?.map(|k| k as usize);
    // 0 is allowed, as OpenAI allows it: with `echo` and `logprobs`, the prompt is only scored.
    let common = common(&f, limits, max_tokens(&f, "max_tokens", 0, limits)?)?;
    if let Some(b) = f.integer("best_of", 1, limits.max_n as i64)?
        && b as usize != common.n
    {
        return Err(unsupported("best_of", "only best_of equal to n (every completion is returned)"));
    }
    if prompts.len() * common.n > limits.max_choices {
        return Err(ApiError::field("n", format!("{} prompts × n = {} completions; at most {} per request", prompts.len(), prompts.len() * common.n, limits.max_choices)));
    }
    Ok(CompletionRequest { prompts, logprobs, echo, common })
}

/// `prompt`: a string, an array of strings, an array of token ids, or an array of such arrays.
fn prompts(v: &Value, limits: &Limits) -> Result<Vec<Prompt>> {
    let bad = || ApiError::field("prompt", "`prompt` must be a string, an array of strings, an array of token ids or an array of arrays of token ids");
    let ids = |a: &[Value]| -> Result<Vec<u32>> {
        a.iter()
            .map(|x| match x.as_u64() {
                Some(id) if (id as usize) < limits.vocab => Ok(id as u32),
                Some(id) => Err(ApiError::field("prompt", format!("token id {id} is outside the vocabulary of {}", limits.vocab))),
                None => Err(bad()),
            })
            .collect()
    };
    let list = match v {
        Value::String(s) => return Ok(vec![Prompt::Text(s.clone())]),
        Value::Array(a) if !a.is_empty() => a,
        Value::Array(_) => return Err(ApiError::field("prompt", "`prompt` must not be an empty array")),
        _ => return Err(bad()),
    };
    if list.iter().all(Value::is_number) {
        return Ok(vec![Prompt::Tokens(ids(list)?)]);
    }
    if list.len() > limits.max_choices {
        return Err(ApiError::field("prompt", format!("{} prompts; at most {} per request", list.len(), limits.max_choices)));
    }
    list.iter()
        .map(|p| match p {
            Value::String(s) => Ok(Prompt::Text(s.clone())),
            Value::Array(a) => Ok(Prompt::Tokens(ids(a)?)),
            _ => Err(bad()),
        })
        .collect()
}

fn max_tokens(f: &Fields, name: &str, min: i64, limits: &Limits) -> Result<Option<usize>> {
    Ok(f.integer(name, min, limits.ctx as i64)?.map(|m| m as usize))
}

fn common(f: &Fields, limits: &Limits, max_tokens: Option<usize>) -> Result<Common> {
    let stream = f.bool("stream")?.unwrap_or(false);
    let include_usage = match f.object("stream_options")? {
        Some(o) => o.bool("include_usage")?.unwrap_or(false),
        None => false,
    };
    if f.object("logit_bias")?.is_some_and(|o| o.has_values()) {
        return Err(unsupported("logit_bias", "token biases are not implemented"));
    }
    let n = f.integer("n", 1, limits.max_n as i64)?.unwrap_or(1) as usize;
    let tokens_as_ids = f.bool("return_tokens_as_token_ids")?.unwrap_or(false);
    Ok(Common { max_tokens, sampling: sampling(f, limits)?, stop: stop(f, limits)?, n, stream, include_usage, constraint: constraint(f)?, tokens_as_ids })
}

fn sampling(f: &Fields, limits: &Limits) -> Result<Sampling> {
    let num = |name: &str, lo: f64, hi: f64, default: f64| -> Result<f32> { Ok(f.number(name, lo, hi)?.unwrap_or(default) as f32) };
    let repetition_penalty = num("repetition_penalty", 0.0, 10.0, 1.0)?;
    if repetition_penalty <= 0.0 {
        return Err(ApiError::field("repetition_penalty", "`repetition_penalty` must be above 0 (1 is off)"));
    }
    // -1 is vLLM's spelling of "all tokens"; a k beyond the vocabulary keeps all too.
    let top_k = f.integer("top_k", -1, i64::MAX)?.map_or(0, |k| if k < 0 { 0 } else { (k as u64).min(limits.vocab as u64) as usize });
    Ok(Sampling {
        temperature: num("temperature", 0.0, 2.0, 1.0)?,
        top_p: num("top_p", 0.0, 1.0, 1.0)?,
        top_k,
        min_p: num("min_p", 0.0, 1.0, 0.0)?,
        presence_penalty: num("presence_penalty", -2.0, 2.0, 0.0)?,
        frequency_penalty: num("frequency_penalty", -2.0, 2.0, 0.0)?,
        repetition_penalty,
        // OpenAI's seed is any 64-bit integer; negative ones keep their bits.
        seed: f.integer("seed", i64::MIN, i64::MAX)?.map(|s| s as u64),
    })
}

/// `stop`: a string or an array of strings; empty strings are dropped (they would end every
/// completion before it starts).
fn stop(f: &Fields, limits: &Limits) -> Result<Vec<String>> {
    let list: Vec<&Value> = match f.get("stop") {
        None => return Ok(Vec::new()),
        Some(v @ Value::String(_)) => vec![v],
        Some(Value::Array(a)) if a.len() <= limits.max_stop => a.iter().collect(),
        Some(Value::Array(a)) => return Err(ApiError::field("stop", format!("{} stop strings; at most {}", a.len(), limits.max_stop))),
        Some(_) => return Err(ApiError::field("stop", "`stop` must be a string or an array of strings")),
    };
    let mut out = Vec::with_capacity(list.len());
    for v in list {
        let s = v.as_str().ok_or_else(|| ApiError::field("stop", "`stop` must be a string or an array of strings"))?;
        if s.len() > limits.max_stop_bytes {
            return Err(ApiError::field("stop", format!("a stop string of {} bytes; at most {}", s.len(), limits.max_stop_bytes)));
        }
        if !s.is_empty() {
            out.push(s.to_owned());
        }
    }
    Ok(out)
}

fn constraint(f: &Fields) -> Result<Option<Constraint>> {
    let from_format = match f.object("response_format")? {
        None => None,
        Some(rf) => match rf.required_string("type")? {
            "text" => None,
            "json_object" => Some(Constraint::JsonObject),
            "json_schema" => {
                let js = rf.object("json_schema")?.ok_or_else(|| ApiError::field(rf.param("json_schema"), "`response_format.json_schema` is required for type json_schema"))?;
                js.string("name")?;
                js.bool("strict")?;
                match js.get("schema") {
                    // OpenAI makes the schema optional; without one, any JSON object will do.
                    None => Some(Constraint::JsonObject),
                    Some(s @ (Value::Object(_) | Value::Bool(_))) => Some(Constraint::JsonSchema(s.clone())),
                    Some(_) => return Err(ApiError::field(js.param("schema"), "`response_format.json_schema.schema` must be a JSON Schema object")),
                }
            }
            "regex" => Some(Constraint::Regex(rf.required_string("regex")?.to_owned())),
            other => return Err(ApiError::field(rf.param("type"), format!("unknown response_format type `{other}` (text, json_object, json_schema or regex)"))),
        },
    };
    match (from_format, f.string("regex")?) {
        (Some(_), Some(_)) => Err(ApiError::field("regex", "give either `regex` or a constraining `response_format`, not both")),
        (None, Some(r)) => Ok(Some(Constraint::Regex(r.to_owned()))),
        (c, None) => Ok(c),
    }
}

/// The completion budget once the prompt is tokenized: the request's `max_tokens`, or by default
/// what the context leaves (capped at `default_cap`). A prompt that leaves no room, or a budget
/// that does not fit beside it, is refused as OpenAI does (`context_length_exceeded`).
pub fn check_context(prompt_len: usize, requested: Option<usize>, default_cap: Option<usize>, limits: &Limits) -> Result<usize> {
    if prompt_len == 0 {
        return Err(ApiError::field("prompt", "the prompt is empty"));
    }
    let room = limits.ctx.saturating_sub(prompt_len);
    match requested {
        Some(m) if m <= room => Ok(m),
        Some(m) => Err(ApiError::ContextLength { ctx: limits.ctx, prompt: prompt_len, completion: m }),
        None if room == 0 => Err(ApiError::ContextLength { ctx: limits.ctx, prompt: prompt_len, completion: 1 }),
        None => Ok(default_cap.map_or(room, |c| c.min(room))),
    }
}
