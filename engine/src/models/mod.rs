//! Model families, each written once as a graph builder. Model code never names a backend.

pub mod llama;
