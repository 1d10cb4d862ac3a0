//! The gradients of a model made of an embedding, a recurrent stack and a linear head (the
//! language model and the sequence models): one flat buffer per module, each in its module's
//! own layout, with the operations a training step needs (zero, clip, scale, named parts).

use crate::nn::clip_grad_norm;
use recur_kernels::Real;

/// The gradients of an embed → RNN → head model, one flat buffer per module.
#[derive(Clone, Debug, PartialEq)]
pub struct EmbedRnnHeadGrads<T> {
    /// `embed.weight`, (vocab, embed); empty for a model fed numeric features.
    pub embed: Vec<T>,
    /// The recurrent stack, in its [`ParamLayout`](crate::ParamLayout) order.
    pub rnn: Vec<T>,
    /// `head.weight` (out, features), then `head.bias` (out).
    pub head: Vec<T>,
}

impl<T: Real> EmbedRnnHeadGrads<T> {
    /// The names of the three buffers, in order (the module names of the PyTorch model).
    pub const NAMES: [&'static str; 3] = ["embed", "rnn", "head"];

    /// Sets every gradient to zero (backward passes add into the buffers).
    pub fn zero(&mut self) {
        for b in self.buffers_mut() {
            b.fill(T::ZERO);
        }
    }

    /// `clip_grad_norm_(model.parameters(), max_norm)`: returns the norm before clipping.
    pub fn clip_norm(&mut self, max_norm: f64) -> f64 {
        clip_grad_norm(&mut self.buffers_mut(), max_norm).to_f64()
    }

    /// Scales every gradient by `s` (e.g. to average over accumulated batches).
    pub fn scale(&mut self, s: f64) {
        let s = T::from_f64(s);
        for b in self.buffers_mut() {
            b.iter_mut().for_each(|g| *g *= s);
        }
    }

    /// The three buffers with their names ([`Self::NAMES`]), in order.
    pub fn named(&self) -> [(&'static str, &[T]); 3] {
        [
            (Self::NAMES[0], &self.embed[..]),
            (Self::NAMES[1], &self.rnn[..]),
            (Self::NAMES[2], &self.head[..]),
        ]
    }

    /// The three buffers, mutable, in the order of [`Self::NAMES`].
    pub fn buffers_mut(&mut self) -> [&mut [T]; 3] {
        [&mut self.embed[..], &mut self.rnn[..], &mut self.head[..]]
    }

    /// The number of gradient values in all three buffers.
    pub fn len(&self) -> usize {
        self.embed.len() + self.rnn.len() + self.head.len()
    }

    /// Whether there are no gradient values at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_scale_clip_and_names() {
        let mut g = EmbedRnnHeadGrads::<f64> {
            embed: vec![3.0],
            rnn: vec![],
            head: vec![4.0, 0.0],
        };
        assert_eq!(g.len(), 3);
        g.scale(2.0);
        assert_eq!(g.head, vec![8.0, 0.0]);
        // ‖(6, 8)‖ = 10, clipped to 5.
        let norm = g.clip_norm(5.0);
        assert!((norm - 10.0).abs() < 1e-12);
        assert!((g.embed[0] - 3.0).abs() < 1e-5 && (g.head[0] - 4.0).abs() < 1e-5);
        assert_eq!(
            g.named().map(|(n, b)| (n, b.len())),
            [("embed", 1), ("rnn", 0), ("head", 2)]
        );
        g.zero();
        assert!(g.named().iter().all(|(_, b)| b.iter().all(|&x| x == 0.0)));
    }
}
