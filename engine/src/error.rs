//! The engine's one error type. Every variant carries the fields a user needs to act on it;
//! `Display` says what went wrong and, where there is one, what to do next.

use crate::dtype::DType;

pub type Result<T, E = ForgeError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForgeError {
    /// The OS error is part of the message and deliberately not a `source()`: shown both ways,
    /// anyhow's chain printed it twice. No variant has a source; each message is whole.
    #[error("cannot read {path}: {error}")]
    Io { path: String, error: std::io::Error },

    // ---- model files (GGUF, safetensors, config.json) ----
    #[error("{format}: not a {format} file ({what})")]
    BadMagic { format: &'static str, what: String },
    #[error("{format}: version {version} is not supported (supported: {supported})")]
    UnsupportedVersion { format: &'static str, version: u64, supported: &'static str },
    #[error("{format}: file ends at byte {file_len} but {what} needs bytes up to {need}; the file is truncated or corrupt")]
    Truncated { format: &'static str, what: String, need: u64, file_len: u64 },
    #[error("{format}: {what} = {value} exceeds the limit of {limit}; the file is corrupt or hostile")]
    TooLarge { format: &'static str, what: String, value: u64, limit: u64 },
    #[error("{format}: {what}")]
    Malformed { format: &'static str, what: String },
    #[error("tensor `{name}` has type {type_name}, which this engine does not support (supported: f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q4_K, q5_K, q6_K); re-quantize the model to one of those")]
    UnsupportedDType { name: String, type_name: String },
    #[error("bad shape: {what}")]
    BadShape { what: String },
    #[error("the model has no tensor `{name}`")]
    MissingTensor { name: String },
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    TensorShape { name: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("the model has no metadata key `{key}`")]
    MissingMetadata { key: String },
    #[error("metadata `{key}` is {found}, expected {expected}")]
    MetadataType { key: String, expected: &'static str, found: String },
    #[error("architecture `{arch}` is not supported (supported: {supported})")]
    UnknownArchitecture { arch: String, supported: &'static str },
    #[error("model: {what} is not supported")]
    UnsupportedModel { what: String },

    // ---- text ----
    #[error("tokenizer: {what}")]
    Tokenizer { what: String },
    #[error("chat template: {what}")]
    ChatTemplate { what: String },
    #[error("the prompt and generation need {need} positions but the context holds {ctx}; shorten the prompt, lower --max-tokens or raise --ctx")]
    ContextOverflow { need: usize, ctx: usize },

    // ---- graph and backends ----
    #[error("{backend} backend does not support {op} on {dtype}")]
    Unsupported { op: &'static str, dtype: DType, backend: String },
    #[error("graph: {what}")]
    Graph { what: String },
    #[error("{backend} backend: {what}")]
    Backend { backend: String, what: String },
    #[error("{backend} backend: out of memory: need {need} bytes, {have} available")]
    OutOfMemory { backend: String, need: u64, have: u64 },
    #[error("invalid argument: {what}")]
    InvalidArgument { what: String },
}

impl ForgeError {
    pub fn io(path: impl AsRef<std::path::Path>, error: std::io::Error) -> Self {
        ForgeError::Io { path: path.as_ref().display().to_string(), error }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    #[test]
    fn io_error_says_the_os_reason_once_and_has_no_source() {
        let os = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = super::ForgeError::io("/x", os);
        let text = e.to_string();
        assert!(text.starts_with("cannot read /x: "), "{text}");
        assert_eq!(text.matches(&std::io::Error::from(std::io::ErrorKind::NotFound).to_string()).count(), 1, "{text}");
        assert!(e.source().is_none(), "a source would be printed again by error chains");
    }
}

impl From<crate::dtype::SizeError> for ForgeError {
    fn from(e: crate::dtype::SizeError) -> Self {
        ForgeError::BadShape { what: e.to_string() }
    }
}
