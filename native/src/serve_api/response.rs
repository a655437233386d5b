//! Response bodies and stream chunks, in OpenAI's shapes.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    pub prompt_tokens_details: PromptTokensDetails,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens served from the prefix cache.
    pub cached_tokens: usize,
}

impl Usage {
    pub fn new(prompt_tokens: usize, completion_tokens: usize, cached_tokens: usize) -> Usage {
        Usage { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens, prompt_tokens_details: PromptTokensDetails { cached_tokens } }
    }
}

/// A log-probability as JSON can carry it: a token the grammar ruled out has -inf, which JSON
/// has no number for; OpenAI reports such tokens as -9999.
pub fn finite_logprob(x: f32) -> f32 {
    if x.is_finite() { x } else { -9999.0 }
}

/// One token as the chat API describes it: its text and its bytes (a token may end inside a
/// UTF-8 character, which `token` cannot show but `bytes` can).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
}

/// `choices[].logprobs` of the chat API.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ChatLogprobs {
    pub content: Vec<TokenLogprob>,
}

/// `choices[].logprobs` of the legacy completions API: parallel arrays, offsets into the text.
/// An echoed prompt's first token has `null` for its log-probability and its alternatives, as
/// OpenAI's and vLLM's: nothing precedes it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LegacyLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<Option<f32>>,
    pub top_logprobs: Vec<Option<BTreeMap<String, f32>>>,
    pub text_offset: Vec<usize>,
}

impl LegacyLogprobs {
    /// Appends a token without a log-probability (a prompt's first) whose text starts at
    /// `offset`; returns where the next token's starts.
    pub fn push_unscored(&mut self, token: String, offset: usize) -> usize {
        let next = offset + token.len();
        self.tokens.push(token);
        self.token_logprobs.push(None);
        self.top_logprobs.push(None);
        self.text_offset.push(offset);
        next
    }

    /// Appends tokens given in the chat API's form; `offset` is where the first one's text
    /// starts. Returns where the text after them starts.
    pub fn extend(&mut self, tokens: &[TokenLogprob], mut offset: usize) -> usize {
        for t in tokens {
            self.tokens.push(t.token.clone());
            self.token_logprobs.push(Some(t.logprob));
            self.top_logprobs.push(Some(t.top_logprobs.iter().map(|a| (a.token.clone(), a.logprob)).collect()));
            self.text_offset.push(offset);
            offset += t.token.len();
        }
        offset
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AssistantMessage {
    pub role: &'static str,
    pub content: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChatChoice {
    pub index: usize,
    pub message: AssistantMessage,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: &'static str,
}

/// The body of a non-streamed `/v1/chat/completions`.
pub type ChatCompletion<'a> = Envelope<'a, ChatChoice>;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChunkChoice {
    pub index: usize,
    pub delta: Delta,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: Option<&'static str>,
}

/// What every completion response is: an id, the object type, the model, choices and usage.
/// `usage` is left out of streamed events but the one that ends a stream with `include_usage`
/// (which has no choices).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Envelope<'a, C> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: Vec<C>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// One `data:` event of a streamed `/v1/chat/completions`.
pub type ChatChunk<'a> = Envelope<'a, ChunkChoice>;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CompletionChoice {
    pub index: usize,
    pub text: String,
    pub logprobs: Option<LegacyLogprobs>,
    pub finish_reason: Option<&'static str>,
}

/// The body of a non-streamed `/v1/completions`, and (without usage, `finish_reason` null until
/// the last) each `data:` event of a streamed one.
pub type Completion<'a> = Envelope<'a, CompletionChoice>;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelCard {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelCard>,
}
