use serde_json::json;

use super::*;

fn limits() -> Limits {
    Limits::new("tiny", 128, 256)
}

fn chat(v: serde_json::Value) -> Result<ChatRequest, ApiError> {
    parse_chat(v.to_string().as_bytes(), &limits())
}

fn completion(v: serde_json::Value) -> Result<CompletionRequest, ApiError> {
    parse_completion(v.to_string().as_bytes(), &limits())
}

/// The `param` of a refused request.
fn param(r: Result<impl std::fmt::Debug, ApiError>) -> String {
    let e = r.expect_err("refused");
    assert_eq!(e.status(), 400, "{e}");
    e.param().unwrap_or_default().to_owned()
}

#[test]
fn openai_defaults_fill_what_is_absent_or_null() {
    let r = chat(json!({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "temperature": null, "stop": null})).unwrap();
    assert_eq!(r.messages, vec![Message { role: "user".into(), content: "hi".into() }]);
    assert_eq!(r.logprobs, None);
    let c = r.common;
    assert_eq!((c.max_tokens, c.n, c.stream, c.include_usage, c.constraint), (None, 1, false, false, None));
    assert_eq!(c.sampling, Sampling { temperature: 1.0, top_p: 1.0, top_k: 0, min_p: 0.0, presence_penalty: 0.0, frequency_penalty: 0.0, repetition_penalty: 1.0, seed: None });
}

