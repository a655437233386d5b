//! `forge serve` end to end: the release binary on a tiny random model (CPU), driven over HTTP.
//! Random weights emit random bytes, so tests that compare texts use temperature 0; every count
//! checked (tokens, chunks, blocks) is one the server could get wrong.

use std::path::PathBuf;
use std::time::Duration;

use forge_engine::DType;
use forge_tests::server::Server;
use forge_tests::tiny::{TinyArch, TinyModel, TinySpec, temp_dir};
use serde_json::{Value, json};

/// ChatML-like, one byte per token in the tiny vocabulary.
const TEMPLATE: &str = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";
/// The model id: the GGUF's file stem.
const MODEL: &str = "tiny";
const CHAT: &str = "/v1/chat/completions";
const COMPLETIONS: &str = "/v1/completions";

fn tiny_model(name: &str) -> PathBuf {
    TinyModel::write_with_chat_template(&TinySpec::new(TinyArch::Llama, DType::Q8_0), &temp_dir(name), TEMPLATE).gguf
}

fn chat(content: &str, max_tokens: usize) -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, "temperature": 0})
}

/// A plain request that must still work after whatever the test did to the server.
fn still_serves(s: &Server) {
    let r = s.post(CHAT, &chat("still there?", 4));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["usage"]["completion_tokens"], 4);
}

/// Text and token count of one streamed chat choice, checking the chunk protocol on the way.
fn chat_stream_text(events: &[Value]) -> (String, usize, String) {
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant", "the first chunk carries the role: {}", events[0]);
    let (mut text, mut tokens, mut finish) = (String::new(), 0, None);
    for e in events {
        assert_eq!(e["object"], "chat.completion.chunk");
        let Some(c) = e["choices"].as_array().and_then(|c| c.first()) else { continue };
        assert!(finish.is_none(), "a chunk after finish_reason: {e}");
        text.push_str(c["delta"]["content"].as_str().unwrap_or(""));
        tokens += c["logprobs"]["content"].as_array().map_or(0, Vec::len);
        finish = c["finish_reason"].as_str().map(str::to_owned);
    }
    (text, tokens, finish.expect("a finish_reason"))
}

