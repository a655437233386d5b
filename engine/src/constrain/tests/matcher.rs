//! The matcher under sampling: whatever the logits, masked sampling produces text that matches.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use super::{MISSING_BYTE, full_match, id_of, tokenizer};
use crate::constrain::{Grammar, Matcher, json_schema_to_regex};
use crate::error::ForgeError;
use crate::tokenizer::Tokenizer;

/// Samples under the mask from random logits until the matcher is finished or a stop id comes
/// up. Tokens that close something (`"`, `}`, `]`) and the stop id get a head start so walks
/// end in a few hundred tokens instead of wandering inside strings.
fn sample(tok: &Tokenizer, m: &mut Matcher, seed: u64) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for _ in 0..5000 {
        if m.is_finished() {
            break;
        }
        let mut logits: Vec<f32> = (0..tok.vocab_size() as u32)
            .map(|id| {
                let closes =
                    tok.stop_ids().contains(&id) || tok.render(id).unwrap().last().is_some_and(|b| b"\"}]".contains(b));
                rng.random::<f32>() + if closes { 0.7 } else { 0.0 }
            })
            .collect();
        // Padded output rows past the vocabulary must come back masked too.
        logits.extend([5.0; 3]);
        m.mask(&mut logits);
        assert!(logits[tok.vocab_size()..].iter().all(|l| *l == f32::NEG_INFINITY));
        let id = (0..logits.len()).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap() as u32;
        assert!(logits[id as usize].is_finite(), "nothing allowed after {:?}", String::from_utf8_lossy(&out));
        m.accept(id).unwrap();
        if tok.stop_ids().contains(&id) {
            break;
        }
        out.extend_from_slice(tok.render(id).unwrap());
    }
    assert!(m.is_match(), "stopped without a complete match: {:?}", String::from_utf8_lossy(&out));
    String::from_utf8(out).expect("the grammar only admits UTF-8")
}

const PERSON: &str = r##"{
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "age": {"type": "integer"},
        "score": {"type": "number"},
        "tags": {"type": "array", "items": {"enum": ["x", "y\"z"]}, "maxItems": 3},
        "ok": {"type": "boolean"},
        "nick": {"type": ["string", "null"]},
        "pet": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/pet"}]}
    },
    "required": ["name", "age", "ok"],
    "$defs": {"pet": {"type": "object", "properties": {"kind": {"const": "cat"}, "lives": {"type": "integer"}}, "required": ["kind"]}}
}"##;

/// The PERSON schema, checked by hand rather than by the regex it compiled to.
fn check_person(v: &Value) {
    let o = v.as_object().expect("an object");
    for key in o.keys() {
        assert!(["name", "age", "score", "tags", "ok", "nick", "pet"].contains(&key.as_str()), "extra key {key}");
    }
    assert!(o["name"].as_str().unwrap().chars().count() <= 8);
    assert!(o["age"].is_i64() || o["age"].is_u64());
    assert!(o["ok"].is_boolean());
    assert!(o.get("score").is_none_or(Value::is_number));
    if let Some(tags) = o.get("tags") {
        let tags = tags.as_array().unwrap();
        assert!(tags.len() <= 3 && tags.iter().all(|t| t == "x" || t == "y\"z"));
    }
    assert!(o.get("nick").is_none_or(|n| n.is_string() || n.is_null()));
    if let Some(pet) = o.get("pet").filter(|p| !p.is_null()) {
        let pet = pet.as_object().unwrap();
        assert_eq!(pet["kind"], "cat");
        assert!(pet.keys().all(|k| k == "kind" || k == "lives"));
        assert!(pet.get("lives").is_none_or(|l| l.is_i64() || l.is_u64()));
    }
}

#[test]
fn sampling_under_the_mask_satisfies_the_schema() {
    let tok = tokenizer();
    let schema: Value = serde_json::from_str(PERSON).unwrap();
    let g = Grammar::from_json_schema(&schema, &tok).unwrap();
    let re = json_schema_to_regex(&schema).unwrap();
    for seed in 0..40 {
        let text = sample(&tok, &mut g.matcher(), seed);
        assert!(full_match(&re, &text), "seed {seed}: {text:?}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("seed {seed}: {text:?}: {e}"));
        check_person(&v);
    }
}

#[test]
fn sampling_with_additional_properties_never_repeats_a_declared_name() {
    let tok = tokenizer();
    let schema = json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 4}},
        "required": ["name"], "additionalProperties": {"type": "integer"}});
    let g = Grammar::from_json_schema(&schema, &tok).unwrap();
    let mut extras = 0;
    for seed in 0..40 {
        let text = sample(&tok, &mut g.matcher(), seed);
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("seed {seed}: {text:?}: {e}"));
        let o = v.as_object().unwrap();
        assert!(o["name"].is_string(), "{text}");
        assert!(o.iter().filter(|(k, _)| *k != "name").all(|(_, v)| v.is_i64() || v.is_u64()), "{text}");
        assert_eq!(text.matches("\"name\"").count(), 1, "a declared key twice: {text}");
        extras += o.len() - 1;
    }
    assert!(extras > 0, "the walks never took an additional property");
}