#[test]
fn every_field_is_read() {
    let r = chat(json!({
        "model": "tiny",
        "messages": [{"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}, {"role": "assistant", "content": null}],
        "max_tokens": 3, "max_completion_tokens": 9, "temperature": 0, "top_p": 0.5, "top_k": -1, "min_p": 0.1,
        "presence_penalty": 1.5, "frequency_penalty": -1, "repetition_penalty": 1.2, "seed": -1, "stop": "END", "n": 2,
        "stream": true, "stream_options": {"include_usage": true}, "logprobs": true, "top_logprobs": 4, "regex": "[ab]+"
    }))
    .unwrap();
    assert_eq!(r.messages[0], Message { role: "system".into(), content: "a\nb".into() });
    assert_eq!(r.messages[1].content, "");
    assert_eq!(r.logprobs, Some(4));
    let c = r.common;
    assert_eq!((c.max_tokens, c.n, c.stream, c.include_usage), (Some(9), 2, true, true));
    assert_eq!(c.stop, vec!["END".to_owned()]);
    assert_eq!(c.constraint, Some(Constraint::Regex("[ab]+".into())));
    assert_eq!(c.sampling.seed, Some(u64::MAX));
    assert_eq!((c.sampling.top_k, c.sampling.top_p, c.sampling.presence_penalty), (0, 0.5, 1.5));
}

#[test]
fn errors_name_the_field() {
    let base = json!({"model": "tiny", "messages": [{"role": "user", "content": "hi"}]});
    let with = |k: &str, v: serde_json::Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    assert_eq!(param(chat(with("temperature", json!("hot")))), "temperature");
    assert_eq!(param(chat(with("max_tokens", json!(1.5)))), "max_tokens");
    assert_eq!(param(chat(with("max_tokens", json!(129)))), "max_tokens");
    assert_eq!(param(chat(with("n", json!(9)))), "n");
    assert_eq!(param(chat(with("top_logprobs", json!(2)))), "top_logprobs");
    assert_eq!(param(chat(with("repetition_penalty", json!(0)))), "repetition_penalty");
    assert_eq!(param(chat(with("stop", json!([1])))), "stop");
    assert_eq!(param(chat(with("messages", json!([{"role": "wizard", "content": "x"}])))), "messages.[0].role");
    assert_eq!(param(chat(with("messages", json!([{"role": "user", "content": [{"type": "image_url"}]}])))), "messages.[0].content.[0].type");
    assert_eq!(param(chat(with("messages", json!([])))), "messages");
    assert_eq!(param(chat(with("response_format", json!({"type": "json_schema", "json_schema": {"schema": 3}})))), "response_format.json_schema.schema");
    assert_eq!(param(chat(with("response_format", json!({"type": "yaml"})))), "response_format.type");
    assert_eq!(param(chat(with("tools", json!([{"type": "function"}])))), "tools");
    assert_eq!(param(chat(with("logit_bias", json!({"5": 10})))), "logit_bias");
    let e = chat(with("model", json!("gpt-4"))).unwrap_err();
    assert_eq!((e.status(), e.code()), (404, Some("model_not_found")));
    assert!(matches!(parse_chat(b"{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"\xc3\x28\"}]}", &limits()), Err(ApiError::InvalidJson(_))));
    assert_eq!(param(chat(json!({"messages": []}))), "model");
}

#[test]
fn the_error_object_has_openai_fields() {
    let body = ApiError::field("n", "bad n").body();
    assert_eq!(body, json!({"error": {"message": "bad n", "type": "invalid_request_error", "param": "n", "code": null}}));
    assert_eq!(ApiError::QueueFull("busy".into()).status(), 429);
    assert_eq!(ApiError::BodyTooLarge { limit: 1 }.status(), 413);
}

#[test]
fn completion_prompts_in_every_form() {
    let p = |v: serde_json::Value| completion(json!({"model": "tiny", "prompt": v})).map(|r| r.prompts);
    assert_eq!(p(json!("a")).unwrap(), vec![Prompt::Text("a".into())]);
    assert_eq!(p(json!(["a", "b"])).unwrap(), vec![Prompt::Text("a".into()), Prompt::Text("b".into())]);
    assert_eq!(p(json!([1, 2])).unwrap(), vec![Prompt::Tokens(vec![1, 2])]);
    assert_eq!(p(json!([[1], [2, 3]])).unwrap(), vec![Prompt::Tokens(vec![1]), Prompt::Tokens(vec![2, 3])]);
    assert_eq!(param(p(json!([256]))), "prompt");
    assert_eq!(param(p(json!([]))), "prompt");
    assert_eq!(param(p(json!([1, "a"]))), "prompt");
    assert_eq!(param(p(json!({"a": 1}))), "prompt");
    // 5 prompts × n 4 is more choices than one request may have.
    assert_eq!(param(completion(json!({"model": "tiny", "prompt": vec!["a"; 5], "n": 4}))), "n");
    assert_eq!(param(completion(json!({"model": "tiny", "prompt": "a", "logprobs": 6}))), "logprobs");
    assert_eq!(param(completion(json!({"model": "tiny", "prompt": "a", "echo": 1}))), "echo");
    assert_eq!(param(completion(json!({"model": "tiny", "prompt": "a", "max_tokens": -1}))), "max_tokens");
    assert_eq!(param(completion(json!({"model": "tiny", "prompt": "a", "n": 2, "best_of": 3}))), "best_of");
}

#[test]
fn echo_scores_the_prompt_with_max_tokens_zero() {
    // lm-evaluation-harness's `local-completions` log-likelihood request.
    let r = completion(json!({"model": "tiny", "prompt": [[1, 2, 3]], "echo": true, "logprobs": 1, "max_tokens": 0, "temperature": 0})).unwrap();
    assert_eq!((r.echo, r.logprobs, r.common.max_tokens), (true, Some(1), Some(0)));
    assert!(!completion(json!({"model": "tiny", "prompt": "a"})).unwrap().echo);
    assert!(completion(json!({"model": "tiny", "prompt": "a", "logprobs": 0, "return_tokens_as_token_ids": true})).unwrap().common.tokens_as_ids);
    // Chat has no prompt to score: nothing to generate is refused there.
    assert_eq!(param(chat(json!({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}))), "max_tokens");
}

#[test]
fn an_echoed_prompt_s_first_token_has_null_logprobs() {
    use response::{LegacyLogprobs, TokenLogprob, TopLogprob};
    let mut lp = LegacyLogprobs::default();
    let next = lp.push_unscored("The".into(), 0);
    let alt = TopLogprob { token: " sky".into(), logprob: -0.5, bytes: b" sky".to_vec() };
    let end = lp.extend(&[TokenLogprob { token: " sky".into(), logprob: -0.5, bytes: b" sky".to_vec(), top_logprobs: vec![alt] }], next);
    assert_eq!(end, 7);
    let v = serde_json::to_value(&lp).unwrap();
    assert_eq!(v, json!({"tokens": ["The", " sky"], "token_logprobs": [null, -0.5], "top_logprobs": [null, {" sky": -0.5}], "text_offset": [0, 3]}));
}

#[test]
fn stop_strings_are_bounded() {
    let stop = |v: serde_json::Value| chat(json!({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "stop": v})).map(|r| r.common.stop);
    assert_eq!(stop(json!(["a", "", "b"])).unwrap(), vec!["a".to_owned(), "b".to_owned()]);
    assert_eq!(param(stop(json!(vec!["s"; 17]))), "stop");
    assert_eq!(param(stop(json!("x".repeat(257)))), "stop");
}

#[test]
fn context_budget() {
    let l = limits();
    assert_eq!(check_context(100, None, None, &l), Ok(28));
    assert_eq!(check_context(100, None, Some(16), &l), Ok(16));
    assert_eq!(check_context(120, None, Some(16), &l), Ok(8));
    assert_eq!(check_context(100, Some(28), None, &l), Ok(28));
    assert_eq!(check_context(100, Some(29), None, &l), Err(ApiError::ContextLength { ctx: 128, prompt: 100, completion: 29 }));
    assert!(matches!(check_context(128, None, None, &l), Err(ApiError::ContextLength { .. })));
    assert_eq!(param(check_context(0, None, None, &l)), "prompt");
}

#[test]
fn cache_keys_tell_constraints_apart() {
    let schema = |s: serde_json::Value| {
        chat(json!({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": s}}}))
            .unwrap()
            .common
            .constraint
            .unwrap()
            .cache_key()
    };
    assert_eq!(schema(json!({"type": "object"})), schema(json!({"type": "object"})));
    assert_ne!(schema(json!({"type": "object"})), schema(json!({"type": "array"})));
    assert_ne!(Constraint::Regex("a".into()).cache_key(), Constraint::JsonObject.cache_key());
    assert_ne!(Constraint::Regex("json_object".into()).cache_key(), Constraint::JsonObject.cache_key());
}

#[test]
fn fuzz_entry_survives_its_seeds_and_junk() {
    for data in [&b""[..], b"{", b"null", b"{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":8}", &[0xff; 9]] {
        fuzz_request(data);
    }
    // Deep nesting is refused by serde_json's recursion limit, not a stack overflow.
    fuzz_request(format!("{{\"model\":\"tiny\",\"prompt\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000)).as_bytes());
}
