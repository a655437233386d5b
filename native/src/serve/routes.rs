//! The endpoints, reading request bodies (bounded in size and time), and error responses.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use forge::serve_api::response::{AssistantMessage, ChatChoice, ChatCompletion, ChatLogprobs, Completion, CompletionChoice, ModelCard, ModelList};
use forge::serve_api::{ApiError, Common, Prompt, check_context, parse_chat, parse_completion};
use forge_engine::SamplerConfig;
use forge_engine::tokenizer::ChatMessage;

use super::choices::{self, Job, Tracker};
use super::sse::{EventStream, Format};
use super::{Shared, auth, grammar, unix_now};

const CHAT: &str = "/v1/chat/completions";
const COMPLETIONS: &str = "/v1/completions";
/// `/v1/completions` without `max_tokens` generates this many, as OpenAI's does.
const COMPLETIONS_DEFAULT_MAX_TOKENS: usize = 16;

pub(crate) fn router(state: Shared) -> Router {
    let guarded = Router::new()
        .route(CHAT, post(chat))
        .route(COMPLETIONS, post(completions))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_key));
    Router::new().merge(guarded).route("/health", get(health)).fallback(not_found).layer(middleware::from_fn_with_state(state.clone(), count_requests)).with_state(state)
}

/// `forge_requests_total{endpoint, status}`.
async fn count_requests(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let endpoint = super::metrics::endpoint_label(req.uri().path());
    let resp = next.run(req).await;
    st.metrics.count_request(endpoint, resp.status().as_u16());
    resp
}

