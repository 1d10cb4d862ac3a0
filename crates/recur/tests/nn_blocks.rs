//! Tests of the building blocks in `recur::nn`: gradients against central finite differences
//! (f64), optimizers against values derived by hand from PyTorch's formulas (and checked
//! against torch 2.x in float64), gradient clipping on known cases, the parsers of optimizer
//! and schedule specifications, and the errors on bad input. (The comparisons with PyTorch
//! fixtures are in `optim_parity.rs`.)

use rand::{Rng, SeedableRng};
use recur::nn::{
    clip_grad_norm, clip_grad_norm_checked, clip_grad_norm_flat, clip_grad_value, l1_loss,
    mse_loss, softmax, softmax_cross_entropy, Adagrad, AdagradConfig, Adam, AdamConfig, AdamW,
    AdamWConfig, Linear, LrScheduler, Optimizer, OptimizerArgs, OptimizerConfig, OptimizerState,
    Reduction, RmsProp, RmsPropConfig, Schedule, Sgd, SgdConfig, DEFAULT_IGNORE_INDEX,
};
use recur::{Dropout, Rnn, RnnConfig, Tensor};

fn randn(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

fn assert_all_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(close(g, w, tol), "{what}[{k}]: got {g}, want {w}");
    }
}

/// Central difference of `f` with respect to `x[k]`, for every k.
fn fd_grad(x: &[f64], mut f: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let h = 1e-6;
    let mut x = x.to_vec();
    (0..x.len())
        .map(|k| {
            let x0 = x[k];
            x[k] = x0 + h;
            let fp = f(&x);
            x[k] = x0 - h;
            let fm = f(&x);
            x[k] = x0;
            (fp - fm) / (2.0 * h)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Linear

#[test]
fn linear_forward_is_x_wt_plus_b() {
    let (n, i, o) = (3, 4, 2);
    let fc = Linear::<f64>::from_params(i, o, true, randn(o * i + o, 1)).unwrap();
    let x = randn(n * i, 2);
    let mut y = vec![f64::NAN; n * o];
    fc.forward(&x, n, &mut y);
    let (w, b) = (fc.weight(), fc.bias().unwrap());
    for r in 0..n {
        for j in 0..o {
            let want: f64 = b[j] + (0..i).map(|p| x[r * i + p] * w[j * i + p]).sum::<f64>();
            assert!(close(y[r * o + j], want, 1e-14), "y[{r},{j}]");
        }
    }
}

#[test]
fn linear_init_is_pytorch_default_and_seeded() {
    // kaiming_uniform_(a=√5) on (out, in) = U(-1/√in, 1/√in); bias U(-1/√in, 1/√in).
    let fc = Linear::<f32>::new(16, 8, true, 7);
    assert_eq!(fc.num_params(), 16 * 8 + 8);
    let bound = 1.0 / 4.0;
    assert!(fc.params().iter().all(|&v| v.abs() <= bound));
    // Spread over the interval, not collapsed.
    let max = fc.weight().iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(max > 0.8 * bound, "max |w| = {max}");
    assert_eq!(fc.params(), Linear::<f32>::new(16, 8, true, 7).params());
    assert_ne!(fc.params(), Linear::<f32>::new(16, 8, true, 8).params());
    let nb = Linear::<f32>::new(16, 8, false, 7);
    assert_eq!(nb.num_params(), 128);
    assert!(nb.bias().is_none());
    assert!(Linear::<f32>::from_params(16, 8, true, vec![0.0; 128]).is_err());
}

#[test]
fn linear_gradients_match_finite_differences() {
    for bias in [true, false] {
        let (n, i, o) = (4, 5, 3);
        let np = o * i + if bias { o } else { 0 };
        let params = randn(np, 10);
        let x = randn(n * i, 11);
        // loss = Σ y ⊙ r, so dy = r.
        let r = randn(n * o, 12);
        let loss = |p: &[f64], x: &[f64]| {
            let fc = Linear::from_params(i, o, bias, p.to_vec()).unwrap();
            let mut y = vec![0.0; n * o];
            fc.forward(x, n, &mut y);
            y.iter().zip(&r).map(|(a, b)| a * b).sum::<f64>()
        };
        let fc = Linear::from_params(i, o, bias, params.clone()).unwrap();
        // Gradients accumulate: start from a non-zero buffer.
        let start = randn(np, 13);
        let mut grads = start.clone();
        let mut dx = vec![f64::NAN; n * i];
        fc.backward(&x, &r, n, &mut grads, Some(&mut dx));
        let added: Vec<f64> = grads.iter().zip(&start).map(|(g, s)| g - s).collect();
        let want_dp = fd_grad(&params, |p| loss(p, &x));
        let want_dx = fd_grad(&x, |xx| loss(&params, xx));
        assert_all_close(&added, &want_dp, 1e-8, "dparams");
        assert_all_close(&dx, &want_dx, 1e-8, "dx");
    }
}

// ---------------------------------------------------------------------------------------------
// Cross-entropy

#[test]
fn cross_entropy_known_values() {
    // Two equal logits: -log(1/2) = ln 2; gradient (softmax - onehot) = (-1/2, 1/2).
    let (l, d) = softmax_cross_entropy(&[0.0f64, 0.0], 2, &[0], DEFAULT_IGNORE_INDEX).unwrap();
    assert!(close(l, std::f64::consts::LN_2, 1e-15));
    assert_all_close(&d, &[-0.5, 0.5], 1e-15, "d");
    // Large logits do not overflow: -log softmax([1000, 0])[1] = 1000 + log(1 + e^-1000).
    let (l, d) = softmax_cross_entropy(&[1000.0f32, 0.0], 2, &[1], DEFAULT_IGNORE_INDEX).unwrap();
    assert_eq!(l, 1000.0);
    assert_eq!(d, vec![1.0, -1.0]);
    let p = softmax(&[1000.0f32, 0.0, -5.0, -5.0], 2);
    assert_eq!(p, vec![1.0, 0.0, 0.5, 0.5]);
}

#[test]
fn cross_entropy_gradient_matches_finite_differences_with_ignore_index() {
    let (n, c) = (6, 4);
    let logits: Vec<f64> = randn(n * c, 20).iter().map(|v| 3.0 * v).collect();
    let ignore = -1;
    let targets = [2, -1, 0, 3, -1, 1];
    let (loss, d) = softmax_cross_entropy(&logits, c, &targets, ignore).unwrap();
    // The mean over the 4 counted rows, by the definition.
    let mut want = 0.0;
    for (r, &t) in targets.iter().enumerate() {
        if t == ignore {
            continue;
        }
        let row = &logits[r * c..(r + 1) * c];
        let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
        want += lse - row[t as usize];
    }
    assert!(close(loss, want / 4.0, 1e-14), "{loss} vs {}", want / 4.0);
    let fd = fd_grad(&logits, |z| {
        softmax_cross_entropy(z, c, &targets, ignore).unwrap().0
    });
    assert_all_close(&d, &fd, 1e-8, "dlogits");
    // Ignored rows get exactly zero gradient.
    assert!(d[c..2 * c]
        .iter()
        .chain(&d[4 * c..5 * c])
        .all(|&v| v == 0.0));
}

#[test]
fn cross_entropy_edge_cases() {
    // Every row ignored: loss NaN (0/0) and zero gradient, as PyTorch.
    let (l, d) = softmax_cross_entropy(&[1.0f64, 2.0], 2, &[-100], -100).unwrap();
    assert!(l.is_nan());
    assert_eq!(d, vec![0.0, 0.0]);
    assert!(softmax_cross_entropy(&[1.0f64, 2.0], 2, &[2], -100).is_err());
    assert!(softmax_cross_entropy(&[1.0f64, 2.0], 2, &[-3], -100).is_err());
    assert!(softmax_cross_entropy(&[1.0f64, 2.0, 3.0], 2, &[0], -100).is_err());
}

// ---------------------------------------------------------------------------------------------
// clip_grad_norm

#[test]
fn clip_grad_norm_known_case() {
    // grads [3, 4]: norm 5; max_norm 1 → coef = 1 / (5 + 1e-6), applied to every grad.
    let mut g = vec![3.0f64, 4.0];
    let norm = clip_grad_norm_flat(&mut g, 1.0);
    assert_eq!(norm, 5.0);
    let coef = 1.0 / (5.0 + 1e-6);
    assert_all_close(&g, &[3.0 * coef, 4.0 * coef], 1e-15, "clipped");
    // The same split over two buffers (two modules): the norm is global.
    let (mut a, mut b) = (vec![3.0f64], vec![4.0f64]);
    let norm = clip_grad_norm(&mut [&mut a[..], &mut b[..]], 1.0);
    assert_eq!(norm, 5.0);
    assert_all_close(&[a[0], b[0]], &[3.0 * coef, 4.0 * coef], 1e-15, "parts");
    // Under the threshold: coef = min(1, 1 / (0.5 + 1e-6)) = 1, grads unchanged.
    let mut g = vec![0.3f32, 0.4];
    let norm = clip_grad_norm_flat(&mut g, 1.0);
    assert!((norm - 0.5).abs() < 1e-7);
    assert_eq!(g, vec![0.3, 0.4]);
}

// ---------------------------------------------------------------------------------------------
// Optimizers. The problem: two parameters p0 = [1.0, -0.5], loss = ½ Σ (p - 0.5)², so the
// gradient is g = p - 0.5 (plus weight_decay · p when set). lr = 0.1 throughout. Three steps.

/// Three steps from p0 = [1.0, -0.5] with the loss gradient g = p - 0.5 (the optimizers add
/// weight_decay · p themselves).
fn run3<O>(mut opt: O, mut step: impl FnMut(&mut O, &mut [f64], &[f64])) -> Vec<f64> {
    let mut p = vec![1.0f64, -0.5];
    for _ in 0..3 {
        let g: Vec<f64> = p.iter().map(|v| v - 0.5).collect();
        step(&mut opt, &mut p, &g);
    }
    p
}

#[test]
fn adam_three_steps_by_hand() {
    // Adam(lr=0.1, betas=(0.9, 0.999), eps=1e-8). Per step t:
    //   bc1 = 1 - 0.9^t, bc2 = 1 - 0.999^t, step_size = lr / bc1
    //   m = m + 0.1 (g - m), v = 0.999 v + 0.001 g², denom = √v / √bc2 + 1e-8
    //   p = p - step_size · m / denom
    // t=1: bc1 = 0.1, bc2 = 0.001, step_size = 1.0, √bc2 = 0.0316227766016838
    //   p[0]: g = 0.5,  m = 0.05, v = 0.00025, denom = 0.5 + 1e-8, p = 1 - 0.05/0.50000001
    //         = 0.900000002
    //   p[1]: g = -1.0, m = -0.1, v = 0.001,   denom = 1 + 1e-8,   p = -0.5 + 0.1/1.00000001
    //         = -0.400000001
    // t=2: bc1 = 0.19, bc2 = 0.001999, step_size = 0.526315789473684, √bc2 = 0.0447101778122160
    //   p[0]: g = 0.400000002, m = 0.0850000002, v = 0.0004097500016,
    //         denom = 0.452744407585188, p = 0.900000002 - 0.5263157894·0.0850000002/0.4527444075
    //         = 0.801187423730640
    //   p[1]: g = -0.900000001, m = -0.1800000001, v = 0.0018090000018,
    //         denom = 0.951289911732685, p = -0.300412229712338
    // t=3: bc1 = 0.271, bc2 = 0.002997001, step_size = 0.369003690036900,
    //      √bc2 = 0.0547448719059603
    //   p[0]: g = 0.301187423730640, m = 0.106618742553064, v = 0.000500054115811900,
    //         denom = 0.408474612826933, p = 0.704871255739451
    //   p[1]: g = -0.800412229712338, m = -0.242041223061234, v = 0.00244785073927128,
    //         denom = 0.903751491829539, p = -0.201586274504415
    // (torch.optim.Adam in float64 gives [0.7048712557394511, -0.20158627450441494].)
    let cfg = AdamConfig::default().lr(0.1);
    let p = run3(Adam::<f64>::new(2, cfg), |o, p, g| o.step(p, g));
    assert_all_close(&p, &[0.704871255739451, -0.201586274504415], 1e-13, "adam");

    // With weight_decay = 0.1 the gradient becomes g = (p - 0.5) + 0.1 p:
    // t=1: g = [0.6, -1.05], m = [0.06, -0.105], v = [0.00036, 0.0011025],
    //      denom = [0.60000001, 1.05000001], p = [0.900000001666667, -0.400000000952381]
    // t=2: g = [0.490000001833333, -0.940000001047619], m = [0.103000000183333,
    //      -0.188500000104762], v = [0.000599740001796667, 0.00198499750196952],
    //      denom = [0.547740834572890, 0.996491479411093],
    //      p = [0.801028877020551, -0.300440166853690]
    // t=3: g = [0.381131764722606, -0.830484183539059], m = [0.130813176637261,
    //      -0.252698418448192], v = [0.000744401683875438, 0.00267271648357609],
    //      denom = [0.498379578225972, 0.944350047991186],
    //      p = [0.704173895409103, -0.201698551843213]
    // (torch: [0.7041738954091029, -0.2016985518432129].)
    let cfg = AdamConfig::default().lr(0.1).weight_decay(0.1);
    let p = run3(Adam::<f64>::new(2, cfg), |o, p, g| o.step(p, g));
    assert_all_close(
        &p,
        &[0.704173895409103, -0.201698551843213],
        1e-13,
        "adam wd",
    );
}

#[test]
fn adam_f32_and_parts_agree_with_f64_flat() {
    let cfg = AdamConfig::default().lr(0.1);
    let mut opt = Adam::<f32>::new(2, cfg.clone());
    let (mut a, mut b) = (vec![1.0f32], vec![-0.5f32]);
    for _ in 0..3 {
        let (ga, gb) = ([a[0] - 0.5], [b[0] - 0.5]);
        opt.step_parts(&mut [(&mut a[..], &ga[..]), (&mut b[..], &gb[..])]);
    }
    assert_eq!(opt.steps(), 3);
    assert!((a[0] as f64 - 0.704871255739451).abs() < 1e-6, "{}", a[0]);
    assert!((b[0] as f64 + 0.201586274504415).abs() < 1e-6, "{}", b[0]);
}

#[test]
fn sgd_three_steps_by_hand() {
    // SGD(lr=0.1, momentum=0.9): buf = g on the first step, then buf = 0.9 buf + g; p -= 0.1 buf.
    // t=1: g = [0.5, -1.0],   buf = [0.5, -1.0],   p = [0.95, -0.4]
    // t=2: g = [0.45, -0.9],  buf = [0.9, -1.8],   p = [0.86, -0.22]
    // t=3: g = [0.36, -0.72], buf = [1.17, -2.34], p = [0.743, 0.014]
    let cfg = SgdConfig::default().lr(0.1).momentum(0.9);
    let p = run3(Sgd::<f64>::new(2, cfg), |o, p, g| o.step(p, g));
    assert_all_close(&p, &[0.743, 0.014], 1e-14, "sgd momentum");

    // SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1): g = (p - 0.5) + 0.1 p,
    // buf as above, update u = g + 0.9 buf, p -= 0.1 u.
    // t=1: g = [0.6, -1.05], buf = [0.6, -1.05], u = [1.14, -1.995], p = [0.886, -0.3005]
    // t=2: g = [0.4746, -0.83055], buf = [1.0146, -1.77555], u = [1.38774, -2.428545],
    //      p = [0.747226, -0.0576455]
    // t=3: g = [0.3219486, -0.56341005], buf = [1.2350886, -2.16140505],
    //      u = [1.43352834, -2.508674595], p = [0.603873166, 0.1932219595]
    let cfg = SgdConfig::default()
        .lr(0.1)
        .momentum(0.9)
        .nesterov(true)
        .weight_decay(0.1);
    let p = run3(Sgd::<f64>::new(2, cfg), |o, p, g| o.step(p, g));
    assert_all_close(&p, &[0.603873166, 0.1932219595], 1e-14, "sgd nesterov wd");

    // Plain SGD: p -= 0.1 (p - 0.5) three times: p - 0.5 shrinks by 0.9 each step:
    // [0.5 + 0.5·0.729, 0.5 - 1.0·0.729] = [0.8645, -0.229].
    let cfg = SgdConfig::default().lr(0.1);
    let p = run3(Sgd::<f64>::new(2, cfg), |o, p, g| o.step(p, g));
    assert_all_close(&p, &[0.8645, -0.229], 1e-14, "sgd");
}

// ---------------------------------------------------------------------------------------------
// The blocks together with a recurrent layer: LSTM → h_n → Linear → cross-entropy, the model of
// `recur demo`. The gradient of every parameter against finite differences.

#[test]
fn lstm_linear_cross_entropy_end_to_end_gradients() {
    let (b, t, i, h, c) = (3, 5, 3, 4, 2);
    let cfg = RnnConfig::lstm(i, h).batch_first(true);
    let rnn0: Rnn<f64> = Rnn::new(cfg.clone(), 3).unwrap();
    let fc0 = Linear::<f64>::new(h, c, true, 4);
    let x = Tensor::new(&[b, t, i], randn(b * t * i, 5)).unwrap();
    let lengths = [5, 2, 4];
    let targets = [1i64, 0, 1];
    let nr = rnn0.params().len();
    let loss = |all: &[f64]| {
        let rnn = Rnn::from_params(cfg.clone(), all[..nr].to_vec()).unwrap();
        let fc = Linear::from_params(h, c, true, all[nr..].to_vec()).unwrap();
        let out = rnn.forward(&x, None, Some(&lengths)).unwrap();
        let mut logits = vec![0.0; b * c];
        fc.forward(out.h_n.data(), b, &mut logits);
        softmax_cross_entropy(&logits, c, &targets, -100).unwrap().0
    };
    let all: Vec<f64> = rnn0.params().iter().chain(fc0.params()).copied().collect();

    let (out, tape) = rnn0
        .forward_train(&x, None, Some(&lengths), Dropout::Off)
        .unwrap();
    let hn = out.h_n.data(); // (1, B, H) = (B, H)
    let mut logits = vec![0.0; b * c];
    fc0.forward(hn, b, &mut logits);
    let (l, dlogits) = softmax_cross_entropy(&logits, c, &targets, -100).unwrap();
    assert!(close(l, loss(&all), 1e-14));
    let mut g_fc = fc0.zeros_like_params();
    let mut dhn = vec![0.0; b * h];
    fc0.backward(hn, &dlogits, b, &mut g_fc, Some(&mut dhn));
    let dhn = Tensor::new(&[1, b, h], dhn).unwrap();
    let mut g_rnn = rnn0.zeros_like_params();
    rnn0.backward(&tape, None, Some(&dhn), None, &mut g_rnn)
        .unwrap();
    let got: Vec<f64> = g_rnn.iter().chain(&g_fc).copied().collect();
    let want = fd_grad(&all, loss);
    assert_all_close(&got, &want, 1e-7, "end-to-end grads");
}

// ---------------------------------------------------------------------------------------------
// Regression losses

#[test]
fn mse_and_l1_known_values() {
    // diffs [1, -2, 0, 3]: squares [1, 4, 0, 9], absolute values [1, 2, 0, 3].
    let x = [1.0f64, 0.0, 5.0, 4.0];
    let y = [0.0f64, 2.0, 5.0, 1.0];
    let (l, d) = mse_loss(&x, &y, None, Reduction::Mean).unwrap();
    assert_eq!(l, 14.0 / 4.0);
    assert_eq!(d, vec![0.5, -1.0, 0.0, 1.5]); // 2·diff/4
    let (l, d) = mse_loss(&x, &y, None, Reduction::Sum).unwrap();
    assert_eq!(l, 14.0);
    assert_eq!(d, vec![2.0, -4.0, 0.0, 6.0]);
    let (l, d) = l1_loss(&x, &y, None, Reduction::Mean).unwrap();
    assert_eq!(l, 6.0 / 4.0);
    assert_eq!(d, vec![0.25, -0.25, 0.0, 0.25]); // sign(0) = 0
                                                 // Mask of 2 entries over 4 values: each covers 2 consecutive values; only the second
                                                 // half counts: mean of [0, 9] and of [0, 3].
    let mask = [false, true];
    let (l, d) = mse_loss(&x, &y, Some(&mask), Reduction::Mean).unwrap();
    assert_eq!(l, 4.5);
    assert_eq!(d, vec![0.0, 0.0, 0.0, 3.0]);
    let (l, d) = l1_loss(&x, &y, Some(&mask), Reduction::Sum).unwrap();
    assert_eq!(l, 3.0);
    assert_eq!(d, vec![0.0, 0.0, 0.0, 1.0]);
    // Nothing counts: mean NaN (0/0) with zero gradient, sum 0.
    let none = [false, false];
    let (l, d) = mse_loss(&x, &y, Some(&none), Reduction::Mean).unwrap();
    assert!(l.is_nan());
    assert_eq!(d, vec![0.0; 4]);
    let (l, _) = l1_loss(&x, &y, Some(&none), Reduction::Sum).unwrap();
    assert_eq!(l, 0.0);
}

#[test]
fn masked_loss_gradients_match_finite_differences() {
    let (t, b, f) = (4, 3, 2);
    let x = randn(t * b * f, 30);
    let y = randn(t * b * f, 31);
    // (T, B) mask of sequences of lengths 4, 1, 3 (time-major).
    let lengths = [4, 1, 3];
    let mask: Vec<bool> = (0..t * b).map(|i| i / b < lengths[i % b]).collect();
    for red in [Reduction::Mean, Reduction::Sum] {
        let (_, d) = mse_loss(&x, &y, Some(&mask), red).unwrap();
        let fd = fd_grad(&x, |x| mse_loss(x, &y, Some(&mask), red).unwrap().0);
        assert_all_close(&d, &fd, 1e-8, "mse dx");
        // |x - y| is smooth away from 0, and no difference is that close to 0 here.
        let (_, d) = l1_loss(&x, &y, Some(&mask), red).unwrap();
        let fd = fd_grad(&x, |x| l1_loss(x, &y, Some(&mask), red).unwrap().0);
        assert_all_close(&d, &fd, 1e-8, "l1 dx");
    }
}

#[test]
fn loss_size_errors_name_the_sizes() {
    let e = mse_loss(&[1.0f64, 2.0], &[1.0], None, Reduction::Mean).unwrap_err();
    assert!(
        e.to_string()
            .contains("input has 2 values but target has 1"),
        "{e}"
    );
    let e = l1_loss(&[1.0f64; 6], &[1.0; 6], Some(&[true; 4]), Reduction::Mean).unwrap_err();
    assert!(e.to_string().contains("mask has 4 entries"), "{e}");
    assert!(l1_loss(&[1.0f64; 6], &[1.0; 6], Some(&[]), Reduction::Sum).is_err());
    assert!(mse_loss::<f64>(&[], &[], Some(&[]), Reduction::Sum).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Clipping

#[test]
fn clip_grad_norm_checked_refuses_non_finite_norms() {
    // Finite: the same as clip_grad_norm.
    let (mut a, mut b) = (vec![3.0f64], vec![4.0f64]);
    let n = clip_grad_norm_checked(&mut [&mut a[..], &mut b[..]], 1.0).unwrap();
    assert_eq!(n, 5.0);
    assert_eq!((a[0], b[0]), (3.0 / (5.0 + 1e-6), 4.0 / (5.0 + 1e-6)));
    // NaN or infinity: an error naming buffer and index; the gradients are left as they were.
    for bad in [f64::NAN, f64::INFINITY] {
        let (mut a, mut b) = (vec![3.0f64, 1.0], vec![4.0f64, bad, 2.0]);
        let e = clip_grad_norm_checked(&mut [&mut a[..], &mut b[..]], 1.0).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("buffer 1") && msg.contains("index 1"), "{msg}");
        assert_eq!(a, vec![3.0, 1.0]);
        assert_eq!(b[0], 4.0);
        // The unchecked version scales by the non-finite norm, as PyTorch does.
        let n = clip_grad_norm(&mut [&mut a[..], &mut b[..]], 1.0);
        assert!(!n.is_finite());
    }
    // Every value finite, but the sum of squares overflows.
    let mut big = [1e200f64, 1e200];
    let e = clip_grad_norm_checked(&mut [&mut big[..]], 1.0).unwrap_err();
    assert!(e.to_string().contains("overflows"), "{e}");
}

#[test]
fn clip_grad_value_clamps_in_place() {
    let mut a = [-2.0f32, -0.5, 0.0, 0.25, 1.5, f32::NAN];
    let mut b = vec![0.7f32];
    clip_grad_value(&mut [&mut a[..], &mut b[..]], 0.5).unwrap();
    assert_eq!(&a[..5], &[-0.5, -0.5, 0.0, 0.25, 0.5]);
    assert!(a[5].is_nan());
    assert_eq!(b, vec![0.5]);
    assert!(clip_grad_value(&mut [&mut b[..]], -1.0).is_err());
    assert!(clip_grad_value(&mut [&mut b[..]], f64::NAN).is_err());
}

// ---------------------------------------------------------------------------------------------
// Optimizers: first steps in closed form

#[test]
fn first_steps_in_closed_form() {
    // At step 1 Adam's moments are m = (1-β1) g, v = (1-β2) g², and the bias corrections make
    // the update lr · g / (|g| + eps) (up to rounding). AdamW first multiplies p by 1 - lr·wd.
    let (lr, wd, eps) = (0.1, 0.2, 1e-8);
    let p0 = [1.0f64, -2.0, 0.5];
    let g = [0.3f64, -4.0, 1e-3];
    let mut p = p0.to_vec();
    AdamW::<f64>::new(3, AdamWConfig::default().lr(lr).weight_decay(wd).eps(eps)).step(&mut p, &g);
    for k in 0..3 {
        let want = p0[k] * (1.0 - lr * wd) - lr * g[k] / (g[k].abs() + eps);
        assert!(close(p[k], want, 1e-14), "adamw[{k}]: {} vs {want}", p[k]);
    }
    // Adagrad, from sum s0: p - lr · g / (√(s0 + g²) + eps); second step with lr_decay d uses
    // lr / (1 + d).
    let (s0, d) = (0.1, 0.5);
    let cfg = AdagradConfig::default()
        .lr(lr)
        .initial_accumulator_value(s0)
        .lr_decay(d);
    let mut opt = Adagrad::<f64>::new(3, cfg);
    let mut p = p0.to_vec();
    opt.step(&mut p, &g);
    opt.step(&mut p, &g);
    for k in 0..3 {
        let p1 = p0[k] - lr * g[k] / ((s0 + g[k] * g[k]).sqrt() + 1e-10);
        let p2 = p1 - lr / (1.0 + d) * g[k] / ((s0 + 2.0 * g[k] * g[k]).sqrt() + 1e-10);
        assert!(close(p[k], p2, 1e-14), "adagrad[{k}]: {} vs {p2}", p[k]);
    }
    // RMSprop (α = 0.9): s = 0.1 g², p - lr · g / (√s + eps); centered: ḡ = 0.1 g,
    // avg = √(0.1 g² - 0.01 g²) = 0.3 |g|.
    let mut p = p0.to_vec();
    RmsProp::<f64>::new(3, RmsPropConfig::default().lr(lr).alpha(0.9)).step(&mut p, &g);
    for k in 0..3 {
        let want = p0[k] - lr * g[k] / ((0.1 * g[k] * g[k]).sqrt() + 1e-8);
        assert!(close(p[k], want, 1e-14), "rmsprop[{k}]");
    }
    let mut p = p0.to_vec();
    RmsProp::<f64>::new(3, RmsPropConfig::default().lr(lr).alpha(0.9).centered(true))
        .step(&mut p, &g);
    for k in 0..3 {
        let want = p0[k] - lr * g[k] / (0.3 * g[k].abs() + 1e-8);
        assert!(close(p[k], want, 1e-13), "rmsprop centered[{k}]");
    }
    // AMSGrad keeps the largest v: a large gradient followed by small ones leaves max_exp_avg_sq
    // at its first value times β2^0.
    let mut opt =
        Optimizer::<f64>::new(1, OptimizerConfig::parse("adam:amsgrad=true").unwrap()).unwrap();
    let mut p = vec![0.0];
    opt.step(&mut p, &[10.0]);
    opt.step(&mut p, &[0.0]);
    let st = opt.state();
    let vmax = st.buffer("max_exp_avg_sq").unwrap()[0];
    let v = st.buffer("exp_avg_sq").unwrap()[0];
    assert!(close(vmax, 0.001 * 100.0, 1e-15), "{vmax}");
    assert!(v < vmax);
}

// ---------------------------------------------------------------------------------------------
// Optimizer configurations from text

#[test]
fn optimizer_specs_parse_with_pytorch_defaults() {
    let c = OptimizerConfig::parse("adamw").unwrap();
    assert_eq!(c, OptimizerConfig::AdamW(AdamWConfig::default()));
    assert_eq!(
        c.to_string(),
        "AdamW(lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, amsgrad=False)"
    );
    let c = OptimizerConfig::parse("SGD:lr=0.1, momentum=0.9,nesterov=true").unwrap();
    assert_eq!(
        c,
        OptimizerConfig::Sgd(SgdConfig::default().lr(0.1).momentum(0.9).nesterov(true))
    );
    let c = OptimizerConfig::parse("rmsprop:centered=1,alpha=0.95").unwrap();
    assert_eq!(
        c,
        OptimizerConfig::RmsProp(RmsPropConfig::default().centered(true).alpha(0.95))
    );
    let c = OptimizerConfig::parse("adam:beta2=0.98").unwrap();
    assert_eq!(
        c,
        OptimizerConfig::Adam(AdamConfig::default().betas(0.9, 0.98))
    );
    // from_args, as a command line would fill it.
    let args = OptimizerArgs {
        lr: Some(1e-3),
        weight_decay: Some(0.01),
        ..Default::default()
    };
    let c = OptimizerConfig::from_args("adagrad", &args).unwrap();
    assert_eq!(
        c,
        OptimizerConfig::Adagrad(AdagradConfig::default().lr(1e-3).weight_decay(0.01))
    );
    // spec() gives back what parse reads, for every kind.
    for s in [
        "sgd:lr=0.05,momentum=0.9,dampening=0.1,weight_decay=0.01",
        "adam:lr=0.02,beta1=0.8,beta2=0.99,eps=1e-6,amsgrad=true",
        "adamw:weight_decay=0.1",
        "rmsprop:lr=0.01,alpha=0.9,momentum=0.9,centered=true,weight_decay=0.01",
        "adagrad:lr=0.1,lr_decay=0.05,weight_decay=0.01,initial_accumulator_value=0.1,eps=1e-8",
    ] {
        let c = OptimizerConfig::parse(s).unwrap();
        assert_eq!(
            OptimizerConfig::parse(&c.spec()).unwrap(),
            c,
            "{s} -> {}",
            c.spec()
        );
    }
}

#[test]
fn optimizer_spec_errors_say_what_is_wrong() {
    let err = |s: &str| OptimizerConfig::parse(s).unwrap_err().to_string();
    assert!(
        err("lion").contains("unknown optimizer 'lion'"),
        "{}",
        err("lion")
    );
    let e = err("adam:momentum=0.9");
    assert!(
        e.contains("adam has no option 'momentum'") && e.contains("amsgrad"),
        "{e}"
    );
    assert!(err("sgd:lr=-1").contains("lr = -1"), "{}", err("sgd:lr=-1"));
    assert!(
        err("adam:beta1=1").contains("betas[0] = 1"),
        "{}",
        err("adam:beta1=1")
    );
    assert!(
        err("sgd:nesterov=true").contains("Nesterov"),
        "{}",
        err("sgd:nesterov=true")
    );
    assert!(err("sgd:lr=fast").contains("lr=fast is not a finite number"));
    assert!(err("sgd:lr=0.1,lr=0.2").contains("given twice"));
    assert!(err("sgd:lr").contains("key=value"));
    assert!(err("adam:speed=2").contains("unknown option 'speed'"));
    assert!(err("rmsprop:centered=maybe").contains("true or false"));
    let args = OptimizerArgs {
        momentum: Some(0.9),
        ..Default::default()
    };
    assert!(OptimizerConfig::from_args("adagrad", &args).is_err());
    assert!(
        Optimizer::<f32>::new(3, OptimizerConfig::Adam(AdamConfig::default().eps(-1.0))).is_err()
    );
}

#[test]
fn load_state_checks_names_and_lengths() {
    let cfg = OptimizerConfig::parse("adam:amsgrad=true").unwrap();
    let mut opt = Optimizer::<f32>::new(3, cfg.clone()).unwrap();
    let mut p = vec![0.5f32; 3];
    opt.step(&mut p, &[0.1, -0.2, 0.3]);
    let good = opt.state();
    let names: Vec<&str> = good.buffers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]);
    let mut fresh = Optimizer::<f32>::new(3, cfg.clone()).unwrap();
    let err = |fresh: &mut Optimizer<f32>, s: &OptimizerState<f32>| {
        fresh.load_state(s).unwrap_err().to_string()
    };
    let mut s = good.clone();
    s.buffers.remove(2);
    assert!(err(&mut fresh, &s).contains("missing buffer 'max_exp_avg_sq'"));
    let mut s = good.clone();
    s.buffers[0].1.pop();
    let e = err(&mut fresh, &s);
    assert!(e.contains("'exp_avg' has 2 values, expected 3"), "{e}");
    let mut s = good.clone();
    s.buffers.push(("momentum_buffer".into(), vec![0.0; 3]));
    assert!(err(&mut fresh, &s).contains("unexpected buffer 'momentum_buffer'"));
    let mut s = good.clone();
    s.optimizer = "AdamW".into();
    assert!(err(&mut fresh, &s).contains("saved by AdamW, loading into Adam"));
    // A failed load leaves the optimizer untouched; a good one takes everything.
    assert_eq!(fresh.steps(), 0);
    fresh.load_state(&good).unwrap();
    assert_eq!(fresh.state(), good);
    // SGD with momentum has its buffer only after the first step.
    let mut sgd =
        Optimizer::<f64>::new(2, OptimizerConfig::parse("sgd:momentum=0.9").unwrap()).unwrap();
    assert!(sgd.state().buffers.is_empty());
    let mut p = vec![1.0, 2.0];
    sgd.step(&mut p, &[0.5, 0.5]);
    let st = sgd.state();
    assert_eq!(st.buffer("momentum_buffer"), Some(&[0.5, 0.5][..]));
    let mut other =
        Optimizer::<f64>::new(2, OptimizerConfig::parse("sgd:momentum=0.9").unwrap()).unwrap();
    let mut no_buf = st.clone();
    no_buf.buffers.clear();
    assert!(other.load_state(&no_buf).is_err());
    other.load_state(&st).unwrap();
    assert_eq!(other.steps(), 1);
}

// ---------------------------------------------------------------------------------------------
// Schedules from text

#[test]
fn schedule_specs_parse_and_known_values() {
    // Warm-up: base · (t + 1) / (W + 1) for t < W, then the main schedule from its step 0.
    let s = Schedule::parse("constant", 0.5, 100, 4).unwrap();
    for t in 0..4u64 {
        assert!(
            close(s.lr(t), 0.5 * (t + 1) as f64 / 5.0, 1e-15),
            "lr({t}) = {}",
            s.lr(t)
        );
    }
    assert!((4..100).all(|t| s.lr(t) == 0.5));
    // Cosine without options spans the steps after the warm-up and ends at eta_min exactly.
    let s = Schedule::parse("cosine:eta_min=0.01", 1.0, 110, 10).unwrap();
    assert_eq!(
        s.phases()[1],
        LrScheduler::CosineAnnealing {
            t_max: 100,
            eta_min: 0.01
        }
    );
    assert_eq!(s.milestones(), &[10]);
    assert_eq!(s.lr(110), 0.01);
    // Half-way the cosine is at the middle (closed form, to rounding).
    assert!(close(s.lr(60), 0.01 + 0.99 * 0.5, 1e-14), "{}", s.lr(60));
    // step / multistep / exponential: closed forms base · γ^k (to rounding of the products).
    let s = Schedule::parse("step:step_size=10", 1.0, 100, 0).unwrap();
    assert!(close(s.lr(35), 1e-3, 1e-14));
    let s = Schedule::parse("multistep:milestones=5/7", 2.0, 100, 0).unwrap();
    assert_eq!([s.lr(4), s.lr(5), s.lr(6)], [2.0, 2.0 * 0.1, 2.0 * 0.1]);
    assert!(close(s.lr(7), 0.02, 1e-15));
    let s = Schedule::parse("exp:gamma=0.5", 1.0, 100, 0).unwrap();
    assert_eq!(s.lr(10), 0.5f64.powi(10));
    // linear: a decay from the base rate to 0 over the run by default.
    let s = Schedule::parse("linear", 1.0, 8, 0).unwrap();
    assert!(close(s.lr(6), 0.25, 1e-15));
    assert_eq!(s.lr(8), 0.0);
    // The constructors agree with the parser.
    let built = Schedule::with_warmup(
        0.1,
        5,
        LrScheduler::CosineAnnealing {
            t_max: 25,
            eta_min: 0.0,
        },
    )
    .unwrap();
    assert_eq!(built, Schedule::parse("cosine", 0.1, 30, 5).unwrap());
}

#[test]
fn schedule_spec_errors_say_what_is_wrong() {
    let err = |s: &str, total: u64, warm: u64| {
        Schedule::parse(s, 0.1, total, warm)
            .unwrap_err()
            .to_string()
    };
    assert!(err("warmup", 10, 0).contains("unknown schedule 'warmup'"));
    assert!(err("step", 10, 0).contains("step needs step_size"));
    assert!(err("exp", 10, 0).contains("needs gamma"));
    assert!(err("multistep:gamma=0.5", 10, 0).contains("needs milestones"));
    assert!(err("multistep:milestones=3/x", 10, 0).contains("milestones=x"));
    assert!(err("cosine:t_max=0", 10, 0).contains("T_max must be >= 1"));
    assert!(err("cosine:gamma=0.5", 10, 0).contains("cosine has no option 'gamma'"));
    let e = err("cosine", 100, 100);
    assert!(e.contains("total steps 100, warm-up steps 100"), "{e}");
    assert!(err("linear:start_factor=0", 10, 0).contains("start_factor = 0"));
    assert!(err("step:step_size=0", 10, 0).contains("step_size must be >= 1"));
    // Mistakes that PyTorch's constructors let through, caught in the text syntax.
    assert!(err("exp:gamma=-1", 10, 0).contains("gamma must be a positive number, got -1"));
    assert!(err("step:step_size=2,gamma=0", 10, 0).contains("gamma must be a positive"));
    let e = err("multistep:milestones=6/3", 10, 0);
    assert!(e.contains("increasing order (3 comes after 6)"), "{e}");
    assert!(Schedule::parse("multistep:milestones=2/5/5/9", 0.1, 10, 0).is_ok());
    let e = err("constant", 10, 11);
    assert!(
        e.contains("warm-up (11 steps) is longer than the run (10 steps)"),
        "{e}"
    );
    assert!(Schedule::parse("constant", f64::NAN, 10, 0).is_err());
    let bad = Schedule::sequential(
        0.1,
        vec![LrScheduler::Constant, LrScheduler::Constant],
        vec![0],
    );
    assert!(bad.unwrap_err().to_string().contains("strictly increasing"));
}
