//! expRNN in f64 against central finite differences: the matrix exponential's gradient and the
//! whole backpropagation through time (dA through expm, dU, db), for modrelu and tanh; W stays
//! orthogonal through optimizer steps.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recur::models::exprnn::{expm, expm_grad, Activation, ExpInit, ExpRnn};
use recur::nn::{Adam, AdamConfig};

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn uniform(n: usize, r: f64, g: &mut ChaCha8Rng) -> Vec<f64> {
    (0..n).map(|_| g.gen_range(-r..r)).collect()
}

/// max |a − b| / max(1, max |b|)
fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
        / scale
}

/// ‖WᵀW − I‖_max
fn orthogonality_defect(w: &[f64], n: usize) -> f64 {
    let mut worst = 0.0f64;
    for i in 0..n {
        for j in 0..n {
            let d: f64 = (0..n).map(|k| w[k * n + i] * w[k * n + j]).sum();
            worst = worst.max((d - if i == j { 1.0 } else { 0.0 }).abs());
        }
    }
    worst
}

#[test]
fn expm_grad_matches_finite_differences_of_a_general_matrix() {
    let n = 5;
    let mut g = rng(1);
    let a = uniform(n * n, 1.5, &mut g);
    let c = uniform(n * n, 1.0, &mut g);
    // L(A) = <C, expm(A)>, so dL/dA = expm_grad(A, C).
    let got = expm_grad(&a, &c, n);
    let loss = |a: &[f64]| -> f64 { expm(a, n).iter().zip(&c).map(|(e, c)| e * c).sum() };
    let eps = 1e-6;
    let fd: Vec<f64> = (0..n * n)
        .map(|k| {
            let mut p = a.clone();
            p[k] += eps;
            let up = loss(&p);
            p[k] -= 2.0 * eps;
            (up - loss(&p)) / (2.0 * eps)
        })
        .collect();
    let e = rel_err(&got, &fd);
    assert!(e < 1e-8, "relative error {e}: {got:?} vs {fd:?}");
}

#[test]
fn expm_of_a_large_skew_matrix_is_orthogonal_and_inverts() {
    let n = 16;
    let layer = ExpRnn::new(3, n, Activation::ModRelu, ExpInit::Uniform(2.0), 3).unwrap();
    let w = layer.recurrent_matrix();
    assert!(orthogonality_defect(&w, n) < 1e-12);
    // expm(−A) = expm(A)⁻¹ = Wᵀ
    let neg: Vec<f64> = layer.skew().iter().map(|v| -v).collect();
    let inv = expm(&neg, n);
    let wt: Vec<f64> = (0..n * n).map(|k| w[(k % n) * n + k / n]).collect();
    assert!(rel_err(&inv, &wt) < 1e-12);
}

/// L = Σ_t Σ c_t · h_t + Σ d · h_{T−1}: the gradient of every parameter from `backward_f64`
/// against central differences of `forward_f64`.
fn bptt_matches_finite_differences(act: Activation, seed: u64) {
    let (i, h, t, b) = (3, 5, 7, 2);
    let mut layer = ExpRnn::new(i, h, act, ExpInit::Uniform(0.9), seed).unwrap();
    let mut g = rng(seed + 100);
    // Biases away from zero so that modrelu is not at a kink.
    let n = layer.params().len();
    let nb = n - h;
    for v in &mut layer.params_mut()[nb..] {
        *v = g.gen_range(-0.3..0.3);
    }
    let x = uniform(t * b * i, 1.0, &mut g);
    let c = uniform(t * b * h, 1.0, &mut g);
    let d = uniform(b * h, 1.0, &mut g);
    let loss = |l: &ExpRnn| -> f64 {
        let tape = l.forward_f64(&x, t, b).unwrap();
        let a: f64 = tape.output().iter().zip(&c).map(|(p, q)| p * q).sum();
        a + tape.h_n().iter().zip(&d).map(|(p, q)| p * q).sum::<f64>()
    };
    let tape = layer.forward_f64(&x, t, b).unwrap();
    let mut grads = layer.zeros_like_params();
    let mut rec = Vec::new();
    layer
        .backward_f64(&tape, Some(&c), Some(&d), &mut grads, Some(&mut rec))
        .unwrap();
    let eps = 1e-6;
    let fd: Vec<f64> = (0..n)
        .map(|k| {
            let mut p = layer.clone();
            p.params_mut()[k] += eps;
            let up = loss(&p);
            p.params_mut()[k] -= 2.0 * eps;
            (up - loss(&p)) / (2.0 * eps)
        })
        .collect();
    let na = layer.num_a();
    for (what, r) in [("a", 0..na), ("U", na..nb), ("b", nb..n)] {
        let e = rel_err(&grads[r.clone()], &fd[r.clone()]);
        assert!(
            e < 1e-7,
            "{act:?} d{what}: relative error {e}\n{:?}\n{:?}",
            &grads[r.clone()],
            &fd[r]
        );
    }
    // The record: the total dL/dh_t; at the last step it is c_{T−1} + d.
    assert_eq!(rec.len(), t);
    let last: Vec<f64> = c[(t - 1) * b * h..]
        .iter()
        .zip(&d)
        .map(|(p, q)| p + q)
        .collect();
    assert!(rel_err(&rec[t - 1], &last) < 1e-15);
}

#[test]
fn bptt_of_a_modrelu_exprnn_matches_finite_differences() {
    bptt_matches_finite_differences(Activation::ModRelu, 5);
}

#[test]
fn bptt_of_a_tanh_exprnn_matches_finite_differences() {
    bptt_matches_finite_differences(Activation::Tanh, 6);
}

#[test]
fn w_stays_orthogonal_through_adam_steps() {
    let (i, h, t, b) = (4, 12, 9, 3);
    let mut layer = ExpRnn::new(i, h, Activation::ModRelu, ExpInit::Henaff, 9).unwrap();
    assert!(orthogonality_defect(&layer.recurrent_matrix(), h) < 1e-13);
    let mut g = rng(10);
    let x = uniform(t * b * i, 1.0, &mut g);
    let c = uniform(t * b * h, 1.0, &mut g);
    let mut opt = Adam::new(layer.params().len(), AdamConfig::default().lr(0.05));
    let w0 = layer.recurrent_matrix();
    for _ in 0..50 {
        let tape = layer.forward_f64(&x, t, b).unwrap();
        let mut grads = layer.zeros_like_params();
        layer
            .backward_f64(&tape, Some(&c), None, &mut grads, None)
            .unwrap();
        opt.step_parts(&mut [(layer.params_mut(), &grads[..])]);
    }
    let w = layer.recurrent_matrix();
    assert!(rel_err(&w, &w0) > 0.1, "training moved W");
    let e = orthogonality_defect(&w, h);
    assert!(e < 1e-12, "‖WᵀW − I‖ = {e}");
}

#[test]
fn bad_input_is_an_error() {
    let layer = ExpRnn::new(2, 3, Activation::Tanh, ExpInit::Identity, 0).unwrap();
    assert!(layer.forward_f64(&[0.0; 5], 2, 2).is_err());
    assert!(ExpRnn::new(0, 3, Activation::Tanh, ExpInit::Identity, 0).is_err());
    let tape = layer.forward_f64(&[0.0; 8], 2, 2).unwrap();
    let mut g = vec![0.0; 2];
    assert!(layer.backward_f64(&tape, None, None, &mut g, None).is_err());
}
