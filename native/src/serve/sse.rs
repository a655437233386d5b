//! Streamed responses: server-sent events in OpenAI's chunk format.
//!
//! Chat: a first chunk per choice with `delta.role`, then one chunk per engine step that produced
//! text (`delta.content`, and `logprobs.content` when asked for), a chunk with `finish_reason` as
//! each choice ends, with `stream_options.include_usage` a last chunk with no choices and the
//! usage, then `data: [DONE]`. Completions: the same with `text_completion` objects and no role
//! chunk; with `echo`, each choice's first chunk is its prompt (and the prompt's log-probabilities),
//! sent once the engine has scored it. A failed sequence ends the stream with an `{"error": …}`
//! event instead of `[DONE]`.
//!
//! The body is polled by hyper only while it can write to the client; when the client goes away
//! hyper drops it, and with it the receiver, which cancels the sequences (see `choices::submit`).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Bytes, HttpBody};
use forge::serve_api::ApiError;
use forge::serve_api::response::{ChatChunk, ChatLogprobs, ChunkChoice, Completion, CompletionChoice, Delta, LegacyLogprobs, Usage};
use forge_engine::batching::{self, Event};
use forge_engine::tokenizer::Tokenizer;
use http_body::Frame;
use tokio::sync::mpsc::UnboundedReceiver;

use super::choices::{ChoiceEvent, Job, Note, Tracker, finish_reason, token_logprobs};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Chat,
    Completion,
}

/// Engine events in, SSE bytes out.
pub(crate) struct EventStream {
    rx: UnboundedReceiver<Note>,
    tracker: Tracker,
    tok: Arc<Tokenizer>,
    format: Format,
    id: String,
    model: String,
    created: u64,
    logprobs: bool,
    tokens_as_ids: bool,
    include_usage: bool,
    /// Bytes of text sent so far per choice (the legacy format's `text_offset`).
    offsets: Vec<usize>,
    /// With `echo`: the job (for the prompts), and per choice the prompt's log-probabilities
    /// gathered until its first event sends them (`None` once sent).
    echo: Option<Job>,
    pending: Vec<Option<Vec<batching::TokenLogprob>>>,
    out: VecDeque<Vec<u8>>,
    ended: bool,
}

/// Events gathered into one frame at most: when the engine is ahead of the client, fewer and
/// larger writes.
const MAX_EVENTS_PER_FRAME: usize = 64;

impl EventStream {
    /// Takes the job only for a completion with `echo`, whose prompts it sends.
    pub fn new(rx: UnboundedReceiver<Note>, tracker: Tracker, tok: Arc<Tokenizer>, format: Format, job: Job, model: &str, include_usage: bool) -> EventStream {
        let choices = job.choices();
        let mut s = EventStream {
            rx,
            tracker,
            tok,
            format,
            id: job.id.clone(),
            model: model.to_owned(),
            created: job.created,
            logprobs: job.logprobs.is_some(),
            tokens_as_ids: job.tokens_as_ids,
            include_usage,
            offsets: vec![0; choices],
            pending: if job.echo.is_some() { vec![Some(Vec::new()); choices] } else { Vec::new() },
            echo: job.echo.is_some().then_some(job),
            out: VecDeque::new(),
            ended: false,
        };
        if format == Format::Chat {
            // Sent at once, before any token: the client learns that generation has started.
            for index in 0..choices {
                s.chat(vec![ChunkChoice { index, delta: Delta { role: Some("assistant"), content: Some(String::new()) }, logprobs: None, finish_reason: None }], None);
            }
        }
        s
    }

    fn chat(&mut self, choices: Vec<ChunkChoice>, usage: Option<Usage>) {
        let chunk = ChatChunk { id: &self.id, object: "chat.completion.chunk", created: self.created, model: &self.model, choices, usage };
        self.out.push_back(event(&chunk));
    }

    fn completion(&mut self, choices: Vec<CompletionChoice>, usage: Option<Usage>) {
        let chunk = Completion { id: &self.id, object: "text_completion", created: self.created, model: &self.model, choices, usage };
        self.out.push_back(event(&chunk));
    }

