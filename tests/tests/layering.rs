//! The engine's top-level modules form layers: no module reaches, directly or through others, a
//! module that reaches it back (ARCHITECTURE.md, "Layers"). Read from the source: every
//! `crate::<module>` a module's non-test code names, outside comments.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules its code names.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/src");
    let modules: BTreeSet<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_string()).filter(|m| m != "lib"))
        .collect();
    let mut deps: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    let mut stack = vec![src.clone()];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let rel = p.strip_prefix(&src).unwrap();
        let top = rel.iter().next().unwrap().to_str().unwrap().trim_end_matches(".rs").to_string();
        let name = p.file_stem().unwrap().to_str().unwrap();
        let test_file = name == "tests" || name.ends_with("_tests") || name == "test_util" || name == "testing" || rel.iter().any(|c| c == "tests");
        if top == "lib" || p.extension().is_none_or(|e| e != "rs") || test_file {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        for line in code.lines().map(str::trim_start).filter(|l| !l.starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let used: String = line[i + 7..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if used != top && modules.contains(&used) {
                    deps.get_mut(&top).unwrap().insert(used);
                }
            }
        }
    }
    deps
}

/// A path from `from` back to itself, if there is one.
fn cycle_through(deps: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![from.to_string()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        for next in &deps[path.last().unwrap()] {
            if next == from {
                return Some([path.clone(), vec![from.to_string()]].concat());
            }
            if seen.insert(next.clone()) {
                stack.push([path.clone(), vec![next.clone()]].concat());
            }
        }
    }
    None
}

#[test]
fn engine_modules_have_no_cycles() {
    let deps = dependencies();
    assert!(deps["session"].contains("models") && deps["models"].contains("graph"), "the scan sees nothing: {deps:?}");
    let cycles: Vec<String> = deps.keys().filter_map(|m| cycle_through(&deps, m)).map(|c| c.join(" → ")).collect();
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}
