//! `Op::GetRows` on the CPU: `out[i, :] = table[ids[i], :]`, dequantizing each row.
//!
//! table: [R, C] in its stored format; ids: [T]; out: [T, C] f32.

use crate::dtype::DType;
use crate::error::{ForgeError, Result};
use crate::quant;

pub fn get_rows(dtype: DType, table: &[u8], n_rows: usize, cols: usize, ids: &[u32], out: &mut [f32]) -> Result<()> {
    let rb = dtype.row_bytes(cols)?;
    for (&id, dst) in ids.iter().zip(out.chunks_mut(cols)) {
        let r = id as usize;
        if r >= n_rows {
            return Err(ForgeError::InvalidArgument { what: format!("get_rows: id {id} is outside a table of {n_rows} rows") });
        }
        quant::dequantize_row(dtype, &table[r * rb..(r + 1) * rb], dst);
    }
    Ok(())
}
