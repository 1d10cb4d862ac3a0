//! The rows of a batch's carried state that one rank computes (data parallelism).

use recur::core::rnn::State;
use recur::core::tensor::Tensor;
use recur::train::Communicator;
use std::ops::Range;

/// Rows `rows` of the batch dimension of a state tensor `(L·D, B, H)`.
fn rows_of(t: &Tensor<f32>, rows: &Range<usize>) -> recur::Result<Tensor<f32>> {
    let (ld, b, h) = dims(t)?;
    let mut out = Vec::with_capacity(ld * rows.len() * h);
    for k in 0..ld {
        out.extend_from_slice(&t.data()[(k * b + rows.start) * h..(k * b + rows.end) * h]);
    }
    Tensor::new(&[ld, rows.len(), h], out)
}

fn dims(t: &Tensor<f32>) -> recur::Result<(usize, usize, usize)> {
    match *t.shape() {
        [ld, b, h] => Ok((ld, b, h)),
        _ => Err(recur::Error::Input(format!(
            "a carried state of shape {:?}",
            t.shape()
        ))),
    }
}

/// `part` (L·D, rows, H) written into rows `rows` of `full` (L·D, B, H).
fn put_rows(full: &mut Tensor<f32>, part: &Tensor<f32>, rows: &Range<usize>) -> recur::Result<()> {
    let (ld, b, h) = dims(full)?;
    let n = rows.len() * h;
    let src = part.data().to_vec();
    let dst = full.data_mut();
    for k in 0..ld {
        dst[(k * b + rows.start) * h..][..n].copy_from_slice(&src[k * n..][..n]);
    }
    Ok(())
}

/// The state of rows `rows` of a carried state of the whole batch.
pub fn state_rows(s: &State<f32>, rows: &Range<usize>) -> recur::Result<State<f32>> {
    Ok(State {
        h: rows_of(&s.h, rows)?,
        c: s.c.as_ref().map(|c| rows_of(c, rows)).transpose()?,
    })
}

/// The carried state of the whole batch (`batch` rows) with rows `rows` replaced by
/// `part`; the other rows are those of `full`, or zeros without it.
pub fn with_rows(
    full: Option<State<f32>>,
    part: State<f32>,
    rows: &Range<usize>,
    batch: usize,
) -> recur::Result<State<f32>> {
    if *rows == (0..batch) {
        return Ok(part);
    }
    let widen = |t: &Tensor<f32>| -> recur::Result<Tensor<f32>> {
        let (ld, _, h) = dims(t)?;
        Tensor::new(&[ld, batch, h], vec![0.0; ld * batch * h])
    };
    let mut out = match full {
        Some(s) => s,
        None => State {
            h: widen(&part.h)?,
            c: part.c.as_ref().map(widen).transpose()?,
        },
    };
    put_rows(&mut out.h, &part.h, rows)?;
    if let (Some(c), Some(pc)) = (out.c.as_mut(), part.c.as_ref()) {
        put_rows(c, pc, rows)?;
    }
    Ok(out)
}

/// Every rank's rows of the carried state, gathered on every rank: each rank contributes its
/// own rows (zeros elsewhere) to a sum, which is exact.
pub fn gather_rows(
    s: &mut State<f32>,
    rows: &Range<usize>,
    comm: &dyn Communicator,
) -> recur::Result<()> {
    for t in std::iter::once(&mut s.h).chain(s.c.as_mut()) {
        let (ld, b, h) = dims(t)?;
        let data = t.data_mut();
        for k in 0..ld {
            for r in (0..b).filter(|r| !rows.contains(r)) {
                data[(k * b + r) * h..][..h].fill(0.0);
            }
        }
        comm.all_reduce_sum_f32(data)?;
    }
    Ok(())
}
