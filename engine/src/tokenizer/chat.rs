//! Chat templates: the model's Jinja template, rendered as Hugging Face `apply_chat_template` does.
//!
//! HF renders with jinja2's `ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
//! extensions=[loopcontrols])` (`keep_trailing_newline` left false), passing `messages`,
//! `add_generation_prompt` and the special tokens, and defines `raise_exception` and
//! `strftime_now`; its `tojson` is Python's `json.dumps(ensure_ascii=False)`. Here: minijinja with
//! the same switches, Python's string/dict methods from `minijinja-contrib`'s pycompat, and our
//! own `raise_exception`, `strftime_now` (UTC) and `tojson` (Python's separators, no HTML
//! escaping, unlike minijinja's built-in).
//!
//! Sandbox: a template is model-supplied code. Execution is bounded by minijinja fuel
//! ([`FUEL`] instructions), recursion by a depth limit, output by [`max_output`] bytes, and walks
//! over nested values (printing, comparing, serializing) by the patched minijinja's depth bound
//! (`vendor/minijinja/README.forge.md`: a namespace holding itself used to overflow the stack);
//! each failure is a typed [`ForgeError::ChatTemplate`].

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value, context};

use crate::error::{ForgeError, Result};

const NAME: &str = "chat";
/// Instructions one render may execute. A long chat with a tool-heavy template needs well under a
/// million; this leaves room and stops a runaway loop in about 0.1 s (a release build spends
/// ~30 ns an instruction), so a hostile model file cannot make each chat request burn a second.
pub const FUEL: u64 = 4_000_000;
const RECURSION_LIMIT: usize = 64;
/// Marks errors raised by the template itself, to report them as such.
const RAISED: &str = "raise_exception: ";
/// `clock` value meaning "use the system clock".
const SYSTEM_CLOCK: i64 = i64::MIN;