pub(crate) fn error_response(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, axum::Json(e.body())).into_response();
    let h = resp.headers_mut();
    match e {
        ApiError::QueueFull(_) => {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        ApiError::Unauthorized => {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        // The rest of the body may still be on its way; the connection cannot be reused.
        ApiError::BodyTooLarge { .. } | ApiError::BodyTimeout { .. } => {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        _ => {}
    }
    resp
}

/// A request that failed before generation: logged, then answered with the error object.
fn failed(endpoint: &str, started: Instant, e: &ApiError) -> Response {
    tracing::info!(endpoint, status = e.status(), error = %e, total_ms = started.elapsed().as_millis() as u64, "request refused");
    error_response(e)
}

/// The body, refused when larger than `--max-body-bytes` (before reading it where
/// Content-Length says so) or not complete within `--read-timeout` seconds.
async fn read_body(st: &Shared, headers: &HeaderMap, mut body: Body) -> Result<Bytes, ApiError> {
    let limit = st.max_body_bytes;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|s| s.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    let read = async {
        let mut buf = Vec::with_capacity(declared.unwrap_or(0) as usize);
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            let frame = frame.map_err(|e| ApiError::Invalid(format!("reading the request body: {e}")))?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > limit {
                    return Err(ApiError::BodyTooLarge { limit });
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(Bytes::from(buf))
    };
    tokio::time::timeout(st.body_timeout, read).await.map_err(|_| ApiError::BodyTimeout { secs: st.body_timeout.as_secs() })?
}

/// A fresh id such as `chatcmpl-5f0c…`: unique in this process (a counter), scrambled with the clock.
fn request_id(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{:016x}{n:06x}", random_u64(n))
}

/// SplitMix64 over the clock and a counter: seeds and ids, not cryptography.
fn random_u64(salt: u64) -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut z = t ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The engine job for parsed `common` settings over tokenized prompts; compiles the grammar.
async fn job(st: &Shared, endpoint: &'static str, started: Instant, prompts: Vec<(Vec<u32>, usize)>, common: &Common, logprobs: Option<usize>, echo: Option<Vec<String>>) -> Result<Job, ApiError> {
    let grammar = match &common.constraint {
        Some(c) => Some(grammar::grammar(st, c).await?),
        None => None,
    };
    let s = &common.sampling;
    let id = request_id(if endpoint == CHAT { "chatcmpl" } else { "cmpl" });
    let sampling = SamplerConfig {
        temperature: s.temperature,
        top_k: s.top_k,
        top_p: s.top_p,
        min_p: s.min_p,
        repeat_penalty: s.repetition_penalty,
        presence_penalty: s.presence_penalty,
        frequency_penalty: s.frequency_penalty,
        seed: s.seed.unwrap_or_else(|| random_u64(started.elapsed().as_nanos() as u64)),
        ..SamplerConfig::default()
    };
    Ok(Job { id, endpoint, started, created: unix_now(), prompts, n: common.n, sampling, stop: common.stop.clone(), logprobs, grammar, echo, tokens_as_ids: common.tokens_as_ids })
}

/// Submits the job and answers: an event stream, or the whole response once every choice ended.
async fn respond(st: &Shared, job: Job, format: Format, common: &Common) -> Result<Response, ApiError> {
    let rx = choices::submit(st, &job)?;
    let model = st.limits.model_id.as_str();
    if common.stream {
        let tracker = Tracker::new(st, &job);
        let stream = EventStream::new(rx, tracker, st.engine.tokenizer().clone(), format, job, model, common.include_usage);
        let headers = [(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")];
        return Ok((headers, Body::new(stream)).into_response());
    }
    let (choices, usage) = choices::collect(st, &job, rx).await?;
    let want_logprobs = job.logprobs.is_some();
    Ok(match format {
        Format::Chat => {
            let choices = choices
                .into_iter()
                .enumerate()
                .map(|(index, c)| ChatChoice {
                    index,
                    message: AssistantMessage { role: "assistant", content: c.text },
                    logprobs: want_logprobs.then_some(ChatLogprobs { content: c.logprobs }),
                    finish_reason: c.finish,
                })
                .collect();
            axum::Json(ChatCompletion { id: &job.id, object: "chat.completion", created: job.created, model, choices, usage: Some(usage) }).into_response()
        }
        Format::Completion => {
            let choices = choices
                .into_iter()
                .enumerate()
                .map(|(index, c)| {
                    let logprobs = want_logprobs.then(|| {
                        let (mut legacy, offset) = job.echo_legacy(st.engine.tokenizer(), index, &c.prompt_logprobs);
                        legacy.extend(&c.logprobs, offset);
                        legacy
                    });
                    let text = match job.echo_text(index) {
                        Some(prompt) => format!("{prompt}{}", c.text),
                        None => c.text,
                    };
                    CompletionChoice { index, text, logprobs, finish_reason: Some(c.finish) }
                })
                .collect();
            axum::Json(Completion { id: &job.id, object: "text_completion", created: job.created, model, choices, usage: Some(usage) }).into_response()
        }
    })
}

async fn chat(State(st): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let result = async {
        let req = parse_chat(&read_body(&st, &headers, body).await?, &st.limits)?;
        let tok = st.engine.tokenizer().clone();
        let messages: Vec<ChatMessage> = req.messages.iter().map(|m| ChatMessage::new(m.role.as_str(), m.content.as_str())).collect();
        // As `forge run` does: the template's text holds special tokens as text, so parse them,
        // and let the tokenizer add BOS where the model asks for one.
        let prompt = st
            .blocking(move || {
                let tpl = tok.chat_template().ok_or_else(|| ApiError::Invalid("this model has no chat template; use /v1/completions with a plain prompt".into()))?;
                let text = tpl.render(&messages, true).map_err(|e| ApiError::field("messages", e.to_string()))?;
                tok.encode(&text, true, true).map_err(|e| ApiError::field("messages", e.to_string()))
            })
            .await??;
        let max_tokens = check_context(prompt.len(), req.common.max_tokens, None, &st.limits)?;
        let job = job(&st, CHAT, started, vec![(prompt, max_tokens)], &req.common, req.logprobs, None).await?;
        respond(&st, job, Format::Chat, &req.common).await
    }
    .await;
    result.unwrap_or_else(|e| failed(CHAT, started, &e))
}

async fn completions(State(st): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let result = async {
        let req = parse_completion(&read_body(&st, &headers, body).await?, &st.limits)?;
        let tok = st.engine.tokenizer().clone();
        let prompts = req.prompts.clone();
        // Each prompt's ids, and with `echo` its text: as sent, or the ids decoded.
        let echo = req.echo;
        let encoded = st
            .blocking(move || {
                prompts
                    .into_iter()
                    .map(|p| match p {
                        Prompt::Text(t) => Ok((tok.encode(&t, true, true).map_err(|e| ApiError::field("prompt", e.to_string()))?, t)),
                        Prompt::Tokens(ids) => {
                            let text = if echo { tok.decode(&ids).map_err(|e| ApiError::field("prompt", e.to_string()))? } else { String::new() };
                            Ok((ids, text))
                        }
                    })
                    .collect::<Result<Vec<_>, ApiError>>()
            })
            .await??;
        let mut prompts = Vec::with_capacity(encoded.len());
        let mut texts = Vec::with_capacity(encoded.len());
        for (p, text) in encoded {
            let max_tokens = check_context(p.len(), req.common.max_tokens, Some(COMPLETIONS_DEFAULT_MAX_TOKENS), &st.limits)?;
            prompts.push((p, max_tokens));
            texts.push(text);
        }
        let job = job(&st, COMPLETIONS, started, prompts, &req.common, req.logprobs, echo.then_some(texts)).await?;
        respond(&st, job, Format::Completion, &req.common).await
    }
    .await;
    result.unwrap_or_else(|e| failed(COMPLETIONS, started, &e))
}

fn card(st: &Shared) -> ModelCard {
    ModelCard { id: st.limits.model_id.clone(), object: "model", created: st.started, owned_by: "forge" }
}

async fn models(State(st): State<Shared>) -> Response {
    axum::Json(ModelList { object: "list", data: vec![card(&st)] }).into_response()
}

async fn model(State(st): State<Shared>, Path(id): Path<String>) -> Response {
    if id == st.limits.model_id { axum::Json(card(&st)).into_response() } else { error_response(&ApiError::ModelNotFound(id)) }
}

/// Open even with an API key (load balancers probe it): 200 while the engine runs, 503 once it
/// has failed.
async fn health(State(st): State<Shared>) -> Response {
    let s = st.engine.stats();
    let body = serde_json::json!({
        "status": if s.failed.is_some() { "error" } else { "ok" },
        "error": s.failed,
        "model": st.limits.model_id,
        "backend": st.engine.backend(),
        "running": s.running,
        "queued": s.queued,
    });
    let status = if s.failed.is_some() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(st): State<Shared>) -> Response {
    let text = st.metrics.render(&st.engine.stats());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn not_found(req: Request) -> Response {
    error_response(&ApiError::NotFound(format!("{} {}", req.method(), req.uri().path())))
}
