//! `recur forward` end to end: the built binary runs parity fixtures (weights and inputs split
//! into the files a user would have) and its output file must hold PyTorch's numbers; bad
//! files and flags must give one `error:` line and exit status 2, never a panic.

use recur::core::tolerance::{Tol, F32_FORWARD, F32_GRAD, F64_VS_TORCH};
use recur::io::state_dict::{write_tensors, DType, OutTensor, TensorFile};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(case: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/parity"
    ))
    .join(format!("{case}.safetensors"))
}

#[path = "../../../tests/support/tmpdir.rs"]
mod tmpdir;
use tmpdir::TmpDir;

/// An owned tensor to write.
enum Vals {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
}

fn write(path: &Path, tensors: &[(String, Vec<usize>, Vals)]) {
    let list: Vec<(String, Vec<usize>, OutTensor<'_>)> = tensors
        .iter()
        .map(|(n, s, v)| {
            let d = match v {
                Vals::F32(v) => OutTensor::F32(v),
                Vals::F64(v) => OutTensor::F64(v),
                Vals::I64(v) => OutTensor::I64(v),
            };
            (n.clone(), s.clone(), d)
        })
        .collect();
    write_tensors(path, &list, &[]).unwrap();
}

/// A tensor of the fixture, as f32 (fixture tensors are f32 values) or lengths as i64.
fn copy(f: &TensorFile, name: &str, as_name: &str) -> (String, Vec<usize>, Vals) {
    let raw = f.raw(name).unwrap();
    let shape = raw.shape.clone();
    if let DType::Int(..) = raw.dtype {
        let l = f.lengths(name).unwrap();
        return (
            as_name.into(),
            shape,
            Vals::I64(l.iter().map(|&v| v as i64).collect()),
        );
    }
    let v = f.float::<f32>(name).unwrap();
    (as_name.into(), shape, Vals::F32(v.into_data()))
}

const INPUT_NAMES: [&str; 7] = [
    "input",
    "h0",
    "c0",
    "lengths",
    "grad_output",
    "grad_h_n",
    "grad_c_n",
];

/// Splits a fixture into a weights file (`params.` kept or stripped) and an inputs file.
fn split(f: &TensorFile, dir: &TmpDir, keep_prefix: bool, with_grads: bool) -> (PathBuf, PathBuf) {
    let mut w = Vec::new();
    let mut x = Vec::new();
    for name in f.names() {
        if let Some(rest) = name.strip_prefix("params.") {
            w.push(copy(f, name, if keep_prefix { name } else { rest }));
        } else if INPUT_NAMES.contains(&name) && (with_grads || !name.starts_with("grad_")) {
            x.push(copy(f, name, name));
        }
    }
    let (wp, xp) = (dir.path("W.safetensors"), dir.path("X.safetensors"));
    write(&wp, &w);
    write(&xp, &x);
    (wp, xp)
}

fn recur(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_recur"))
        .args(args)
        .output()
        .expect("run the recur binary")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn meta(f: &TensorFile, k: &str) -> String {
    f.metadata()
        .get(k)
        .unwrap_or_else(|| panic!("no metadata {k}"))
        .clone()
}

struct Run<'a> {
    case: &'a str,
    keep_prefix: bool,
    f64: bool,
    with_grads: bool,
}

impl Run<'_> {
    fn new(case: &str) -> Run<'_> {
        Run {
            case,
            keep_prefix: false,
            f64: false,
            with_grads: true,
        }
    }

    /// Runs the binary on the fixture and checks every tensor it wrote against PyTorch.
    fn check(&self) {
        let f = TensorFile::read(fixture(self.case)).unwrap();
        let case = self.case;
        let dir = TmpDir::new("ok");
        let (w, x) = split(&f, &dir, self.keep_prefix, self.with_grads);
        let y = dir.path("Y.safetensors");
        let mut args = vec![
            "forward",
            "--weights",
            s(&w),
            "--inputs",
            s(&x),
            "--out",
            s(&y),
        ];
        if self.keep_prefix {
            args.extend(["--prefix", "params"]);
        }
        let mode = meta(&f, "mode");
        if mode == "rnn_relu" {
            args.extend(["--nonlinearity", "relu"]);
        }
        if meta(&f, "batch_first") == "true" {
            args.push("--batch-first");
        }
        if self.f64 {
            args.extend(["--precision", "f64"]);
        }
        let out = recur(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{case}: {args:?} failed: {stderr}");
        assert!(stderr.is_empty(), "{case}: stderr: {stderr}");
        // One summary line naming the module, the input shape and the output file.
        assert_eq!(stdout.lines().count(), 1, "{case}: stdout: {stdout}");
        let cell = meta(&f, "module") == "cell";
        let module = match (mode.as_str(), cell) {
            ("lstm", false) => "nn.LSTM(",
            ("gru", false) => "nn.GRU(",
            (_, false) => "nn.RNN(",
            ("lstm", true) => "nn.LSTMCell(",
            ("gru", true) => "nn.GRUCell(",
            (_, true) => "nn.RNNCell(",
        };
        assert!(
            stdout.starts_with(module) && stdout.trim_end().ends_with(s(&y)),
            "{case}: summary: {stdout}"
        );
        assert!(stdout.contains("wrote output ("), "{case}: {stdout}");
        assert_eq!(
            stdout.contains(" gradients to "),
            self.with_grads,
            "{case}: {stdout}"
        );

        let got = TensorFile::read(&y).unwrap();
        // The expected names: every `expected.*` of the fixture (a cell's `output` is h').
        let mut want: BTreeSet<String> = f
            .names()
            .filter_map(|n| n.strip_prefix("expected."))
            .filter(|n| self.with_grads || !n.starts_with("grad."))
            .map(String::from)
            .collect();
        if cell {
            want.insert("output".into());
        }
        let have: BTreeSet<String> = got.names().map(String::from).collect();
        assert_eq!(have, want, "{case}: tensors written");
        let mut failures = Vec::new();
        for name in &have {
            let raw = got.raw(name).unwrap();
            let dtype = if self.f64 { DType::F64 } else { DType::F32 };
            assert_eq!(raw.dtype, dtype, "{case}: dtype of {name}");
            let reference = if cell && name == "output" {
                "expected.h_n".to_string()
            } else {
                format!("expected.{name}")
            };
            let r = f.float::<f64>(&reference).unwrap();
            let a = got.float::<f64>(name).unwrap();
            assert_eq!(a.shape(), r.shape(), "{case}: shape of {name}");
            let tol: Tol = match (self.f64, name.starts_with("grad.")) {
                (true, _) => F64_VS_TORCH,
                (false, false) => F32_FORWARD,
                (false, true) => F32_GRAD,
            };
            if let Some((i, (va, vr))) = a
                .data()
                .iter()
                .zip(r.data())
                .enumerate()
                .find(|(_, (va, vr))| !tol.ok(**va, **vr))
            {
                failures.push(format!("{name}[{i}]: got {va:e}, PyTorch {vr:e}"));
            }
        }
        assert!(failures.is_empty(), "{case}: {failures:?}");
        // Nothing but Y (no temporary file left behind by the atomic write).
        let files: Vec<_> = std::fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(files.len(), 3, "{case}: files left: {files:?}");
    }
}