#[test]
fn sampling_json_object_and_regex() {
    let tok = tokenizer();
    let g = Grammar::json_object(&tok).unwrap();
    for seed in 0..20 {
        let text = sample(&tok, &mut g.matcher(), seed);
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("seed {seed}: {text:?}: {e}"));
        assert!(v.is_object(), "{text}");
    }
    // Multi-byte characters come out whole although tokens may split them.
    let re = r"[a-z]{1,5}@[αβγé]{2,3}\.(?:com|org)";
    let g = Grammar::from_regex(re, &tok).unwrap();
    for seed in 0..20 {
        let mut m = g.matcher();
        let text = sample(&tok, &mut m, seed);
        assert!(full_match(re, &text) && m.is_finished(), "seed {seed}: {text:?}");
    }
}

#[test]
fn accept_rejects_what_the_mask_excludes() {
    let tok = tokenizer();
    let g = Grammar::from_json_schema(&json!({"type": "boolean"}), &tok).unwrap();
    let mut m = g.matcher();
    for bad in ["{\"", "12", "nu", "<|im_start|>"] {
        let id = if bad == "<|im_start|>" { 1 } else { id_of(&tok, bad) };
        assert!(matches!(m.accept(id), Err(ForgeError::InvalidArgument { .. })), "{bad}");
    }
    assert!(m.accept(tok.vocab_size() as u32).is_err());
    // A rejected token leaves the position alone.
    m.accept(id_of(&tok, "f")).unwrap();
    m.accept(id_of(&tok, "ab")).unwrap_err();
    let mut logits = vec![0.0; tok.vocab_size()];
    m.mask(&mut logits);
    let allowed: Vec<u32> = (0..logits.len() as u32).filter(|&i| logits[i as usize] == 0.0).collect();
    assert_eq!(allowed, [id_of(&tok, "a")]);
}

#[test]
fn stop_ids_only_where_the_text_is_a_complete_match() {
    let tok = tokenizer();
    let g = Grammar::from_regex("12(?:345)?", &tok).unwrap();
    let stop = tok.stop_ids()[0];
    let mut m = g.matcher();
    let allows_stop = |m: &mut Matcher| {
        let mut logits = vec![0.0; tok.vocab_size()];
        m.mask(&mut logits);
        logits[stop as usize] == 0.0
    };
    assert!(!m.is_match() && !allows_stop(&mut m));
    assert!(m.accept(stop).is_err());
    m.accept(id_of(&tok, "1")).unwrap();
    assert!(!allows_stop(&mut m));
    m.accept(id_of(&tok, "2")).unwrap();
    // Complete, but "345" could still follow: stop is allowed, nothing forces it.
    assert!(m.is_match() && !m.is_finished() && allows_stop(&mut m));
    m.accept(id_of(&tok, "345")).unwrap();
    assert!(m.is_match() && m.is_finished() && allows_stop(&mut m));
    m.accept(stop).unwrap();
    // The control token that is not a stop id is never allowed.
    let mut logits = vec![0.0; tok.vocab_size()];
    g.matcher().mask(&mut logits);
    assert_eq!(logits[1], f32::NEG_INFINITY);
}

#[test]
fn a_dead_end_allows_stopping() {
    let tok = tokenizer();
    // No token spells `~`, so after "a" nothing can continue.
    let g = Grammar::from_regex(&format!("a{}", MISSING_BYTE as char), &tok).unwrap();
    let mut m = g.matcher();
    m.accept(id_of(&tok, "a")).unwrap();
    let mut logits = vec![0.0; tok.vocab_size()];
    m.mask(&mut logits);
    let allowed: Vec<u32> = (0..logits.len() as u32).filter(|&i| logits[i as usize] == 0.0).collect();
    assert_eq!(allowed, tok.stop_ids());
    assert!(!m.is_match());
}

#[test]
fn a_match_is_not_extended_past_its_end() {
    // regex-automata reports matches one byte late; after "a" for `a`, the state reached by any
    // further byte still remembers that match but can never produce one ending later.
    let tok = tokenizer();
    let g = Grammar::from_regex("a", &tok).unwrap();
    let mut m = g.matcher();
    m.accept(id_of(&tok, "a")).unwrap();
    assert!(m.is_finished());
    let mut logits = vec![0.0; tok.vocab_size()];
    m.mask(&mut logits);
    let allowed: Vec<u32> = (0..logits.len() as u32).filter(|&i| logits[i as usize] == 0.0).collect();
    assert_eq!(allowed, tok.stop_ids());
    // MatchKind::All: the longer branch of `a|ab` stays reachable after `a` matched.
    let g = Grammar::from_regex("a|ab", &tok).unwrap();
    let mut m = g.matcher();
    m.accept(id_of(&tok, "ab")).unwrap();
    assert!(m.is_finished());
}

#[test]
fn bad_patterns_are_invalid_arguments() {
    let tok = tokenizer();
    for bad in ["(", "a{5", r"\p{NoSuchClass}", r"\w{1000}\w{1000}", "[^\\x00-\\x{10FFFF}]"] {
        match Grammar::from_regex(bad, &tok) {
            Err(ForgeError::InvalidArgument { what }) => assert!(what.contains("response format"), "{what}"),
            other => panic!("{bad}: expected InvalidArgument, got {other:?}"),
        }
    }
    let unsupported = json!({"type": "object", "patternProperties": {"^a": {}}});
    assert!(matches!(Grammar::from_json_schema(&unsupported, &tok), Err(ForgeError::InvalidArgument { .. })));
}

#[test]
fn grammar_is_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Grammar>();
    send_sync::<Matcher>();
}
