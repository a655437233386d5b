//! The API key: `Authorization: Bearer KEY`, compared in constant time.
//!
//! Both sides are hashed (SHA-256) before the comparison, so the time it takes depends on neither
//! the key's length nor how many of its leading bytes a guess got right; the comparison of the
//! digests then touches every byte whatever they hold.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use forge::serve_api::ApiError;
use sha2::{Digest, Sha256};

use super::Shared;
use super::routes::error_response;

/// The SHA-256 of the configured key (the key itself is not kept).
pub(crate) struct Key([u8; 32]);

impl Key {
    pub fn new(key: &str) -> Key {
        Key(Sha256::digest(key.as_bytes()).into())
    }

    pub fn matches(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let diff = self.0.iter().zip(&digest).fold(0u8, |acc, (a, b)| std::hint::black_box(acc | (a ^ b)));
        diff == 0
    }
}

/// Middleware on every route but /health: 401 unless the request carries the key.
pub(crate) async fn require_key(State(st): State<Shared>, req: Request, next: Next) -> Response {
    if let Some(key) = &st.api_key {
        let presented = req.headers().get(AUTHORIZATION).and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        if !presented.is_some_and(|t| key.matches(t)) {
            return error_response(&ApiError::Unauthorized);
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::Key;

    #[test]
    fn only_the_exact_key_matches() {
        let k = Key::new("s3cret");
        assert!(k.matches(b"s3cret"));
        for wrong in [&b""[..], b"s3cre", b"s3cret ", b"S3cret", b"s3cretx"] {
            assert!(!k.matches(wrong), "{wrong:?}");
        }
    }
}