#[test]
fn lstm_proj_bidirectional_ragged() {
    Run::new("lstm_l2_bi_bias_tm_ragged_p1_noh0_T5B3I4H3").check();
    Run::new("lstm_l2_bi_nobias_tm_ragged_p4_h0_T3B3I5H7").check();
    Run::new("lstm_l3_bi_bias_bf_ragged_p2_noh0_T6B2I1H4").check();
}

#[test]
fn gru_batch_first() {
    Run::new("gru_l2_bi_bias_bf_ragged_noh0_T7B4I3H5").check();
    Run::new("gru_l1_uni_bias_bf_dense_h0_T3B3I5H7").check();
}

#[test]
fn rnn_relu_and_tanh() {
    Run::new("rnn_relu_l2_bi_bias_tm_ragged_h0_T7B4I3H5").check();
    Run::new("rnn_relu_l2_bi_nobias_tm_dense_noh0_zerorows_T4B3I2H3").check();
    Run::new("rnn_tanh_l3_bi_bias_bf_ragged_h0_T4B5I7H2").check();
    Run::new("rnn_tanh_l1_uni_bias_tm_dense_noh0_T4B5I7H2").check();
}

#[test]
fn cells() {
    Run::new("cell_lstm_bias_h0_B3I4H5").check();
    Run::new("cell_lstm_nobias_noh0_B3I4H5").check();
    Run::new("cell_gru_bias_noh0_B3I4H5").check();
    Run::new("cell_rnn_relu_bias_h0_B2I7H3").check();
    Run::new("cell_rnn_tanh_nobias_h0_B1I1H1").check();
}

