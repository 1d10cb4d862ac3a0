//! The forward pass packs each layer's weights once and keeps them until the parameters are
//! changed: results after a change equal a fresh model's with the same parameters.

use recur::{Mode, Rnn, RnnConfig, Tensor};

fn input(t: usize, b: usize, i: usize) -> Tensor<f32> {
    Tensor::new(
        &[t, b, i],
        (0..t * b * i).map(|k| (k as f32 * 0.37).sin()).collect(),
    )
    .unwrap()
}

#[test]
fn packed_weights_follow_every_parameter_change() {
    for cfg in [
        RnnConfig::lstm(5, 9).num_layers(2).bidirectional(true),
        RnnConfig::lstm(5, 9).proj_size(4),
        RnnConfig::gru(5, 9).num_layers(2),
        RnnConfig::new(Mode::RnnRelu, 5, 9).bidirectional(true),
    ] {
        let mut m: Rnn<f32> = Rnn::new(cfg.clone(), 1).unwrap();
        let x = input(6, 3, 5);
        let a = m.forward(&x, None, Some(&[6, 2, 4])).unwrap();
        // Same weights, second call (packed weights reused): the same numbers.
        assert_eq!(m.forward(&x, None, Some(&[6, 2, 4])).unwrap(), a);
        // Change every parameter (as an optimizer step does) and compare with a fresh model.
        for (k, p) in m.params_mut().iter_mut().enumerate() {
            *p = *p * 0.5 + (k as f32 * 0.01).cos() * 0.1;
        }
        let fresh = Rnn::from_params(cfg.clone(), m.params().to_vec()).unwrap();
        let b = m.forward(&x, None, Some(&[6, 2, 4])).unwrap();
        assert_eq!(b, fresh.forward(&x, None, Some(&[6, 2, 4])).unwrap());
        assert_ne!(a, b);
        // Training passes use the same packed weights.
        let (c, _) = m
            .forward_train(&x, None, Some(&[6, 2, 4]), recur::Dropout::Off)
            .unwrap();
        assert_eq!(c, b);
        // A clone keeps its own copy.
        let mut twin = m.clone();
        twin.params_mut()[0] += 1.0;
        assert_eq!(m.forward(&x, None, Some(&[6, 2, 4])).unwrap(), b);
        assert_ne!(twin.forward(&x, None, Some(&[6, 2, 4])).unwrap(), b);
    }
}
