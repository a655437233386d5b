//! The sampling a model's authors recommend, where its files say: GGUF's `general.sampling.*`
//! keys (as llama.cpp reads them) or a Hugging Face `generation_config.json`. Callers start from
//! these and let the user's own settings win.

use crate::error::Result;
use crate::formats::gguf::Metadata;
use crate::sampler::SamplerConfig;

/// Recommended sampling settings; `None` where the model says nothing. Also the shape of any
/// partial settings laid over a [`SamplerConfig`] (a CLI's flags, a page's options): see
/// [`SamplingDefaults::apply`].
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct SamplingDefaults {
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
}

impl SamplingDefaults {
    /// From GGUF metadata: `general.sampling.temp`, `.top_k`, `.top_p`, `.min_p`,
    /// `.penalty_repeat`. A hint of the wrong type is ignored (with a warning), not a load error:
    /// the model runs the same without it.
    pub fn from_gguf(meta: &Metadata) -> SamplingDefaults {
        fn hint<T>(key: &str, v: Result<Option<T>>) -> Option<T> {
            v.unwrap_or_else(|e| {
                tracing::warn!("ignoring the sampling hint {key}: {e}");
                None
            })
        }
        let f = |k: &str| hint(k, meta.opt_f32(&format!("general.sampling.{k}")));
        SamplingDefaults {
            temperature: f("temp"),
            top_k: hint("top_k", meta.opt_u64("general.sampling.top_k")).map(|k| k.min(u32::MAX as u64) as usize),
            top_p: f("top_p"),
            min_p: f("min_p"),
            repeat_penalty: f("penalty_repeat"),
        }
        .sane()
    }

    /// From `generation_config.json` (transformers' names; `do_sample: false` means greedy).
    pub fn from_hf(g: &serde_json::Value) -> SamplingDefaults {
        let f = |k: &str| g.get(k).and_then(|v| v.as_f64()).map(|v| v as f32);
        let greedy = g.get("do_sample").and_then(|v| v.as_bool()) == Some(false);
        SamplingDefaults {
            temperature: if greedy { Some(0.0) } else { f("temperature") },
            top_k: g.get("top_k").and_then(|v| v.as_u64()).map(|k| k.min(u32::MAX as u64) as usize),
            top_p: f("top_p"),
            min_p: f("min_p"),
            repeat_penalty: f("repetition_penalty"),
        }
        .sane()
    }

    /// Drops values no sampler could use (a file is not trusted to hold sensible numbers).
    fn sane(self) -> SamplingDefaults {
        let keep = |v: Option<f32>, ok: fn(f32) -> bool| v.filter(|&x| x.is_finite() && ok(x));
        SamplingDefaults {
            temperature: keep(self.temperature, |t| t >= 0.0),
            top_k: self.top_k,
            top_p: keep(self.top_p, |p| p > 0.0 && p <= 1.0),
            min_p: keep(self.min_p, |p| (0.0..=1.0).contains(&p)),
            repeat_penalty: keep(self.repeat_penalty, |r| r > 0.0),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == SamplingDefaults::default()
    }

    /// `base` with every setting the model gives replaced by the model's.
    pub fn apply(&self, base: SamplerConfig) -> SamplerConfig {
        SamplerConfig {
            temperature: self.temperature.unwrap_or(base.temperature),
            top_k: self.top_k.unwrap_or(base.top_k),
            top_p: self.top_p.unwrap_or(base.top_p),
            min_p: self.min_p.unwrap_or(base.min_p),
            repeat_penalty: self.repeat_penalty.unwrap_or(base.repeat_penalty),
            ..base
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_config_maps_to_the_sampler_and_greedy_wins() {
        let g = serde_json::json!({"temperature": 0.2, "top_p": 0.9, "top_k": 50, "repetition_penalty": 1.1, "bos_token_id": 1});
        let d = SamplingDefaults::from_hf(&g);
        assert_eq!(d, SamplingDefaults { temperature: Some(0.2), top_k: Some(50), top_p: Some(0.9), min_p: None, repeat_penalty: Some(1.1) });
        let s = d.apply(SamplerConfig::default());
        assert_eq!((s.temperature, s.top_k, s.top_p, s.min_p, s.repeat_penalty), (0.2, 50, 0.9, SamplerConfig::default().min_p, 1.1));
        let g = serde_json::json!({"do_sample": false, "temperature": 0.6});
        assert_eq!(SamplingDefaults::from_hf(&g).temperature, Some(0.0));
        assert!(SamplingDefaults::from_hf(&serde_json::json!({"eos_token_id": 2})).is_empty());
    }

    #[test]
    fn nonsense_values_are_dropped() {
        let g = serde_json::json!({"temperature": -1.0, "top_p": 1.5, "min_p": -0.1, "repetition_penalty": 0.0});
        assert!(SamplingDefaults::from_hf(&g).is_empty());
    }
}
