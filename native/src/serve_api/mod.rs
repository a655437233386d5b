//! The OpenAI wire format of `forge serve`: request parsing and validation, error objects, and
//! the response and chunk shapes. Pure: bytes in, typed values or an [`ApiError`] out.
//!
//! Requests are read field by field from a `serde_json::Value` rather than derived, so that each
//! error names its field (`param` in OpenAI's error object) and says what was expected. Unknown
//! fields are ignored, as OpenAI-compatible servers do: clients send `user`, `tools: []`,
//! `parallel_tool_calls` and whatever the next SDK version adds.

mod fields;
mod request;
pub mod response;
#[cfg(test)]
mod tests;

pub use request::{ChatRequest, Common, CompletionRequest, Constraint, Message, Prompt, Sampling, check_context, parse_chat, parse_completion};

/// Bounds a request must respect; everything outside them is a 400 before the engine sees it.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The id `/v1/models` lists; `model` must equal it.
    pub model_id: String,
    /// Positions one sequence may use (prompt + completion).
    pub ctx: usize,
    /// Token ids in a prompt must be below this.
    pub vocab: usize,
    /// `n` at most.
    pub max_n: usize,
    /// Choices one request may ask for in all (`/v1/completions`: prompts × n).
    pub max_choices: usize,
    /// Stop strings at most, and bytes each.
    pub max_stop: usize,
    pub max_stop_bytes: usize,
    /// `top_logprobs` (chat) at most; `/v1/completions`' `logprobs` at most.
    pub max_top_logprobs: usize,
    pub max_completion_logprobs: usize,
}

impl Limits {
    /// OpenAI's bounds where it has them (`top_logprobs` ≤ 20, legacy `logprobs` ≤ 5); stop
    /// strings are more generous than its 4, since local clients often send a template's
    /// several end markers.
    pub fn new(model_id: impl Into<String>, ctx: usize, vocab: usize) -> Limits {
        Limits { model_id: model_id.into(), ctx, vocab, max_n: 8, max_choices: 16, max_stop: 16, max_stop_bytes: 256, max_top_logprobs: 20, max_completion_logprobs: 5 }
    }
}

/// Why a request failed, as the client sees it: an HTTP status and OpenAI's error object
/// `{"error": {"message", "type", "param", "code"}}`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// OpenAI's own wording, which clients and their users recognise.
    #[error("We could not parse the JSON body of your request. ({0})")]
    InvalidJson(String),
    #[error("{message}")]
    InvalidField { param: String, message: String },
    /// Invalid, with no one field to blame (the engine refused the request).
    #[error("{0}")]
    Invalid(String),
    #[error("The model `{0}` does not exist; GET /v1/models lists the one this server runs.")]
    ModelNotFound(String),
    #[error("The request body is larger than this server's limit of {limit} bytes (--max-body-bytes).")]
    BodyTooLarge { limit: usize },
    #[error("The request body did not arrive within {secs} s.")]
    BodyTimeout { secs: u64 },
    #[error(
        "This model's maximum context length is {ctx} tokens. However, you requested {} tokens ({prompt} in the prompt, {completion} for the completion). Please reduce the length of the prompt or max_tokens.",
        prompt + completion
    )]
    ContextLength { ctx: usize, prompt: usize, completion: usize },
    #[error("Incorrect or missing API key. Pass it as `Authorization: Bearer KEY`.")]
    Unauthorized,
    #[error("{0}")]
    QueueFull(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("No route for {0}.")]
    NotFound(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn field(param: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::InvalidField { param: param.into(), message: message.into() }
    }

    pub fn status(&self) -> u16 {
        match self {
            ApiError::InvalidJson(_) | ApiError::InvalidField { .. } | ApiError::Invalid(_) | ApiError::ContextLength { .. } => 400,
            ApiError::Unauthorized => 401,
            ApiError::ModelNotFound(_) | ApiError::NotFound(_) => 404,
            ApiError::BodyTimeout { .. } => 408,
            ApiError::BodyTooLarge { .. } => 413,
            ApiError::QueueFull(_) => 429,
            ApiError::Internal(_) => 500,
            ApiError::Unavailable(_) => 503,
        }
    }

    /// The error object's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "authentication_error",
            ApiError::QueueFull(_) => "rate_limit_error",
            ApiError::Internal(_) | ApiError::Unavailable(_) => "server_error",
            _ => "invalid_request_error",
        }
    }

    pub fn code(&self) -> Option<&'static str> {
        match self {
            ApiError::ModelNotFound(_) => Some("model_not_found"),
            ApiError::ContextLength { .. } => Some("context_length_exceeded"),
            ApiError::Unauthorized => Some("invalid_api_key"),
            ApiError::QueueFull(_) => Some("rate_limit_exceeded"),
            ApiError::BodyTooLarge { .. } => Some("request_too_large"),
            _ => None,
        }
    }

    pub fn param(&self) -> Option<&str> {
        match self {
            ApiError::InvalidField { param, .. } => Some(param),
            ApiError::ModelNotFound(_) => Some("model"),
            _ => None,
        }
    }

    /// `{"error": {...}}`, the body every failed request gets.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": { "message": self.to_string(), "type": self.kind(), "param": self.param(), "code": self.code() } })
    }
}

/// The fuzz target's entry (`fuzz/fuzz_targets/server_request.rs`), also replayed by the tests:
/// both parsers on arbitrary bytes must return, and whatever they accept must be within the limits.
pub fn fuzz_request(data: &[u8]) {
    let limits = Limits::new("tiny", 128, 256);
    if let Ok(r) = parse_chat(data, &limits) {
        assert!(!r.messages.is_empty());
        assert!(r.logprobs.is_none_or(|k| k <= limits.max_top_logprobs));
        check_common(&r.common, 1, &limits);
    }
    if let Ok(r) = parse_completion(data, &limits) {
        assert!(!r.prompts.is_empty() && r.prompts.len() * r.common.n <= limits.max_choices);
        assert!(r.logprobs.is_none_or(|k| k <= limits.max_completion_logprobs));
        for p in &r.prompts {
            if let Prompt::Tokens(ids) = p {
                assert!(ids.iter().all(|&id| (id as usize) < limits.vocab));
            }
        }
        check_common(&r.common, 0, &limits);
    }
}

/// `min_tokens`: the least `max_tokens` the endpoint accepts (completions: 0, to score a prompt).
fn check_common(c: &Common, min_tokens: usize, limits: &Limits) {
    assert!((1..=limits.max_n).contains(&c.n));
    assert!(c.max_tokens.is_none_or(|m| (min_tokens..=limits.ctx).contains(&m)));
    assert!(c.stop.len() <= limits.max_stop && c.stop.iter().all(|s| !s.is_empty() && s.len() <= limits.max_stop_bytes));
    let s = &c.sampling;
    assert!((0.0..=2.0).contains(&s.temperature) && (0.0..=1.0).contains(&s.top_p) && (0.0..=1.0).contains(&s.min_p));
    assert!((-2.0..=2.0).contains(&s.presence_penalty) && (-2.0..=2.0).contains(&s.frequency_penalty) && s.repetition_penalty > 0.0 && s.repetition_penalty.is_finite());
}