/// Gemma's turn format, for a Gemma model whose file has no template (the Gemma 3 base models'
/// GGUFs have none). The same text as llama.cpp's built-in `LLM_CHAT_TEMPLATE_GEMMA`
/// (`llm_chat_apply_template`): `<start_of_turn>{role}\n{content}<end_of_turn>\n` with contents
/// trimmed, role `assistant` written `model`, system messages joined into the first user turn
/// (`{system}\n\n{message}`), and `<start_of_turn>model\n` as the generation prompt. It starts
/// with `{{ bos_token }}`, as Google's own Gemma templates do; the tokenizer then adds no second
/// BOS (`Tokenizer::encode`).
pub const GEMMA_TEMPLATE: &str = r"{{- bos_token -}}
{%- set ns = namespace(system='') -%}
{%- for message in messages -%}
    {%- if message['role'] == 'system' -%}
        {%- set ns.system = ns.system + (message['content'] | trim) -%}
    {%- else -%}
        {%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}
        {{- '<start_of_turn>' + role + '\n' -}}
        {%- if ns.system and role != 'model' -%}
            {{- ns.system + '\n\n' -}}
            {%- set ns.system = '' -%}
        {%- endif -%}
        {{- (message['content'] | trim) + '<end_of_turn>\n' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<start_of_turn>model\n' -}}
{%- endif -%}";

/// The most output one render may produce: 1 MiB plus four times the message text.
pub fn max_output(messages: &[ChatMessage]) -> usize {
    let input: usize = messages.iter().map(|m| m.role.len() + m.content.len()).sum();
    (1 << 20) + 4 * input
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage { role: role.into(), content: content.into() }
    }
}

pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
    /// Unix seconds for `strftime_now`, or `SYSTEM_CLOCK`.
    clock: Arc<AtomicI64>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").field("bos", &self.bos).field("eos", &self.eos).finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles `source`; `bos_token`/`eos_token` are the texts the template sees.
    /// The model's own template, where it has one: `tokens[bos]` and `tokens[eos]` fill
    /// `bos_token`/`eos_token`. A template that does not compile is ignored with a warning, so a
    /// model with a broken template still loads (and `forge run` then feeds prompts raw).
    pub(crate) fn of_model(source: Option<&str>, tokens: &[String], bos: Option<u32>, eos: Option<u32>) -> Option<ChatTemplate> {
        let text_of = |id: Option<u32>| id.map(|i| tokens[i as usize].clone()).unwrap_or_default();
        match ChatTemplate::new(source?, &text_of(bos), &text_of(eos)) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!("ignoring the model's chat template: {e}");
                None
            }
        }
    }

    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate> {
        let clock = Arc::new(AtomicI64::new(SYSTEM_CLOCK));
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(RECURSION_LIMIT);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> std::result::Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, format!("{RAISED}{msg}")))
        });
        let c = clock.clone();
        env.add_function("strftime_now", move |fmt: String| -> String {
            let t = c.load(Ordering::Relaxed);
            strftime(if t == SYSTEM_CLOCK { now_unix() } else { t }, &fmt)
        });
        env.add_filter("tojson", tojson);
        env.add_template_owned(NAME, source.to_owned()).map_err(|e| template_err(&e))?;
        Ok(ChatTemplate { env, bos: bos_token.to_owned(), eos: eos_token.to_owned(), clock })
    }

    /// Fixes the time `strftime_now` reports (Unix seconds, UTC); `None` goes back to the system
    /// clock. Where there is no clock (wasm32) it reports 1970-01-01 unless set.
    pub fn set_clock(&self, unix_secs: Option<i64>) {
        self.clock.store(unix_secs.unwrap_or(SYSTEM_CLOCK), Ordering::Relaxed);
    }

    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let tmpl = self.env.get_template(NAME).map_err(|e| template_err(&e))?;
        let ctx = context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos,
            eos_token => &self.eos,
        };
        let mut out = Capped { buf: Vec::new(), limit: max_output(messages), hit: false };
        minijinja::value::take_depth_exceeded();
        let rendered = tmpl.render_captured_to(ctx, &mut out);
        if minijinja::value::take_depth_exceeded() {
            // The patched minijinja (vendor/minijinja) elided a value nested too deeply or
            // containing itself rather than overflowing the stack; a prompt with "..." in it
            // would be silently wrong, so it is an error.
            return Err(ForgeError::ChatTemplate {
                what: "the template built a value that contains itself or is nested too deeply to print".into(),
            });
        }
        if let Err(e) = rendered {
            if out.hit {
                return Err(ForgeError::ChatTemplate {
                    what: format!("output exceeds the limit of {} bytes", out.limit),
                });
            }
            return Err(template_err(&e));
        }
        String::from_utf8(out.buf).map_err(|_| ForgeError::ChatTemplate { what: "output is not UTF-8".into() })
    }
}

fn template_err(e: &Error) -> ForgeError {
    let what = match e.kind() {
        ErrorKind::OutOfFuel => format!("the template ran too long (more than {FUEL} instructions)"),
        ErrorKind::InvalidOperation if e.detail().is_some_and(|d| d.starts_with(RAISED)) => {
            let msg = &e.detail().unwrap_or_default()[RAISED.len()..];
            format!("the template raised an exception: {msg}")
        }
        _ => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(&format!(": {inner}"));
                src = inner.source();
            }
            s
        }
    };
    ForgeError::ChatTemplate { what }
}

/// An `io::Write` into memory that fails past `limit` bytes.
struct Capped {
    buf: Vec<u8>,
    limit: usize,
    hit: bool,
}

