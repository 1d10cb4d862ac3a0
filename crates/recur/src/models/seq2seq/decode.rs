//! Decoding: greedy and beam search, one step at a time through a [`Stream`] over the
//! decoder, batched over sentences (and over the hypotheses of a beam).

use super::{attention, log_softmax, pad_time_major, source_lengths, Seq2Seq};
use crate::core::rnn::State;
use crate::core::stream::Stream;
use crate::core::tensor::Tensor;
use crate::error::{Error, Result};
use recur_kernels::Real;

/// How [`Seq2Seq::beam_search`] searches.
#[derive(Clone, Debug, PartialEq)]
pub struct BeamOptions {
    /// Hypotheses kept per sentence, k (default 5; 1 is greedy decoding).
    pub beam_size: usize,
    /// Output ids at most, `<eos>` included (default 100).
    pub max_len: usize,
    /// α of the length normalization: hypotheses are ranked by `log p / len^α`, where `len`
    /// counts the ids and the `<eos>` (default 0: by log-probability alone).
    pub length_penalty: f64,
}

impl Default for BeamOptions {
    fn default() -> Self {
        BeamOptions {
            beam_size: 5,
            max_len: 100,
            length_penalty: 0.0,
        }
    }
}

/// A decoded output.
#[derive(Clone, Debug, PartialEq)]
pub struct Hypothesis {
    /// The output ids, without `<bos>` and `<eos>`.
    pub tokens: Vec<usize>,
    /// Its log-probability under the model, `<eos>` included when `finished`, in nats.
    pub log_prob: f64,
    /// The score it was ranked by: `log_prob / len^α`.
    pub score: f64,
    /// Whether it ended with `<eos>` (false: cut at `max_len`).
    pub finished: bool,
}

impl Hypothesis {
    fn new(tokens: Vec<usize>, log_prob: f64, finished: bool, alpha: f64) -> Hypothesis {
        let len = tokens.len() + usize::from(finished);
        let score = if alpha == 0.0 {
            log_prob
        } else {
            log_prob / (len.max(1) as f64).powf(alpha)
        };
        Hypothesis {
            tokens,
            log_prob,
            score,
            finished,
        }
    }
}

/// The encoder's work for a batch of sources.
struct Encoded<T> {
    s: usize,
    b: usize,
    /// (B)
    src_len: Vec<usize>,
    /// (S, B, H)
    enc: Vec<T>,
    /// (S, B, H): `attn(enc)`, general attention only.
    keys: Option<Vec<T>>,
    /// The encoder's final state, (L, B, ·).
    state: State<T>,
}

/// Buffers of one decoding step over `R` rows.
struct StepBufs<T> {
    /// (R, E)
    x: Vec<T>,
    /// (R, 2H)
    cat: Vec<T>,
    /// (R, H)
    out: Vec<T>,
    /// (R, Vt)
    logits: Vec<T>,
}

/// The state rows `rows` of `s` (each (L, B, ·)), as a state of `rows.len()` sequences.
fn gather_rows<T: Real>(s: &State<T>, rows: &[usize]) -> Result<State<T>> {
    let pick = |t: &Tensor<T>| -> Result<Tensor<T>> {
        let (l, b, n) = (t.shape()[0], t.shape()[1], t.shape()[2]);
        let mut out = Vec::with_capacity(l * rows.len() * n);
        for li in 0..l {
            for &r in rows {
                debug_assert!(r < b);
                out.extend_from_slice(&t.data()[(li * b + r) * n..(li * b + r + 1) * n]);
            }
        }
        Tensor::new(&[l, rows.len(), n], out)
    };
    Ok(State {
        h: pick(&s.h)?,
        c: s.c.as_ref().map(pick).transpose()?,
    })
}

impl<T: Real> Seq2Seq<T> {
    fn encode<A: AsRef<[usize]>>(&self, sources: &[A]) -> Result<Encoded<T>> {
        if sources.is_empty() {
            return Err(Error::Input("decoding: no sources".into()));
        }
        let src_len = source_lengths(sources)?;
        let (b, s) = (sources.len(), *src_len.iter().max().expect("b > 0"));
        let ids = pad_time_major(sources, s);
        self.check_src_ids("source", &ids)?;
        let (e, h) = (self.config.embed_size, self.config.hidden_size);
        let x = Self::embed(&self.src_embed, &ids, s, b, e)?;
        let out = self.encoder.forward(&x, None, Some(&src_len))?;
        let state = super::bridge(out.state(), self.config.bidirectional);
        let enc = out.output.into_data();
        let keys = self.attn.as_ref().map(|attn| {
            let mut k = vec![T::ZERO; s * b * h];
            attn.forward(&enc, s * b, &mut k);
            k
        });
        Ok(Encoded {
            s,
            b,
            src_len,
            enc,
            keys,
            state,
        })
    }

