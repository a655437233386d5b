//! What `forge.forcedLogits` hands back from one prefill: per read-out row, the argmax, the best
//! logit and the logits of a few requested ids, so JavaScript can apply the teacher-forced rule
//! of `tests/src/reference.rs` (`check_teacher_forced`) without receiving whole vocabularies.
//! Plain Rust, tested natively.

use serde::Serialize;

/// Rows of logits reduced to what the reference rule needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForcedRows {
    /// Each row's argmax (the first of equal maxima, as `reference.rs` takes it).
    pub argmax: Vec<u32>,
    /// Each row's largest logit.
    pub best: Vec<f32>,
    /// `probe[r][k]`: row `r`'s logit of the `k`-th requested id.
    pub probe: Vec<Vec<f32>>,
}

impl ForcedRows {
    /// Reduces `logits` (`rows × n_vocab`, row-major) from row `first` on. Every id of `probe`
    /// must lie below `n_vocab`.
    pub fn of(
        logits: &[f32],
        n_vocab: usize,
        first: usize,
        probe: &[u32],
    ) -> Result<ForcedRows, String> {
        if n_vocab == 0 || !logits.len().is_multiple_of(n_vocab) || first >= logits.len() / n_vocab {
            return Err(format!(
                "row {first} is outside {} logits of {n_vocab} per row",
                logits.len()
            ));
        }
        if let Some(&id) = probe.iter().find(|&&id| id as usize >= n_vocab) {
            return Err(format!(
                "token id {id} is outside the vocabulary of {n_vocab}"
            ));
        }
        let mut out = ForcedRows {
            argmax: Vec::new(),
            best: Vec::new(),
            probe: Vec::new(),
        };
        for row in logits.chunks_exact(n_vocab).skip(first) {
            let mut arg = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[arg] {
                    arg = i;
                }
            }
            out.argmax.push(arg as u32);
            out.best.push(row[arg]);
            out.probe
                .push(probe.iter().map(|&id| row[id as usize]).collect());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduces_rows_from_first_on() {
        let logits = [
            0.0, 1.0, 2.0, /* row 1 */ 5.0, 5.0, -1.0, /* row 2 */ 0.5, 3.0, 2.5,
        ];
        let r = ForcedRows::of(&logits, 3, 1, &[2, 0]).unwrap();
        assert_eq!(r.argmax, vec![0, 1], "the first of equal maxima");
        assert_eq!(r.best, vec![5.0, 3.0]);
        assert_eq!(r.probe, vec![vec![-1.0, 5.0], vec![2.5, 0.5]]);
    }

    #[test]
    fn rejects_rows_and_ids_out_of_range() {
        assert!(ForcedRows::of(&[0.0; 6], 3, 2, &[]).is_err());
        assert!(ForcedRows::of(&[0.0; 6], 3, 0, &[3]).is_err());
        assert!(ForcedRows::of(&[0.0; 5], 3, 0, &[]).is_err());
    }
}
