//! The bytes of a model file, shared and immutable.
//!
//! On native targets a file is memory-mapped, so opening a multi-gigabyte model costs nothing
//! until its pages are touched; on wasm (and for files built in memory) the bytes are owned.
//! Clones share one mapping.

use std::sync::Arc;

use crate::error::{ForgeError, Result};

/// Shared, immutable bytes of a model file: memory-mapped on native, owned on wasm / from memory.
#[derive(Clone)]
pub struct FileBytes {
    inner: Arc<Inner>,
}

enum Inner {
    #[cfg(not(target_arch = "wasm32"))]
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl FileBytes {
    /// Maps `path` read-only (reads it whole on wasm).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: &std::path::Path) -> Result<FileBytes> {
        let file = std::fs::File::open(path).map_err(|e| ForgeError::io(path, e))?;
        let len = file.metadata().map_err(|e| ForgeError::io(path, e))?.len();
        if len == 0 {
            // Some platforms refuse to map an empty file; an empty Vec says the same thing.
            return Ok(FileBytes::from_vec(Vec::new()));
        }
        // SAFETY: the mapping is read-only and never handed out mutably. As with every mmap,
        // another process truncating or rewriting the file while it is mapped is undefined
        // behaviour; model files are treated as immutable while the engine runs.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| ForgeError::io(path, e))?;
        Ok(FileBytes { inner: Arc::new(Inner::Mapped(map)) })
    }

    /// Reads `path` whole (wasm has no mmap).
    #[cfg(target_arch = "wasm32")]
    pub fn open(path: &std::path::Path) -> Result<FileBytes> {
        std::fs::read(path).map(FileBytes::from_vec).map_err(|e| ForgeError::io(path, e))
    }

    pub fn from_vec(v: Vec<u8>) -> FileBytes {
        FileBytes { inner: Arc::new(Inner::Owned(v)) }
    }
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &*self.inner {
            #[cfg(not(target_arch = "wasm32"))]
            Inner::Mapped(m) => m,
            Inner::Owned(v) => v,
        }
    }
}

impl std::fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileBytes({} bytes)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_maps_and_clones_share() {
        let path = std::env::temp_dir().join(format!("forge-bytes-{}.bin", std::process::id()));
        std::fs::write(&path, b"hello").unwrap();
        let b = FileBytes::open(&path).unwrap();
        let c = b.clone();
        assert_eq!(&*c, b"hello");
        assert_eq!(format!("{b:?}"), "FileBytes(5 bytes)");
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(FileBytes::open(&path), Err(ForgeError::Io { .. })));
    }
}
