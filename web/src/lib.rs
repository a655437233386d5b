//! Forge in the browser (issue 6). Bindings land with the browser build.
