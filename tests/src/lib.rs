pub use forge_engine;