#[test]
fn concurrent_streams_complete_and_free_their_blocks() {
    let s = Server::start(&tiny_model("serve-streams"), &["--max-seqs", "8", "--max-queue", "64"]);
    let solo = s.post(CHAT, &chat("the same prompt", 24)).json();
    let expected = solo["choices"][0]["message"]["content"].as_str().unwrap().to_owned();

    let results: Vec<(String, usize, String, Value)> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..32)
            .map(|_| {
                sc.spawn(|| {
                    let mut body = chat("the same prompt", 24);
                    body["stream"] = json!(true);
                    body["logprobs"] = json!(true);
                    body["stream_options"] = json!({"include_usage": true});
                    let st = s.stream(CHAT, &body, None);
                    assert_eq!(st.status, 200);
                    assert!(st.done, "the stream ends with [DONE]");
                    let usage = st.events.last().unwrap()["usage"].clone();
                    assert_eq!(st.events.last().unwrap()["choices"], json!([]), "the usage chunk has no choices");
                    let (text, tokens, finish) = chat_stream_text(&st.events);
                    (text, tokens, finish, usage)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (text, tokens, finish, usage) in &results {
        assert_eq!(usage["completion_tokens"], json!(tokens), "usage counts the tokens streamed");
        assert_eq!(*tokens, 24, "the tiny model has no EOS, so every stream runs to max_tokens");
        assert_eq!(finish, "length");
        assert_eq!(usage["prompt_tokens"], solo["usage"]["prompt_tokens"]);
        // Greedy decoding in a batch of 8 must give what it gives alone.
        assert_eq!(text, &expected, "a batched stream differs from the same request alone");
    }
    s.wait_until_idle(Duration::from_secs(10));
    let m = s.get("/metrics").body;
    assert!(m.contains("forge_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"} 33"), "{m}");
    assert!(m.contains("forge_time_to_first_token_seconds_count 33"), "{m}");
    assert!(s.metric("forge_kv_blocks_total") > 0.0);
    assert!(s.metric("forge_generation_tokens_total") >= 33.0 * 24.0);
}

#[test]
fn responses_have_openai_shapes() {
    let s = Server::start(&tiny_model("serve-shapes"), &[]);
    assert_eq!(s.get("/health").json()["status"], "ok");
    let models = s.get("/v1/models").json();
    assert_eq!(models["data"][0]["id"], MODEL, "{models}");
    assert_eq!(s.get("/v1/models/tiny").status, 200);
    assert_eq!(s.get("/v1/models/other").status, 404);
    assert_eq!(s.get("/no/such/path").status, 404);

    // n choices, logprobs with alternatives, usage.
    let mut body = chat("hello", 6);
    body["n"] = json!(3);
    body["temperature"] = json!(1.0);
    body["seed"] = json!(11);
    body["logprobs"] = json!(true);
    body["top_logprobs"] = json!(2);
    let r = s.post(CHAT, &body).json();
    assert_eq!(r["object"], "chat.completion");
    assert_eq!(r["choices"].as_array().unwrap().len(), 3);
    assert_eq!(r["usage"]["completion_tokens"], 18);
    assert_eq!(r["usage"]["total_tokens"], json!(r["usage"]["prompt_tokens"].as_u64().unwrap() + 18));
    for (i, c) in r["choices"].as_array().unwrap().iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["message"]["role"], "assistant");
        assert_eq!(c["finish_reason"], "length");
        let lps = c["logprobs"]["content"].as_array().unwrap();
        assert_eq!(lps.len(), 6);
        for t in lps {
            assert!(t["logprob"].as_f64().unwrap() <= 0.0 && t["bytes"].is_array() && t["token"].is_string(), "{t}");
            assert_eq!(t["top_logprobs"].as_array().unwrap().len(), 2);
        }
    }
    // The same seed gives the same choices.
    assert_eq!(s.post(CHAT, &body).json()["choices"], r["choices"]);

    // Stop strings: cut greedy output at a character of its own (one that does not occur
    // earlier, so the cut is unambiguous); try prompts until the random text has one.
    let complete = |prompt: &Value, extra: Value| {
        let mut b = json!({"model": MODEL, "prompt": prompt, "max_tokens": 12, "temperature": 0});
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let r = s.post(COMPLETIONS, &b);
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    };
    let mut cut_tested = false;
    for p in ["abc", "the sky", "once upon", "0123", "zz top", "qwerty", "hello", "lorem ipsum"] {
        let full = complete(&json!(p), json!({}));
        assert_eq!(full["object"], "text_completion");
        assert_eq!(full["choices"][0]["finish_reason"], "length");
        let text = full["choices"][0]["text"].as_str().unwrap();
        let cut = text.char_indices().skip(1).find(|&(i, c)| c.is_ascii_alphanumeric() && !text[..i].contains(c));
        if let Some((i, c)) = cut {
            let r = complete(&json!(p), json!({"stop": [c.to_string(), "never-in-there"]}));
            assert_eq!(r["choices"][0]["text"], text[..i], "text up to the stop string, which is not returned");
            assert_eq!(r["choices"][0]["finish_reason"], "stop");
            cut_tested = true;
            break;
        }
    }
    assert!(cut_tested, "no prompt gave text to cut");
    // Legacy logprobs; token ids as the prompt give what the same text gives.
    let by_text = complete(&json!("abc"), json!({"logprobs": 3}));
    let by_ids = complete(&json!([97, 98, 99]), json!({"logprobs": 3}));
    let lp = &by_ids["choices"][0]["logprobs"];
    assert_eq!(lp["tokens"].as_array().unwrap().len(), 12);
    assert_eq!(lp["token_logprobs"].as_array().unwrap().len(), 12);
    // Alternatives that decode to the same text (two invalid bytes) share one key.
    assert!((1..=3).contains(&lp["top_logprobs"][0].as_object().unwrap().len()));
    assert_eq!(lp["tokens"], by_text["choices"][0]["logprobs"]["tokens"]);
    let text = by_text["choices"][0]["text"].as_str().unwrap().to_owned();
    // Streamed completions end with a finish_reason chunk and [DONE].
    let st = s.stream(COMPLETIONS, &json!({"model": MODEL, "prompt": "abc", "max_tokens": 12, "temperature": 0, "stream": true}), None);
    assert!(st.done);
    let streamed: String = st.events.iter().map(|e| e["choices"][0]["text"].as_str().unwrap_or("")).collect();
    assert_eq!(streamed, text, "streamed text equals the whole response's");
    assert_eq!(st.events.last().unwrap()["choices"][0]["finish_reason"], "length");

    // The prefix cache: the same prompt again reuses its full blocks, and says so in usage.
    let prompt = "a prompt long enough to fill a few blocks of the KV cache, said twice";
    let first = s.post(CHAT, &chat(prompt, 4)).json();
    let again = s.post(CHAT, &chat(prompt, 4)).json();
    let cached = |r: &Value| r["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap();
    assert_eq!(cached(&first), 0, "{first}");
    assert!(cached(&again) > 0 && cached(&again) < again["usage"]["prompt_tokens"].as_u64().unwrap(), "{again}");
    assert_eq!(again["choices"][0]["message"], first["choices"][0]["message"], "cached blocks give the same greedy text");

    // Wrong model: 404 model_not_found.
    let mut wrong = chat("hi", 2);
    wrong["model"] = json!("gpt-4");
    let r = s.post(CHAT, &wrong);
    assert_eq!(r.status, 404);
    assert_eq!(r.error()["code"], "model_not_found");
}

#[test]
fn structured_output_follows_the_grammar() {
    let s = Server::start(&tiny_model("serve-grammar"), &[]);
    let mut body = chat("a code please", 20);
    body["temperature"] = json!(1.0);
    body["response_format"] = json!({"type": "regex", "regex": "[0-9]{3}-[a-z]{2}"});
    let r = s.post(CHAT, &body);
    assert_eq!(r.status, 200, "{}", r.body);
    let text = r.json()["choices"][0]["message"]["content"].as_str().unwrap().to_owned();
    let b = text.as_bytes();
    assert!(b.len() == 6 && b[..3].iter().all(u8::is_ascii_digit) && b[3] == b'-' && b[4..].iter().all(u8::is_ascii_lowercase), "{text:?} does not match");

    // A schema with a finite language: each seed's output must be complete, valid and in it.
    let schema = json!({"type": "object", "properties": {"c": {"enum": ["red", "green"]}}, "required": ["c"], "additionalProperties": false});
    body["max_tokens"] = json!(64);
    body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "colour", "schema": schema, "strict": true}});
    for seed in 1..=3 {
        body["seed"] = json!(seed);
        let r = s.post(CHAT, &body).json();
        let text = r["choices"][0]["message"]["content"].as_str().unwrap();
        assert_eq!(r["choices"][0]["finish_reason"], "stop", "{text:?}");
        let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?} is not JSON: {e}"));
        assert!(v["c"] == "red" || v["c"] == "green", "{v}");
        assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
    }
    let mut bad = chat("x", 4);
    bad["response_format"] = json!({"type": "regex", "regex": "("});
    assert_eq!(s.post(CHAT, &bad).status, 400);
}