    /// Choice `index`'s prompt, before its first event, where the request has `echo`.
    fn send_echo(&mut self, index: usize) {
        let Some(job) = &self.echo else { return };
        let Some(scored) = self.pending[index].take() else { return };
        let text = job.echo_text(index).unwrap_or_default().to_owned();
        let (legacy, offset) = job.echo_legacy(&self.tok, index, &scored);
        self.offsets[index] = offset;
        let logprobs = self.logprobs.then_some(legacy);
        self.completion(vec![CompletionChoice { index, text, logprobs, finish_reason: None }], None);
    }

    fn on(&mut self, note: Note) {
        self.tracker.observe(&note);
        let index = note.index;
        let event = match note.event {
            ChoiceEvent::Prompt(lps) => {
                if let Some(Some(p)) = self.pending.get_mut(index)
                    && self.logprobs
                {
                    p.extend(lps);
                }
                return;
            }
            ChoiceEvent::Engine(event) => event,
        };
        self.send_echo(index);
        match event {
            Event::Delta { text, logprobs, .. } => {
                // Steps that completed no text yet (a partial character, a possible stop string)
                // send nothing, unless there are log-probabilities to report.
                if text.is_empty() && (!self.logprobs || logprobs.is_empty()) {
                    return;
                }
                let lps = self.logprobs.then(|| token_logprobs(&self.tok, &logprobs, self.tokens_as_ids));
                match self.format {
                    Format::Chat => {
                        let choice =
                            ChunkChoice { index, delta: Delta { role: None, content: Some(text) }, logprobs: lps.map(|content| ChatLogprobs { content }), finish_reason: None };
                        self.chat(vec![choice], None);
                    }
                    Format::Completion => {
                        let offset = self.offsets[index];
                        self.offsets[index] += text.len();
                        let logprobs = lps.map(|l| {
                            let mut legacy = LegacyLogprobs::default();
                            legacy.extend(&l, offset);
                            legacy
                        });
                        self.completion(vec![CompletionChoice { index, text, logprobs, finish_reason: None }], None);
                    }
                }
            }
            Event::Done { finish, .. } => {
                let finish_reason = Some(finish_reason(finish));
                match self.format {
                    Format::Chat => self.chat(vec![ChunkChoice { index, delta: Delta::default(), logprobs: None, finish_reason }], None),
                    Format::Completion => self.completion(vec![CompletionChoice { index, text: String::new(), logprobs: None, finish_reason }], None),
                }
                if self.tracker.all_done() {
                    self.end();
                }
            }
            Event::Error { message } => self.fail(&ApiError::Internal(format!("generation failed: {message}"))),
        }
    }

    fn end(&mut self) {
        if self.include_usage {
            let usage = Some(self.tracker.usage());
            match self.format {
                Format::Chat => self.chat(Vec::new(), usage),
                Format::Completion => self.completion(Vec::new(), usage),
            }
        }
        self.out.push_back(b"data: [DONE]\n\n".to_vec());
        self.ended = true;
    }

    fn fail(&mut self, e: &ApiError) {
        self.out.push_back(event(&e.body()));
        self.ended = true;
    }
}

/// `data: JSON` and the blank line that ends an event.
fn event(value: &impl serde::Serialize) -> Vec<u8> {
    let mut line = b"data: ".to_vec();
    serde_json::to_writer(&mut line, value).expect("response types serialize");
    line.extend_from_slice(b"\n\n");
    line
}

impl HttpBody for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        while !this.ended && this.out.len() < MAX_EVENTS_PER_FRAME {
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(note)) => this.on(note),
                // Every sink is gone but not every choice has ended: the engine stopped.
                Poll::Ready(None) => this.fail(&ApiError::Unavailable("the engine stopped before the completion ended".into())),
                Poll::Pending => break,
            }
        }
        if this.out.is_empty() {
            return if this.ended { Poll::Ready(None) } else { Poll::Pending };
        }
        let frame: Vec<u8> = this.out.drain(..).flatten().collect();
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(frame)))))
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.out.is_empty()
    }
}