    fn step_bufs(&self, rows: usize) -> StepBufs<T> {
        let c = &self.config;
        StepBufs {
            x: vec![T::ZERO; rows * c.embed_size],
            cat: vec![T::ZERO; rows * 2 * c.hidden_size],
            out: vec![T::ZERO; rows * c.hidden_size],
            logits: vec![T::ZERO; rows * c.tgt_vocab_size],
        }
    }

    /// One decoder step for every row: feeds `prev` (R), and leaves the logits of the next id
    /// in `bufs.logits` (R, Vt). Row `r` attends to source `src_of[r]`.
    fn step(
        &self,
        stream: &mut Stream<'_, T>,
        enc: &Encoded<T>,
        src_of: &[usize],
        prev: &[usize],
        bufs: &mut StepBufs<T>,
    ) -> Result<()> {
        let r = prev.len();
        self.tgt_embed.forward(prev, &mut bufs.x)?;
        let hs = stream.step(&bufs.x)?;
        match &self.attn_combine {
            None => self.head.forward(hs, r, &mut bufs.logits),
            Some(combine) => {
                attention::step(
                    enc.s,
                    enc.b,
                    self.config.hidden_size,
                    hs,
                    src_of,
                    &enc.enc,
                    enc.keys.as_deref().unwrap_or(&enc.enc),
                    &enc.src_len,
                    &mut bufs.cat,
                );
                combine.forward(&bufs.cat, r, &mut bufs.out);
                for v in bufs.out.iter_mut() {
                    *v = v.tanh();
                }
                self.head.forward(&bufs.out, r, &mut bufs.logits);
            }
        }
        Ok(())
    }

    /// Greedy decoding of every source: at each step the most likely id (the smallest id on
    /// ties), until `<eos>` or `max_len` ids. Returns the ids without `<eos>`.
    pub fn greedy<A: AsRef<[usize]>>(
        &self,
        sources: &[A],
        max_len: usize,
    ) -> Result<Vec<Vec<usize>>> {
        let enc = self.encode(sources)?;
        let b = enc.b;
        let (bos, eos, v) = (
            self.config.bos_id,
            self.config.eos_id,
            self.config.tgt_vocab_size,
        );
        let mut stream = Stream::new(&self.decoder, b)?;
        stream.set_state(&enc.state)?;
        let src_of: Vec<usize> = (0..b).collect();
        let mut bufs = self.step_bufs(b);
        let mut prev = vec![bos; b];
        let mut out = vec![Vec::new(); b];
        let mut done = vec![false; b];
        for _ in 0..max_len {
            self.step(&mut stream, &enc, &src_of, &prev, &mut bufs)?;
            for (r, row) in bufs.logits.chunks_exact(v).enumerate() {
                if done[r] {
                    continue;
                }
                let id = argmax(row);
                if id == eos {
                    done[r] = true;
                } else {
                    out[r].push(id);
                    prev[r] = id;
                }
            }
            if done.iter().all(|&d| d) {
                break;
            }
        }
        Ok(out)
    }

