//! From the ranked candidates and the user's settings to the order in which backends are tried:
//! the chosen candidate first, then every other usable candidate in rank order (the fallbacks).

use super::config::{BackendChoice, DeviceChoice, Settings};
use super::rank::{BackendKind, Candidate};
use crate::error::{ForgeError, Result};

fn kind_of(choice: BackendChoice) -> Option<BackendKind> {
    match choice {
        BackendChoice::Auto => None,
        BackendChoice::Cpu => Some(BackendKind::Cpu),
        BackendChoice::Wgpu => Some(BackendKind::Wgpu),
        BackendChoice::Cuda => Some(BackendKind::Cuda),
    }
}

fn listing(candidates: &[Candidate]) -> String {
    candidates.iter().map(|c| format!("{}: {} {}", c.index, c.backend.name(), c.label)).collect::<Vec<_>>().join("; ")
}

/// The candidates to try, in order. The first is what the settings ask for (possibly unusable:
/// opening then reports why and falls back); the rest are the usable others by rank.
pub fn plan(candidates: &[Candidate], settings: &Settings) -> Result<Vec<Candidate>> {
    let want = kind_of(settings.backend.value);
    let of_kind = |c: &&Candidate| want.is_none_or(|k| c.backend == k);
    let first: Option<&Candidate> = match &settings.device {
        Some(dev) => {
            let found = match &dev.value {
                DeviceChoice::Index(i) => candidates.get(*i).ok_or_else(|| {
                    ForgeError::InvalidArgument { what: format!("{}={i}: no such device; `forge devices` lists {}", dev.origin, listing(candidates)) }
                })?,
                DeviceChoice::Name(s) => {
                    let s_lower = s.to_ascii_lowercase();
                    let matches = |c: &&Candidate| c.label.to_ascii_lowercase().contains(&s_lower) || c.id == *s;
                    let mut it = candidates.iter().filter(matches).filter(of_kind);
                    let all: Vec<&Candidate> = it.by_ref().collect();
                    *all.iter().find(|c| c.usable).or(all.first()).ok_or_else(|| ForgeError::InvalidArgument {
                        what: format!("{}={s}: no {}device matches; `forge devices` lists {}", dev.origin, want.map(|k| format!("{} ", k.name())).unwrap_or_default(), listing(candidates)),
                    })?
                }
            };
            if let Some(k) = want
                && found.backend != k
            {
                return Err(ForgeError::InvalidArgument {
                    what: format!("{}: device {} is {} ({}) but {} asks for {}", dev.origin, found.index, found.label, found.backend.name(), settings.backend.origin, k.name()),
                });
            }
            Some(found)
        }
        None => candidates.iter().filter(of_kind).find(|c| c.usable).or_else(|| candidates.iter().find(of_kind)),
    };
    let mut order: Vec<Candidate> = first.into_iter().cloned().collect();
    order.extend(candidates.iter().filter(|c| c.usable && Some(c.index) != first.map(|f| f.index)).cloned());
    if order.is_empty() {
        return Err(ForgeError::Backend { backend: "any".into(), what: format!("no usable device; `forge devices` lists {}", listing(candidates)) });
    }
    Ok(order)
}