#[test]
fn abuse_is_refused_and_the_server_survives() {
    let key = "test-key-123";
    let mut s = Server::start(&tiny_model("serve-abuse"), &["--api-key", key, "--max-body-bytes", "65536", "--read-timeout", "2", "--ctx", "2048"]);

    // Authentication: /health stays open, everything else wants the key.
    assert_eq!(s.get("/health").status, 200);
    let body = chat("hi", 2).to_string();
    let r = s.post_bytes(CHAT, body.as_bytes(), Some("wrong"));
    assert_eq!((r.status, r.error()["code"].clone()), (401, json!("invalid_api_key")));
    assert_eq!(s.post_bytes(CHAT, body.as_bytes(), None).status, 401);
    assert_eq!(s.post_bytes(CHAT, body.as_bytes(), Some("test-key-12")).status, 401);
    still_serves(&s);

    // Too large: declared by Content-Length (refused before reading), and sent outright.
    let head = format!("POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n{{");
    let reply = s.raw(head.as_bytes(), Duration::from_secs(10));
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    let mut big = chat("x", 2);
    big["messages"][0]["content"] = json!("y".repeat(100_000));
    let r = s.post(CHAT, &big);
    assert_eq!(r.status, 413, "{}", r.body);
    still_serves(&s);

    // Not UTF-8, not JSON, not an object, wrong types.
    for bad in [
        &b"{\"model\": \"tiny\", \"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}"[..],
        b"{\"model\": ",
        b"[1, 2]",
        b"",
        b"{\"model\": \"tiny\", \"messages\": \"hi\"}",
    ] {
        let r = s.post_bytes(CHAT, bad, Some(key));
        assert_eq!(r.status, 400, "{:?}: {}", String::from_utf8_lossy(bad), r.body);
        assert_eq!(r.error()["type"], "invalid_request_error");
    }
    // Out-of-range numbers.
    for (field, value) in [
        ("n", json!(1_000_000)),
        ("n", json!(-1)),
        ("n", json!(0)),
        ("max_tokens", json!(1u64 << 40)),
        ("max_tokens", json!(-5)),
        ("max_tokens", json!(0)),
        ("temperature", json!(7)),
        ("top_logprobs", json!(50)),
    ] {
        let mut b = chat("hi", 2);
        b[field] = value.clone();
        b["logprobs"] = json!(true);
        let r = s.post(CHAT, &b);
        assert_eq!(r.status, 400, "{field}: {value}: {}", r.body);
        assert_eq!(r.error()["param"], field, "{}", r.body);
    }
    // A prompt and budget beyond the context (2048 tokens).
    let r = s.post(CHAT, &chat(&"z".repeat(3000), 2));
    assert_eq!((r.status, r.error()["code"].clone()), (400, json!("context_length_exceeded")));
    let r = s.post(CHAT, &chat("hi", 2040));
    assert_eq!((r.status, r.error()["code"].clone()), (400, json!("context_length_exceeded")));
    // Thousands of stop strings, and one very long one.
    let mut b = chat("hi", 2);
    b["stop"] = json!((0..5000).map(|i| format!("s{i}")).collect::<Vec<_>>());
    assert_eq!(s.post(CHAT, &b).status, 400);
    b["stop"] = json!("q".repeat(10_000));
    assert_eq!(s.post(CHAT, &b).status, 400);
    still_serves(&s);

    // Half the headers, then silence: disconnected after --read-timeout.
    let t = std::time::Instant::now();
    let reply = s.raw(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Le", Duration::from_secs(20));
    assert!(t.elapsed() < Duration::from_secs(15), "a client stalled in its headers was not dropped in time: {:?}", t.elapsed());
    assert!(!reply.starts_with("HTTP/1.1 2"), "{reply:?}");
    // Half a body, then silence: dropped after --read-timeout with 408.
    let t = std::time::Instant::now();
    let head = format!("POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{{\"model\": \"tiny\"");
    let reply = s.raw(head.as_bytes(), Duration::from_secs(20));
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply:?}");
    assert!(t.elapsed() < Duration::from_secs(15), "the stalled client was not dropped in time: {:?}", t.elapsed());
    still_serves(&s);

    // A client that leaves mid-stream: its sequence is cancelled long before its 2000 tokens,
    // and its blocks come back.
    let before = s.metric("forge_generation_tokens_total");
    let mut b = chat("story", 2000);
    b["stream"] = json!(true);
    let st = s.stream(CHAT, &b, Some(3));
    assert_eq!((st.status, st.done), (200, false));
    s.wait_until_idle(Duration::from_secs(20));
    let generated = s.metric("forge_generation_tokens_total") - before;
    assert!(generated < 1000.0, "the sequence ran on after its client left: {generated} tokens");
    assert_eq!(s.metric("forge_client_disconnects_total"), 1.0);
    // The same for a client that gives up waiting for a whole (not streamed) response.
    let before = s.metric("forge_generation_tokens_total");
    let body = chat("story", 2000).to_string();
    let req = format!("POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let mut conn = std::net::TcpStream::connect(s.addr).unwrap();
    std::io::Write::write_all(&mut conn, req.as_bytes()).unwrap();
    // Leave once generation has begun. (A fixed sleep here measured the engine's speed: the CPU
    // backend grew fast enough to generate 1,200 tokens in 300 ms.)
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while s.metric("forge_generation_tokens_total") == before && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    let at_leave = s.metric("forge_generation_tokens_total") - before;
    assert!(at_leave > 0.0, "generation never began");
    drop(conn);
    s.wait_until_idle(Duration::from_secs(20));
    let generated = s.metric("forge_generation_tokens_total") - before;
    assert!(generated < 2000.0 && generated - at_leave < 1000.0, "the sequence ran on after its client left: {at_leave} tokens, then {} more", generated - at_leave);
    assert_eq!(s.metric("forge_client_disconnects_total"), 2.0);
    still_serves(&s);
    assert!(s.alive());
}

#[test]
fn silent_connections_are_bounded_and_closed() {
    let s = Server::start(&tiny_model("serve-conns"), &["--max-connections", "2", "--read-timeout", "2"]);
    // Two clients that connect and say nothing take both slots...
    let idle: Vec<std::net::TcpStream> = (0..2).map(|_| std::net::TcpStream::connect(s.addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    // ...so a third waits until the header deadline has closed them, then is served.
    let t = std::time::Instant::now();
    let r = s.post(CHAT, &chat("hi", 2));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(t.elapsed() >= Duration::from_millis(1200), "served after {:?}: the connection bound did not hold", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(10), "served after {:?}: silent connections were not closed", t.elapsed());
    drop(idle);
}

#[test]
fn a_burst_over_the_queue_gets_429s_and_no_crash() {
    let mut s = Server::start(&tiny_model("serve-burst"), &["--max-seqs", "2", "--max-queue", "4"]);
    let statuses: Vec<u16> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let s = &s;
                sc.spawn(move || {
                    (0..10)
                        .map(|j| {
                            let r = s.post(COMPLETIONS, &json!({"model": MODEL, "prompt": format!("burst {i} {j}"), "max_tokens": 8}));
                            if r.status == 429 {
                                assert_eq!(r.retry_after.as_deref(), Some("1"));
                                assert_eq!(r.error()["code"], "rate_limit_exceeded");
                            }
                            r.status
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let ok = statuses.iter().filter(|&&c| c == 200).count();
    let busy = statuses.iter().filter(|&&c| c == 429).count();
    assert_eq!(ok + busy, 500, "only 200 and 429 expected: {statuses:?}");
    assert!(busy > 0 && ok > 0, "{ok} ok, {busy} refused");
    assert!(s.alive());
    s.wait_until_idle(Duration::from_secs(10));
    still_serves(&s);
}

/// The fuzz target's seeds and every crash it found replay through the request parser.
#[test]
fn server_request_fuzz_corpus_replays() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut n = 0;
    for dir in ["corpus/server_request", "regressions/server_request"] {
        let Ok(rd) = std::fs::read_dir(root.join(dir)) else { continue };
        for e in rd.flatten() {
            forge::serve_api::fuzz_request(&std::fs::read(e.path()).unwrap());
            n += 1;
        }
    }
    assert!(n > 0, "fuzz/corpus/server_request has no seeds");
}

/// One token of legacy log-probabilities: its text, log-probability and alternatives (`None`
/// where null, as for an echoed prompt's first token).
type Entry = (String, Option<f64>, Option<Vec<(String, f64)>>);

fn legacy_entries(lp: &Value) -> Vec<Entry> {
    let arr = |k: &str| lp[k].as_array().unwrap_or_else(|| panic!("no {k} in {lp}")).clone();
    let (tokens, lps, tops) = (arr("tokens"), arr("token_logprobs"), arr("top_logprobs"));
    assert!(lps.len() == tokens.len() && tops.len() == tokens.len() && arr("text_offset").len() == tokens.len(), "arrays of different lengths: {lp}");
    let top = |t: &Value| t.as_object().map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_f64().unwrap())).collect());
    tokens.iter().zip(&lps).zip(&tops).map(|((t, l), tp)| (t.as_str().unwrap().to_owned(), l.as_f64(), top(tp))).collect()
}

#[test]
fn completions_echo_returns_the_prompt_and_scores_it() {
    // Prefill chunks of 7 tokens: a scored prompt spans several steps, beside other sequences.
    let s = Server::start(&tiny_model("serve-echo"), &["--prefill-chunk", "7"]);
    let complete = |extra: Value| {
        let mut b = json!({"model": MODEL, "temperature": 0});
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let r = s.post(COMPLETIONS, &b);
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    };
    let prompt = "the echo test's prompt, long enough for a few chunks";

    // What lm-evaluation-harness sends for a log-likelihood: only the prompt comes back.
    let r = complete(json!({"prompt": prompt, "echo": true, "logprobs": 2, "max_tokens": 0}));
    let c = &r["choices"][0];
    assert_eq!((c["text"].as_str(), c["finish_reason"].as_str()), (Some(prompt), Some("length")), "{r}");
    assert_eq!(r["usage"]["completion_tokens"], 0);
    let n_prompt = r["usage"]["prompt_tokens"].as_u64().unwrap() as usize;
    let entries = legacy_entries(&c["logprobs"]);
    assert_eq!(entries.len(), n_prompt, "one entry per prompt token");
    assert_eq!((entries[0].1, &entries[0].2), (None, &None), "nothing precedes the first token");
    for (token, lp, top) in &entries[1..] {
        let (lp, top) = (lp.unwrap(), top.as_ref().unwrap());
        assert!(lp <= 0.0 && (1..=2).contains(&top.len()), "{token:?} {lp} {top:?}");
        let best = top.iter().map(|t| t.1).fold(f64::NEG_INFINITY, f64::max);
        assert!(best <= 0.0 && best + 1e-6 >= lp, "the token is no likelier than the best: {token:?} {lp} {top:?}");
    }
    assert_eq!(entries.iter().map(|e| e.0.as_str()).collect::<String>(), prompt);
    let offsets: Vec<u64> = c["logprobs"]["text_offset"].as_array().unwrap().iter().map(|o| o.as_u64().unwrap()).collect();
    assert_eq!(offsets[0], 0);
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "{offsets:?}");
    // A scored prompt is computed whole, so asking again takes nothing from the prefix cache,
    // and gives the same numbers.
    let again = complete(json!({"prompt": prompt, "echo": true, "logprobs": 2, "max_tokens": 0}));
    assert_eq!(again["usage"]["prompt_tokens_details"]["cached_tokens"], 0, "{again}");
    assert_eq!(again["choices"][0]["logprobs"], c["logprobs"]);

    // With max_tokens: the prompt, then the completion it would get without echo; the
    // completion's log-probabilities are those of the same tokens scored as a prompt.
    let plain = complete(json!({"prompt": prompt, "max_tokens": 6, "logprobs": 1}));
    let generated = plain["choices"][0]["text"].as_str().unwrap();
    let echoed = complete(json!({"prompt": prompt, "max_tokens": 6, "logprobs": 1, "echo": true}));
    let c = &echoed["choices"][0];
    assert_eq!(c["text"].as_str().unwrap(), format!("{prompt}{generated}"));
    let entries = legacy_entries(&c["logprobs"]);
    assert_eq!(entries.len(), n_prompt + 6);
    assert_eq!(c["logprobs"]["text_offset"][n_prompt], prompt.len(), "the completion's offsets follow the prompt");
    let plain_lps = legacy_entries(&plain["choices"][0]["logprobs"]);
    assert_eq!(entries[n_prompt..].iter().map(|e| &e.0).collect::<Vec<_>>(), plain_lps.iter().map(|e| &e.0).collect::<Vec<_>>());
    // Token ids as the prompt: the prompt's ids and the 6 generated, scored in one pass.
    let ids = |v: &Value| -> Vec<u64> { v["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().strip_prefix("token_id:").unwrap().parse().unwrap()).collect() };
    let as_ids = complete(json!({"prompt": prompt, "max_tokens": 6, "logprobs": 1, "echo": true, "return_tokens_as_token_ids": true}));
    let all_ids = ids(&as_ids["choices"][0]["logprobs"]);
    let scored = complete(json!({"prompt": all_ids, "max_tokens": 0, "logprobs": 1, "echo": true, "return_tokens_as_token_ids": true}));
    let c = &scored["choices"][0];
    assert_eq!(c["text"].as_str().unwrap(), format!("{prompt}{generated}"), "token ids echo as their text");
    assert_eq!(ids(&c["logprobs"]), all_ids);
    for (i, (decoded, sc)) in plain_lps.iter().zip(&legacy_entries(&c["logprobs"])[n_prompt..]).enumerate() {
        let (g, s) = (decoded.1.unwrap(), sc.1.unwrap());
        assert!((g - s).abs() < 1e-3, "generated token {i}: log-probability {g} while decoding, {s} scored as a prompt");
    }

    // Streamed: the prompt first, then the completion; the same text and log-probabilities.
    let st = s.stream(COMPLETIONS, &json!({"model": MODEL, "prompt": prompt, "max_tokens": 6, "logprobs": 1, "echo": true, "temperature": 0, "stream": true}), None);
    assert!(st.done);
    assert_eq!(st.events[0]["choices"][0]["text"], prompt, "the first chunk is the prompt");
    let text: String = st.events.iter().map(|e| e["choices"][0]["text"].as_str().unwrap_or("")).collect();
    assert_eq!(text, echoed["choices"][0]["text"].as_str().unwrap());
    let streamed: Vec<_> = st.events.iter().filter(|e| !e["choices"][0]["logprobs"].is_null()).flat_map(|e| legacy_entries(&e["choices"][0]["logprobs"])).collect();
    assert_eq!(streamed, legacy_entries(&echoed["choices"][0]["logprobs"]));
    let offsets: Vec<&Value> = st.events.iter().filter_map(|e| e["choices"][0]["logprobs"]["text_offset"].as_array()).flatten().collect();
    // (Past the prompt, a stream counts the text it has sent, which holds back part of a character.)
    assert_eq!(offsets[..=n_prompt], echoed["choices"][0]["logprobs"]["text_offset"].as_array().unwrap().iter().take(n_prompt + 1).collect::<Vec<_>>());

    // Without logprobs: the text alone; max_tokens 0 without echo: nothing.
    let r = complete(json!({"prompt": [prompt, "another"], "echo": true, "max_tokens": 0}));
    assert_eq!((r["choices"][0]["text"].as_str(), r["choices"][1]["text"].as_str()), (Some(prompt), Some("another")));
    assert!(r["choices"][0]["logprobs"].is_null());
    let r = complete(json!({"prompt": prompt, "max_tokens": 0}));
    assert_eq!((r["choices"][0]["text"].as_str(), r["choices"][0]["finish_reason"].as_str()), (Some(""), Some("length")));
    s.wait_until_idle(Duration::from_secs(10));
}

/// Teacher-forced through the server (`echo` with `logprobs`, `max_tokens` 0): every llama.cpp
/// reference case's prompt and greedy continuation as one token-id prompt, all in one request;
/// at each continuation position our most likely token must be llama.cpp's, up to a near-tie
/// (`forge_tests::reference`).
#[test]
fn echo_logprobs_agree_with_llama_cpp_teacher_forced() {
    let Some(path) = forge_tests::smollm2_path() else { return };
    let reference = forge_tests::llama_cpp_reference();
    let s = Server::start(&path, &["--ctx", "256", "--max-seqs", "8"]);
    let model = s.get("/v1/models").json()["data"][0]["id"].as_str().unwrap().to_owned();
    let inputs: Vec<Vec<u32>> = reference.cases.iter().map(|c| [&c.prompt_ids[..], &c.greedy_ids[..]].concat()).collect();
    let body = json!({"model": model, "prompt": inputs, "echo": true, "logprobs": 1, "max_tokens": 0, "temperature": 0, "return_tokens_as_token_ids": true});
    let r = s.post(COMPLETIONS, &body);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = r.json();
    let id_of = |t: &str| -> u32 { t.strip_prefix("token_id:").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{t:?} is not token_id:N")) };
    let mut failures = Vec::new();
    for (i, (case, input)) in reference.cases.iter().zip(&inputs).enumerate() {
        let c = &r["choices"][i];
        assert_eq!(c["index"], i);
        let entries = legacy_entries(&c["logprobs"]);
        assert_eq!(entries.iter().map(|e| id_of(&e.0)).collect::<Vec<_>>(), *input, "{}: the tokens are the prompt's", case.id);
        // Position p + i holds llama.cpp's pick i: its log-probability, and our best.
        let picks: Vec<(u32, f32)> = entries[case.prompt_ids.len()..]
            .iter()
            .map(|(_, lp, top)| {
                let (best, best_lp) = top.as_ref().and_then(|t| t.first().cloned()).expect("one alternative");
                (id_of(&best), (best_lp - lp.expect("scored")) as f32)
            })
            .collect();
        match forge_tests::reference::check_teacher_forced_picks(case, &picks) {
            Ok(a) => eprintln!("server {}: {}/{} positions agree ({} near-ties)", case.id, a.positions - a.near_ties, a.positions, a.near_ties),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "server, teacher-forced:\n{}", failures.join("\n"));
}