impl io::Write for Capped {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if self.buf.len() + b.len() > self.limit {
            self.hit = true;
            return Err(io::Error::other("chat template output limit"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Python's `json.dumps(value, ensure_ascii=False, indent=indent, sort_keys=sort_keys)`.
fn tojson(value: &Value, kwargs: Kwargs) -> std::result::Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let _: Option<Value> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let opts = JsonOpts { indent, sort_keys: sort_keys.unwrap_or(false), ascii: ensure_ascii.unwrap_or(false) };
    let mut out = String::new();
    write_json(value, &opts, 0, &mut out)?;
    Ok(Value::from(out))
}

struct JsonOpts {
    indent: Option<usize>,
    sort_keys: bool,
    ascii: bool,
}

fn write_json(v: &Value, o: &JsonOpts, depth: usize, out: &mut String) -> std::result::Result<(), Error> {
    if depth > RECURSION_LIMIT {
        return Err(Error::new(ErrorKind::InvalidOperation, "tojson: value nested too deeply"));
    }
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => match v.as_i64() {
            Some(i) if !v.to_string().contains('.') => out.push_str(&i.to_string()),
            _ => {
                let f = f64::try_from(v.clone()).unwrap_or(f64::NAN);
                out.push_str(&match f {
                    f if f.is_nan() => "NaN".to_string(),
                    f if f.is_infinite() => if f > 0.0 { "Infinity" } else { "-Infinity" }.to_string(),
                    f => format!("{f:?}"),
                });
            }
        },
        ValueKind::String => json_str(v.as_str().unwrap_or_default(), o.ascii, out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            write_container(out, o, depth, '[', ']', &items, |item, out| write_json(item, o, depth + 1, out))?;
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if o.sort_keys {
                keys.sort();
            }
            write_container(out, o, depth, '{', '}', &keys, |k, out| {
                match k.as_str() {
                    Some(s) => json_str(s, o.ascii, out),
                    None => json_str(&k.to_string(), o.ascii, out),
                }
                out.push_str(": ");
                write_json(&v.get_item(k)?, o, depth + 1, out)
            })?;
        }
        _ => json_str(&v.to_string(), o.ascii, out),
    }
    Ok(())
}

fn write_container(
    out: &mut String,
    o: &JsonOpts,
    depth: usize,
    open: char,
    close: char,
    items: &[Value],
    mut each: impl FnMut(&Value, &mut String) -> std::result::Result<(), Error>,
) -> std::result::Result<(), Error> {
    out.push(open);
    if items.is_empty() {
        out.push(close);
        return Ok(());
    }
    for (i, item) in items.iter().enumerate() {
        match o.indent {
            Some(n) => {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                out.push_str(&" ".repeat(n * (depth + 1)));
            }
            None if i > 0 => out.push_str(", "),
            None => {}
        }
        each(item, out)?;
    }
    if let Some(n) = o.indent {
        out.push('\n');
        out.push_str(&" ".repeat(n * depth));
    }
    out.push(close);
    Ok(())
}

fn json_str(s: &str, ascii: bool, out: &mut String) {
    let quoted = serde_json::to_string(s).expect("a str always serializes");
    if !ascii {
        out.push_str(&quoted);
        return;
    }
    for c in quoted.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
}

fn now_unix() -> i64 {
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }
    #[cfg(target_arch = "wasm32")]
    {
        0
    }
}

const MONTHS: [&str; 12] =
    ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31) (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A subset of C `strftime` in UTC: `%Y %y %m %d %e %B %b %h %A %a %j %H %I %M %S %p %%`; other
/// directives are copied as is.
pub(crate) fn strftime(unix: i64, fmt: &str) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    let weekday = (days + 4).rem_euclid(7) as usize;
    let jan1 = {
        let mut t = days - i64::from(d) + 1;
        for mo in (1..m).rev() {
            t -= i64::from(days_in_month(y, mo));
        }
        t
    };
    let mut out = String::with_capacity(fmt.len() + 16);
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y.rem_euclid(100))),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('e') => out.push_str(&format!("{d:2}")),
            Some('B') => out.push_str(MONTHS[m as usize - 1]),
            Some('b' | 'h') => out.push_str(&MONTHS[m as usize - 1][..3]),
            Some('A') => out.push_str(DAYS[weekday]),
            Some('a') => out.push_str(&DAYS[weekday][..3]),
            Some('j') => out.push_str(&format!("{:03}", days - jan1 + 1)),
            Some('H') => out.push_str(&format!("{hh:02}")),
            Some('I') => out.push_str(&format!("{:02}", if hh % 12 == 0 { 12 } else { hh % 12 })),
            Some('M') => out.push_str(&format!("{mm:02}")),
            Some('S') => out.push_str(&format!("{ss:02}")),
            Some('p') => out.push_str(if hh < 12 { "AM" } else { "PM" }),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}
