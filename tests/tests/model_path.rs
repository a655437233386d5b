//! Where the tests find the real model: the same cache `forge pull` fills (`FORGE_MODEL_DIR`,
//! else `$XDG_CACHE_HOME/forge/models`, else `$HOME/.cache/forge/models`), and a missing model
//! with `FORGE_REQUIRE_MODEL=1` is an error, never a skip. The environment is passed in, so these
//! run the same whatever the machine has.

use std::ffi::OsString;
use std::path::Path;

use forge_tests::{SMOLLM2_FILE, find_smollm2, tiny::temp_dir};

fn env<'a>(pairs: &'a [(&'a str, &'a Path)]) -> impl Fn(&str) -> Option<OsString> + 'a {
    move |k| pairs.iter().find(|(name, _)| *name == k).map(|(_, v)| v.as_os_str().to_owned())
}

/// A directory holding `<root>/forge/models/<SMOLLM2_FILE>` (an empty stand-in file).
fn cache_with_model(name: &str) -> std::path::PathBuf {
    let root = temp_dir(name);
    std::fs::create_dir_all(root.join("forge/models")).unwrap();
    std::fs::write(root.join("forge/models").join(SMOLLM2_FILE), b"").unwrap();
    root
}

#[test]
fn the_model_is_found_where_forge_pull_puts_it() {
    let xdg = cache_with_model("model-path-xdg");
    let home = temp_dir("model-path-home");
    let want = xdg.join("forge/models").join(SMOLLM2_FILE);
    // $XDG_CACHE_HOME wins over $HOME/.cache, as for `forge pull`.
    assert_eq!(find_smollm2(env(&[("XDG_CACHE_HOME", &xdg), ("HOME", &home)])), Ok(Some(want.clone())));
    // The same file under $HOME/.cache when XDG_CACHE_HOME is unset.
    let home_cache = home.join(".cache");
    std::fs::create_dir_all(home_cache.join("forge/models")).unwrap();
    std::fs::write(home_cache.join("forge/models").join(SMOLLM2_FILE), b"").unwrap();
    assert_eq!(find_smollm2(env(&[("HOME", &home)])), Ok(Some(home_cache.join("forge/models").join(SMOLLM2_FILE))));
    // FORGE_MODEL_DIR names the directory itself.
    let dir = xdg.join("forge/models");
    assert_eq!(find_smollm2(env(&[("FORGE_MODEL_DIR", &dir), ("HOME", &home)])), Ok(Some(want)));
    // And it is the directory the binary's cache uses (`forge_engine::model::model_dir`).
    assert_eq!(forge_tests::forge_engine::model::model_dir(env(&[("XDG_CACHE_HOME", &xdg), ("HOME", &home)])), dir);
}

#[test]
fn a_missing_model_is_skipped_unless_required() {
    let empty = temp_dir("model-path-empty");
    let one = Path::new("1");
    assert_eq!(find_smollm2(env(&[("XDG_CACHE_HOME", &empty)])), Ok(None));
    let e = find_smollm2(env(&[("XDG_CACHE_HOME", &empty), ("FORGE_REQUIRE_MODEL", one)])).unwrap_err();
    assert!(e.starts_with("FORGE_REQUIRE_MODEL=1 but ") && e.contains(&empty.join("forge/models").join(SMOLLM2_FILE).display().to_string()), "{e}");
    // A model under $HOME/.cache does not count when XDG_CACHE_HOME points elsewhere (as for
    // `forge pull`, which would not find it either).
    let home = temp_dir("model-path-elsewhere");
    std::fs::create_dir_all(home.join(".cache/forge/models")).unwrap();
    std::fs::write(home.join(".cache/forge/models").join(SMOLLM2_FILE), b"").unwrap();
    assert!(find_smollm2(env(&[("XDG_CACHE_HOME", &empty), ("HOME", &home), ("FORGE_REQUIRE_MODEL", one)])).is_err());
}
