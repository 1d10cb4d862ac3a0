//! Tests of the building blocks in `recur::nn`: gradients against central finite differences
//! (f64), optimizers against values derived by hand from PyTorch's formulas (and checked
//! against torch 2.x in float64), gradient clipping on a known case.

use rand::{Rng, SeedableRng};
use recur::nn::{
    clip_grad_norm, clip_grad_norm_flat, softmax, softmax_cross_entropy, Adam, AdamConfig, Linear,
    Sgd, SgdConfig, DEFAULT_IGNORE_INDEX,
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
