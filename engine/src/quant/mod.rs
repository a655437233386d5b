//! Quantized block formats.
