//! Fault injection: make a named backend fail at a named stage, so that fallback can be tested
//! on a machine that has nothing to fail.
//!
//! A [`FaultPlan`] is parsed from `FORGE_FAULT=<backend>:<stage>[,<backend>:<stage>…]` at the
//! binary's edge and handed to `devices::open_session`, which makes it the current
//! plan of its thread while it opens backends and builds sessions. Backends call [`check`] at
//! their injection points:
//!
//! | stage     | where it is checked                                                   |
//! |-----------|-----------------------------------------------------------------------|
//! | `init`    | backend constructors (`CpuBackend::try_new`, wgpu device creation)    |
//! | `compile` | kernel/pipeline creation (`CpuBackend::execute`, wgpu pipelines)      |
//! | `alloc`   | param and buffer creation (`create_param`, wgpu buffer allocation)    |
//!
//! **Architecture Invariant:** this module never reads the process environment; outside a
//! plan's scope `check` always succeeds, so tests that run in parallel cannot see each other's
//! faults.

use std::cell::RefCell;
use std::fmt;

use crate::error::{ForgeError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Init,
    Compile,
    Alloc,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Init => "init",
            Stage::Compile => "compile",
            Stage::Alloc => "alloc",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The faults to inject: `(backend name, stage)` pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    faults: Vec<(String, Stage)>,
}

impl FaultPlan {
    /// Parses `cpu:init,wgpu:alloc`. `origin` names where the text came from (`FORGE_FAULT`) for
    /// the error message. An empty string is an empty plan.
    pub fn parse(origin: &str, text: &str) -> Result<FaultPlan> {
        let mut faults = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let bad = |what: &str| ForgeError::InvalidArgument { what: format!("{origin}={text}: `{item}`: {what}") };
            let (backend, stage) = item.split_once(':').ok_or_else(|| bad("expected <backend>:<stage>, e.g. wgpu:init"))?;
            let backend = backend.trim().to_ascii_lowercase();
            if !matches!(backend.as_str(), "cpu" | "wgpu" | "cuda") {
                return Err(bad("unknown backend; expected cpu, wgpu or cuda"));
            }
            let stage = match stage.trim().to_ascii_lowercase().as_str() {
                "init" => Stage::Init,
                "compile" => Stage::Compile,
                "alloc" => Stage::Alloc,
                _ => return Err(bad("unknown stage; expected init, compile or alloc")),
            };
            faults.push((backend, stage));
        }
        Ok(FaultPlan { faults })
    }

    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }

    pub fn fails(&self, backend: &str, stage: Stage) -> bool {
        self.faults.iter().any(|(b, s)| b == backend && *s == stage)
    }

    /// Runs `f` with this plan as the current thread's plan (restored afterwards, also on panic).
    pub fn scope<T>(&self, f: impl FnOnce() -> T) -> T {
        struct Restore(Option<FaultPlan>);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT.with(|c| *c.borrow_mut() = self.0.take());
            }
        }
        let _restore = Restore(CURRENT.with(|c| c.replace(Some(self.clone()))));
        f()
    }
}

thread_local! {
    static CURRENT: RefCell<Option<FaultPlan>> = const { RefCell::new(None) };
}

/// Fails when the current plan names `backend` at `stage`; succeeds otherwise (and always outside
/// [`FaultPlan::scope`]).
pub fn check(backend: &str, stage: Stage) -> Result<()> {
    let fails = CURRENT.with(|c| c.borrow().as_ref().is_some_and(|p| p.fails(backend, stage)));
    if fails {
        return Err(ForgeError::Backend { backend: backend.to_string(), what: format!("injected fault at {stage} (FORGE_FAULT={backend}:{stage})") });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_rejects_bad_items() {
        let p = FaultPlan::parse("FORGE_FAULT", "wgpu:init, cpu:ALLOC").unwrap();
        assert!(p.fails("wgpu", Stage::Init) && p.fails("cpu", Stage::Alloc) && !p.fails("cpu", Stage::Init));
        assert!(FaultPlan::parse("FORGE_FAULT", "").unwrap().is_empty());
        let e = FaultPlan::parse("FORGE_FAULT", "wgpu:boot").unwrap_err().to_string();
        assert!(e.contains("FORGE_FAULT=wgpu:boot") && e.contains("unknown stage"), "{e}");
        let e = FaultPlan::parse("FORGE_FAULT", "metal:init").unwrap_err().to_string();
        assert!(e.contains("unknown backend"), "{e}");
        assert!(FaultPlan::parse("FORGE_FAULT", "wgpu").is_err());
    }

    #[test]
    fn check_fires_only_inside_the_scope() {
        let p = FaultPlan::parse("FORGE_FAULT", "cpu:compile").unwrap();
        assert!(check("cpu", Stage::Compile).is_ok());
        let inside = p.scope(|| check("cpu", Stage::Compile));
        assert!(inside.unwrap_err().to_string().contains("injected fault at compile"));
        assert!(p.scope(|| check("cpu", Stage::Init)).is_ok());
        assert!(check("cpu", Stage::Compile).is_ok());
    }
}