#[test]
fn weights_under_a_prefix() {
    let mut r = Run::new("lstm_l2_bi_bias_tm_ragged_p1_noh0_T5B3I4H3");
    r.keep_prefix = true;
    r.check();
    let mut r = Run::new("cell_gru_bias_h0_B2I7H3");
    r.keep_prefix = true;
    r.check();
}

#[test]
fn f64_precision_matches_pytorch_to_rounding() {
    for case in [
        "lstm_l2_bi_bias_tm_ragged_p1_noh0_T5B3I4H3",
        "gru_l2_bi_bias_bf_ragged_noh0_T7B4I3H5",
        "cell_lstm_bias_h0_B3I4H5",
    ] {
        let mut r = Run::new(case);
        r.f64 = true;
        r.check();
    }
}

#[test]
fn forward_only_writes_no_gradients() {
    for case in [
        "lstm_l2_bi_nobias_tm_ragged_p4_h0_T3B3I5H7",
        "rnn_tanh_l3_bi_bias_bf_ragged_h0_T4B5I7H2",
        "cell_lstm_bias_h0_B3I4H5",
    ] {
        let mut r = Run::new(case);
        r.with_grads = false;
        r.check();
    }
}

/// The summary line of the brief's example.
#[test]
fn summary_line() {
    let f = TensorFile::read(fixture("lstm_l2_uni_bias_tm_dense_p2_noh0_T5B3I4H3")).unwrap();
    let dir = TmpDir::new("summary");
    let (w, x) = split(&f, &dir, false, true);
    let y = dir.path("Y.safetensors");
    let out = recur(&[
        "forward",
        "--weights",
        s(&w),
        "--inputs",
        s(&x),
        "--out",
        s(&y),
    ]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        format!(
            "nn.LSTM(4, 3, num_layers=2, proj_size=2) on input (5, 3, 4): wrote output (5, 3, 2), \
             h_n (2, 3, 2), c_n (2, 3, 3), 13 gradients to {}",
            y.display()
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Runs the binary expecting a failure: exit status 2, one `error:` line on stderr that
/// contains every `needles` string, no panic, and no output file.
fn fails(args: &[&str], y: &Path, needles: &[&str]) -> String {
    let out = recur(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{args:?}: stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "{args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: stderr: {stderr}");
    assert!(lines[0].starts_with("error: "), "{args:?}: {stderr}");
    for n in needles {
        assert!(lines[0].contains(n), "{args:?}: {n:?} not in: {stderr}");
    }
    assert!(out.stdout.is_empty(), "{args:?}: stdout: {:?}", out.stdout);
    assert!(!y.exists(), "{args:?}: {} was written", y.display());
    stderr
}

/// A weights file and an inputs file from a fixture, in a fresh directory.
struct Setup {
    dir: TmpDir,
    w: PathBuf,
    x: PathBuf,
    y: PathBuf,
}

fn setup(case: &str) -> Setup {
    let f = TensorFile::read(fixture(case)).unwrap();
    let dir = TmpDir::new("err");
    let (w, x) = split(&f, &dir, false, true);
    let y = dir.path("Y.safetensors");
    Setup { dir, w, x, y }
}

impl Setup {
    fn args<'a>(&'a self, w: &'a Path, x: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec![
            "forward",
            "--weights",
            s(w),
            "--inputs",
            s(x),
            "--out",
            s(&self.y),
        ];
        v.extend_from_slice(extra);
        v
    }
    fn fails_with_inputs(&self, x: &[(String, Vec<usize>, Vals)], needles: &[&str]) -> String {
        let xp = self.dir.path("bad_inputs.safetensors");
        write(&xp, x);
        let mut n = vec![s(&xp)];
        n.extend_from_slice(needles);
        fails(&self.args(&self.w, &xp, &[]), &self.y, &n)
    }
}

const LSTM: &str = "lstm_l2_bi_bias_tm_ragged_p1_noh0_T5B3I4H3"; // T=5, B=3, I=4

fn f32s(name: &str, shape: &[usize]) -> (String, Vec<usize>, Vals) {
    let n = shape.iter().product::<usize>();
    let v = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
    (name.into(), shape.to_vec(), Vals::F32(v))
}

#[test]
fn missing_weights_file() {
    let st = setup(LSTM);
    let w = st.dir.path("nope.safetensors");
    fails(&st.args(&w, &st.x, &[]), &st.y, &[s(&w), "cannot read"]);
}

#[test]
fn missing_inputs_file() {
    let st = setup(LSTM);
    let x = st.dir.path("nope.safetensors");
    fails(&st.args(&st.w, &x, &[]), &st.y, &[s(&x), "cannot read"]);
}

#[test]
fn truncated_weights_file() {
    let st = setup(LSTM);
    let bytes = std::fs::read(&st.w).unwrap();
    let w = st.dir.path("half.safetensors");
    std::fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
    fails(&st.args(&w, &st.x, &[]), &st.y, &[s(&w), "truncated"]);
    // Cut inside the 8-byte length, and inside the header.
    for cut in [0, 5, 8, 40] {
        std::fs::write(&w, &bytes[..cut]).unwrap();
        fails(&st.args(&w, &st.x, &[]), &st.y, &[s(&w)]);
    }
}

#[test]
fn random_bytes_weights_file() {
    let st = setup(LSTM);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let w = st.dir.path("random.safetensors");
    std::fs::write(&w, &bytes).unwrap();
    fails(
        &st.args(&w, &st.x, &[]),
        &st.y,
        &[s(&w), "not a valid safetensors file"],
    );
    // A small length followed by bytes that are not JSON.
    let mut b = 64u64.to_le_bytes().to_vec();
    b.extend_from_slice(&bytes[..200]);
    std::fs::write(&w, &b).unwrap();
    fails(&st.args(&w, &st.x, &[]), &st.y, &[s(&w)]);
}

#[test]
fn inputs_without_input() {
    let st = setup(LSTM);
    st.fails_with_inputs(&[f32s("h0", &[4, 3, 1])], &["'input'", "h0"]);
    st.fails_with_inputs(&[], &["'input'", "no tensors"]);
}

#[test]
fn input_of_the_wrong_last_dimension() {
    let st = setup(LSTM);
    st.fails_with_inputs(
        &[f32s("input", &[5, 3, 6])],
        &["input", "input_size", "expected 4, got 6", "nn.LSTM(4, 3"],
    );
    st.fails_with_inputs(&[f32s("input", &[5])], &["input", "(5,)"]);
}

#[test]
fn state_of_the_wrong_shape() {
    let st = setup(LSTM);
    st.fails_with_inputs(
        &[f32s("input", &[5, 3, 4]), f32s("h0", &[4, 2, 1])],
        &["h0", "expected shape (4, 3, 1), got (4, 2, 1)"],
    );
    st.fails_with_inputs(
        &[f32s("input", &[5, 3, 4]), f32s("c0", &[4, 3, 1])],
        &["c0", "expected shape (4, 3, 3), got (4, 3, 1)"],
    );
    st.fails_with_inputs(
        &[f32s("input", &[5, 3, 4]), f32s("grad_output", &[5, 3, 3])],
        &["grad_output", "expected shape (5, 3, 2), got (5, 3, 3)"],
    );
}

#[test]
fn non_float_input() {
    let st = setup(LSTM);
    st.fails_with_inputs(
        &[("input".into(), vec![5, 3, 4], Vals::I64(vec![1; 60]))],
        &["'input'", "I64", "floating-point"],
    );
    // Lengths must be integers.
    st.fails_with_inputs(
        &[
            f32s("input", &[5, 3, 4]),
            ("lengths".into(), vec![3], Vals::F64(vec![5.0, 3.0, 2.0])),
        ],
        &["'lengths'", "F64", "integers"],
    );
}

#[test]
fn unknown_key_in_inputs() {
    let st = setup(LSTM);
    st.fails_with_inputs(
        &[f32s("input", &[5, 3, 4]), f32s("hidden", &[4, 3, 1])],
        &[
            "'hidden'",
            "input, h0, c0, lengths, grad_output, grad_h_n, grad_c_n",
        ],
    );
}

#[test]
fn bad_lengths() {
    let st = setup(LSTM);
    let x = |l: Vec<i64>| {
        vec![
            f32s("input", &[5, 3, 4]),
            ("lengths".into(), vec![l.len()], Vals::I64(l)),
        ]
    };
    st.fails_with_inputs(&x(vec![5, 0, 2]), &["lengths[1] is 0"]);
    st.fails_with_inputs(&x(vec![5, 6, 2]), &["lengths[1] is 6", "5 steps"]);
    st.fails_with_inputs(&x(vec![5, -1, 2]), &["'lengths'", "negative"]);
    st.fails_with_inputs(&x(vec![5, 3]), &["lengths", "(3)", "got 2"]);
}

#[test]
fn non_finite_values() {
    let st = setup(LSTM);
    let mut input = f32s("input", &[5, 3, 4]);
    if let Vals::F32(v) = &mut input.2 {
        v[(2 * 3 + 1) * 4 + 3] = f32::NAN;
    }
    st.fails_with_inputs(&[input], &["'input'", "NaN", "(2, 1, 3)", "finite"]);
    let mut h0 = f32s("h0", &[4, 3, 1]);
    if let Vals::F32(v) = &mut h0.2 {
        v[5] = f32::NEG_INFINITY;
    }
    st.fails_with_inputs(
        &[f32s("input", &[5, 3, 4]), h0],
        &["'h0'", "-inf", "(1, 2, 0)"],
    );
}

#[test]
fn nonlinearity_on_lstm_weights() {
    let st = setup(LSTM);
    fails(
        &st.args(&st.w, &st.x, &["--nonlinearity", "relu"]),
        &st.y,
        &[s(&st.w), "LSTM", "nonlinearity"],
    );
    fails(
        &st.args(&st.w, &st.x, &["--nonlinearity", "sigmoid"]),
        &st.y,
        &["--nonlinearity", "sigmoid"],
    );
}

#[test]
fn bad_precision() {
    let st = setup(LSTM);
    fails(
        &st.args(&st.w, &st.x, &["--precision", "f16"]),
        &st.y,
        &["--precision", "f16"],
    );
}

#[test]
fn prefix_that_does_not_exist() {
    let st = setup(LSTM);
    fails(
        &st.args(&st.w, &st.x, &["--prefix", "encoder.rnn"]),
        &st.y,
        &[s(&st.w), "encoder.rnn.", "weight_ih_l0"],
    );
    // A cell's weights: the message names the cell's key.
    let st = setup("cell_gru_bias_h0_B2I7H3");
    fails(
        &st.args(&st.w, &st.x, &["--prefix", "decoder"]),
        &st.y,
        &[s(&st.w), "decoder.weight_ih'"],
    );
}

#[test]
fn cell_state_for_a_model_without_one() {
    let st = setup("gru_l1_uni_bias_bf_dense_h0_T3B3I5H7");
    st.fails_with_inputs(
        &[f32s("input", &[3, 3, 5]), f32s("c0", &[1, 3, 7])],
        &["'c0'", "nn.GRU(5, 7)", "no cell state"],
    );
}

#[test]
fn cell_errors() {
    let st = setup("cell_lstm_bias_h0_B3I4H5"); // I=4, H=5
    st.fails_with_inputs(
        &[
            f32s("input", &[3, 4]),
            ("lengths".into(), vec![3], Vals::I64(vec![1, 1, 1])),
        ],
        &["'lengths'", "nn.LSTMCell(4, 5)"],
    );
    st.fails_with_inputs(
        &[f32s("input", &[3, 5])],
        &["'input'", "(3, 5)", "(batch, 4)"],
    );
    st.fails_with_inputs(
        &[f32s("input", &[3, 4]), f32s("h0", &[2, 5])],
        &["'h0'", "(2, 5)", "expected (3, 5)"],
    );
    st.fails_with_inputs(
        &[f32s("input", &[3, 4]), f32s("grad_c_n", &[3, 4])],
        &["'grad_c_n'", "(3, 4)", "expected (3, 5)"],
    );
    fails(
        &st.args(&st.w, &st.x, &["--batch-first"]),
        &st.y,
        &["--batch-first", "cell"],
    );
}

#[test]
fn unwritable_output() {
    let st = setup(LSTM);
    let y = st.dir.path("no/such/dir/Y.safetensors");
    let mut args = st.args(&st.w, &st.x, &[]);
    args[6] = s(&y);
    fails(&args, &y, &[s(&y), "cannot write"]);
}
