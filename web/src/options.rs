//! What the page sends: generation settings and chat messages, as JSON.

use forge_engine::model::SamplingDefaults;
use forge_engine::{GenerateOptions, SamplerConfig};
use serde::Deserialize;

/// Generation settings; every field is optional and defaults to llama.cpp's values (greedy when
/// `temperature` is 0).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebOptions {
    pub max_tokens: Option<usize>,
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
}

impl WebOptions {
    pub fn parse(json: &str) -> Result<WebOptions, String> {
        if json.trim().is_empty() {
            return Ok(WebOptions::default());
        }
        serde_json::from_str(json).map_err(|e| format!("bad generation options: {e}"))
    }

    pub fn to_generate(&self) -> GenerateOptions {
        let d = SamplerConfig::default();
        let given = SamplingDefaults { temperature: self.temperature, top_k: self.top_k, top_p: self.top_p, min_p: self.min_p, repeat_penalty: self.repeat_penalty };
        let sampler = given.apply(SamplerConfig { seed: self.seed.unwrap_or(d.seed), ..d });
        let g = GenerateOptions::default();
        GenerateOptions {
            max_tokens: self.max_tokens.unwrap_or(g.max_tokens),
            sampler,
            stop: self.stop.clone(),
            ..g
        }
    }
}

/// One chat message, as the page sends it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn parse_list(json: &str) -> Result<Vec<Message>, String> {
        serde_json::from_str(json).map_err(|e| format!("bad chat messages: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_options_are_llama_cpp_defaults() {
        let o = WebOptions::parse("").unwrap().to_generate();
        assert_eq!(o.sampler, SamplerConfig::default());
        assert_eq!(o.max_tokens, GenerateOptions::default().max_tokens);
    }

    #[test]
    fn temperature_zero_is_greedy_and_fields_carry_over() {
        let o = WebOptions::parse(
            r#"{"max_tokens": 16, "temperature": 0, "seed": 7, "stop": ["\n\n"]}"#,
        )
        .unwrap()
        .to_generate();
        assert!(o.sampler.is_greedy());
        assert_eq!(
            (o.max_tokens, o.sampler.seed, o.stop.as_slice()),
            (16, 7, &["\n\n".to_string()][..])
        );
    }

    #[test]
    fn unknown_fields_and_bad_messages_are_errors() {
        assert!(WebOptions::parse(r#"{"temp": 0}"#).is_err());
        assert!(Message::parse_list(r#"[{"role": "user"}]"#).is_err());
        assert_eq!(
            Message::parse_list(r#"[{"role": "user", "content": "hi"}]"#).unwrap()[0].content,
            "hi"
        );
    }
}