    /// Beam search for every source: `beam_size` hypotheses per sentence advance together,
    /// each step keeping the best `beam_size` extensions by log-probability. An extension by
    /// `<eos>` among the best `beam_size` candidates ends a hypothesis. A sentence is done when
    /// no live hypothesis can beat the best ended one any more (log-probabilities only fall, so
    /// a live hypothesis scores at most `log p / max_len^α`), or after `max_len` steps; its
    /// result is the ended hypothesis with the best score (`log p / len^α`), or the best live
    /// one if none ended.
    ///
    /// With `beam_size` 1 this is [`Seq2Seq::greedy`].
    pub fn beam_search<A: AsRef<[usize]>>(
        &self,
        sources: &[A],
        opts: &BeamOptions,
    ) -> Result<Vec<Hypothesis>> {
        let k = opts.beam_size;
        if k == 0 {
            return Err(Error::Input("beam_size must be at least 1".into()));
        }
        if !(opts.length_penalty.is_finite() && opts.length_penalty >= 0.0) {
            return Err(Error::Input(format!(
                "length_penalty must be a number >= 0, got {}",
                opts.length_penalty
            )));
        }
        let alpha = opts.length_penalty;
        let enc = self.encode(sources)?;
        let b = enc.b;
        let rows = b * k;
        let (bos, eos, v) = (
            self.config.bos_id,
            self.config.eos_id,
            self.config.tgt_vocab_size,
        );
        // Row i·k + j holds hypothesis j of sentence i.
        let src_of: Vec<usize> = (0..rows).map(|r| r / k).collect();
        let mut stream = Stream::new(&self.decoder, rows)?;
        stream.set_state(&gather_rows(&enc.state, &src_of)?)?;
        let mut bufs = self.step_bufs(rows);
        let mut prev = vec![bos; rows];
        // Per sentence: the live hypotheses (ids, log p), slot j on row i·k + j.
        let mut alive: Vec<Vec<(Vec<usize>, f64)>> = vec![vec![(Vec::new(), 0.0)]; b];
        let mut ended: Vec<Vec<Hypothesis>> = vec![Vec::new(); b];
        let mut done = vec![false; b];
        let mut lp = vec![0.0f64; v];
        // (log p, slot, id) candidates of one sentence
        let mut cand: Vec<(f64, usize, usize)> = Vec::with_capacity(k * v);
        let mut from_row: Vec<usize> = (0..rows).collect();
        for step in 0..opts.max_len {
            self.step(&mut stream, &enc, &src_of, &prev, &mut bufs)?;
            let last = step + 1 == opts.max_len;
            for i in 0..b {
                if done[i] {
                    continue;
                }
                cand.clear();
                for (j, (_, score)) in alive[i].iter().enumerate() {
                    let row = i * k + j;
                    log_softmax(&bufs.logits[row * v..(row + 1) * v], &mut lp);
                    cand.extend(lp.iter().enumerate().map(|(id, &l)| (score + l, j, id)));
                }
                // The best 2k candidates, best first (ties: lower slot, then lower id).
                let order = |a: &(f64, usize, usize), b: &(f64, usize, usize)| {
                    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
                };
                let keep = (2 * k).min(cand.len());
                if keep < cand.len() {
                    cand.select_nth_unstable_by(keep - 1, order);
                    cand.truncate(keep);
                }
                cand.sort_by(order);
                let mut next = Vec::with_capacity(k);
                for (rank, &(score, j, id)) in cand.iter().enumerate() {
                    if id == eos {
                        if rank < k {
                            let tokens = alive[i][j].0.clone();
                            ended[i].push(Hypothesis::new(tokens, score, true, alpha));
                        }
                    } else {
                        let mut tokens = alive[i][j].0.clone();
                        tokens.push(id);
                        next.push((tokens, score, j));
                        if next.len() == k {
                            break;
                        }
                    }
                }
                // A live hypothesis's log p only falls; its score is at best log p / max_len^α.
                let best_ended = ended[i]
                    .iter()
                    .map(|h| h.score)
                    .fold(f64::NEG_INFINITY, f64::max);
                let best_alive = next.first().map_or(f64::NEG_INFINITY, |n| n.1);
                let bound = if alpha == 0.0 {
                    best_alive
                } else {
                    best_alive / (opts.max_len as f64).powf(alpha)
                };
                if best_ended >= bound || last || next.is_empty() {
                    done[i] = true;
                    if ended[i].is_empty() {
                        ended[i].extend(
                            next.iter()
                                .map(|(t, s, _)| Hypothesis::new(t.clone(), *s, false, alpha)),
                        );
                    }
                    continue;
                }
                for (slot, (tokens, _, j)) in next.iter().enumerate() {
                    from_row[i * k + slot] = i * k + j;
                    prev[i * k + slot] = *tokens.last().expect("extended by one id");
                }
                alive[i] = next.into_iter().map(|(t, s, _)| (t, s)).collect();
            }
            if done.iter().all(|&d| d) {
                break;
            }
            // Every row continues from the state of the hypothesis it extends.
            stream.set_state(&gather_rows(&stream.state(), &from_row)?)?;
            for (r, f) in from_row.iter_mut().enumerate() {
                *f = r;
            }
        }
        Ok(ended
            .into_iter()
            .map(|hs| {
                // Empty only when max_len is 0.
                hs.into_iter()
                    .reduce(|best, h| if h.score > best.score { h } else { best })
                    .unwrap_or_else(|| Hypothesis::new(Vec::new(), 0.0, false, alpha))
            })
            .collect())
    }
}

/// The index of the largest value (the first on ties).
fn argmax<T: Real>(row: &[T]) -> usize {
    let mut best = 0;
    for (k, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = k;
        }
    }
    best
}
