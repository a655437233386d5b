//! Structured output: a request's [`Constraint`] compiled to a [`Grammar`] over the model's
//! vocabulary, off the async runtime (compiling walks the whole vocabulary and can take a
//! moment), and cached by the constraint's text, since clients send the same schema over and over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use forge::serve_api::{ApiError, Constraint};
use forge_engine::constrain::Grammar;

use super::AppState;

/// Grammars kept; the least recently used goes first.
const CAPACITY: usize = 64;

#[derive(Default)]
pub(crate) struct Cache {
    inner: Mutex<Lru>,
}

#[derive(Default)]
struct Lru {
    /// key → (grammar, tick of its last use).
    map: HashMap<String, (Arc<Grammar>, u64)>,
    tick: u64,
}

/// The grammar for `c`, from the cache or compiled now.
pub(crate) async fn grammar(st: &AppState, c: &Constraint) -> Result<Arc<Grammar>, ApiError> {
    let key = c.cache_key();
    if let Some(g) = st.grammars.lookup(&key) {
        return Ok(g);
    }
    let (c2, tok) = (c.clone(), st.engine.tokenizer().clone());
    let built = st
        .blocking(move || match &c2 {
            Constraint::JsonSchema(schema) => Grammar::from_json_schema(schema, &tok),
            Constraint::JsonObject => Grammar::json_object(&tok),
            Constraint::Regex(re) => Grammar::from_regex(re, &tok),
        })
        .await?;
    let param = match c {
        Constraint::Regex(_) => "regex",
        _ => "response_format",
    };
    let g = built.map_err(|e| ApiError::field(param, e.to_string()))?;
    st.grammars.insert(key, g.clone());
    Ok(g)
}

impl Cache {
    fn lookup(&self, key: &str) -> Option<Arc<Grammar>> {
        let mut lru = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        lru.tick += 1;
        let tick = lru.tick;
        lru.map.get_mut(key).map(|(g, used)| {
            *used = tick;
            g.clone()
        })
    }

    fn insert(&self, key: String, g: Arc<Grammar>) {
        let mut lru = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if lru.map.len() >= CAPACITY
            && !lru.map.contains_key(&key)
            && let Some(oldest) = lru.map.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| k.clone())
        {
            lru.map.remove(&oldest);
        }
        lru.tick += 1;
        let tick = lru.tick;
        lru.map.insert(key, (g, tick));
    }
}
