//! Bad weights files: every problem is an `Err` whose message names the file, the tensor and
//! what was expected, never a panic and never a huge allocation. Also the element types a
//! state_dict may come in (f16, bf16, f32, f64) and the `save` → `read` → `load_rnn` round trip.
//!
//! The files are built in memory with `serialize_tensors` (or by hand for f16/bf16) and parsed
//! with `TensorFile::from_bytes`.

use recur::io::state_dict::{
    is_cell, load_cell, load_rnn, save, serialize_tensors, state_dict, DType, LoadOptions,
    OutTensor, TensorFile,
};
use recur::{Mode, Rnn, RnnConfig};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use recur_kernels::alloc::{largest_allocation, Tracking};

#[global_allocator]
static GLOBAL: Tracking = Tracking;

// ---------------------------------------------------------------------------------------------
// Building files

const SRC: &str = "w.safetensors";

/// An owned tensor: name, shape, values.
#[derive(Clone)]
struct T {
    name: String,
    shape: Vec<usize>,
    vals: Vals,
}

#[derive(Clone)]
enum Vals {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
}

fn f32t(name: &str, shape: &[usize], v: Vec<f32>) -> T {
    T {
        name: name.into(),
        shape: shape.to_vec(),
        vals: Vals::F32(v),
    }
}

fn bytes(ts: &[T]) -> Vec<u8> {
    let list: Vec<(String, Vec<usize>, OutTensor<'_>)> = ts
        .iter()
        .map(|t| {
            let d = match &t.vals {
                Vals::F32(v) => OutTensor::F32(v),
                Vals::F64(v) => OutTensor::F64(v),
                Vals::I64(v) => OutTensor::I64(v),
            };
            (t.name.clone(), t.shape.clone(), d)
        })
        .collect();
    serialize_tensors(&list, &[]).unwrap()
}

fn file(ts: &[T]) -> TensorFile {
    TensorFile::from_bytes(&bytes(ts), SRC).unwrap()
}

/// The state_dict of a model, under `prefix`.
fn sd(rnn: &Rnn<f32>, prefix: &str) -> Vec<T> {
    state_dict(rnn.layout(), rnn.params(), prefix)
        .into_iter()
        .map(|(n, s, v)| f32t(&n, &s, v.to_vec()))
        .collect()
}

/// nn.LSTM(4, 3, num_layers=2): 8 tensors.
fn lstm() -> Rnn<f32> {
    Rnn::new(RnnConfig::lstm(4, 3).num_layers(2), 7).unwrap()
}

fn load_err(ts: &[T]) -> String {
    load_err_opts(ts, &LoadOptions::default())
}

fn load_err_opts(ts: &[T], opts: &LoadOptions) -> String {
    match load_rnn::<f32>(&file(ts), opts) {
        Ok(r) => panic!("loaded {:?}, expected an error", r.config()),
        Err(e) => e.to_string(),
    }
}

fn assert_has(msg: &str, needles: &[&str]) {
    for n in needles {
        assert!(msg.contains(n), "{n:?} not in: {msg}");
    }
}

fn without(ts: &[T], name: &str) -> Vec<T> {
    let v: Vec<T> = ts.iter().filter(|t| t.name != name).cloned().collect();
    assert_eq!(v.len() + 1, ts.len(), "no {name}");
    v
}

fn replaced(ts: &[T], t: T) -> Vec<T> {
    let mut v = ts.to_vec();
    let k = v.iter().position(|x| x.name == t.name).unwrap();
    v[k] = t;
    v
}

fn with(ts: &[T], t: T) -> Vec<T> {
    let mut v = ts.to_vec();
    v.push(t);
    v
}

// ---------------------------------------------------------------------------------------------

#[test]
fn the_model_loads() {
    let m = lstm();
    let r = load_rnn::<f32>(&file(&sd(&m, "")), &LoadOptions::default()).unwrap();
    assert_eq!(r.config(), m.config());
    assert_eq!(r.params(), m.params());
}

#[test]
fn missing_tensor_is_named_with_its_shape() {
    let ts = sd(&lstm(), "");
    let e = load_err(&without(&ts, "bias_hh_l0"));
    assert_has(&e, &[SRC, "missing tensor 'bias_hh_l0' of shape (12,)"]);
    let e = load_err(&without(&ts, "weight_hh_l1"));
    assert_has(&e, &[SRC, "missing tensor 'weight_hh_l1' of shape (12, 3)"]);
    // Two missing: both are listed.
    let e = load_err(&without(&without(&ts, "bias_ih_l1"), "bias_hh_l1"));
    assert_has(
        &e,
        &["'bias_ih_l1' of shape (12,)", "'bias_hh_l1' of shape (12,)"],
    );
    // Under a prefix, the message names the full key.
    let ts = sd(&lstm(), "encoder.rnn");
    let e = load_err(&without(&ts, "encoder.rnn.weight_hh_l1"));
    assert_has(
        &e,
        &["missing tensor 'encoder.rnn.weight_hh_l1' of shape (12, 3)"],
    );
    // The anchor itself missing: nothing to load, and the message says what it looked for.
    let e = load_err(&without(&sd(&lstm(), ""), "weight_ih_l0"));
    assert_has(&e, &[SRC, "no recurrent weights found", "'weight_ih_l0'"]);
}

#[test]
fn other_inconsistent_weights() {
    // Only one direction of a bidirectional layer.
    let g: Rnn<f32> = Rnn::new(RnnConfig::gru(4, 3), 1).unwrap();
    let e = load_err(&with(
        &sd(&g, ""),
        f32t("weight_ih_l0_reverse", &[9, 4], vec![0.0; 36]),
    ));
    assert_has(
        &e,
        &[
            "nn.GRU(4, 3, bidirectional=True)",
            "missing tensor 'weight_hh_l0_reverse' of shape (9, 3)",
        ],
    );
    // A projection on GRU or RNN weights.
    let e = load_err(&with(
        &sd(&g, ""),
        f32t("weight_hr_l0", &[2, 3], vec![0.0; 6]),
    ));
    assert_has(&e, &[SRC, "'weight_hr_l0'", "only valid for LSTM"]);
    let r: Rnn<f32> = Rnn::new(RnnConfig::rnn(4, 3), 1).unwrap();
    let e = load_err(&with(
        &sd(&r, ""),
        f32t("weight_hr_l0", &[2, 3], vec![0.0; 6]),
    ));
    assert_has(&e, &["'weight_hr_l0'", "only valid for LSTM"]);
    // A nonlinearity for GRU weights.
    let opts = LoadOptions {
        relu: Some(true),
        ..Default::default()
    };
    assert_has(
        &load_err_opts(&sd(&g, ""), &opts),
        &[SRC, "GRU weights", "nonlinearity"],
    );
    // No tensors at all.
    assert_has(
        &load_err(&[]),
        &[SRC, "no recurrent weights found", "no tensors"],
    );
    // Extra bytes after the data.
    let mut b = bytes(&sd(&g, ""));
    b.extend_from_slice(&[0u8; 16]);
    let e = TensorFile::from_bytes(&b, SRC).unwrap_err().to_string();
    assert_has(&e, &[SRC, "not a valid safetensors file"]);
}

/// A missing or mis-shaped `weight_hr_l0` makes the inference of hidden_size go wrong, and the
/// message then blames `weight_hh_l0` ("6 gate blocks") or calls LSTM weights GRU weights,
/// without naming `weight_hr_l0`.
#[test]
fn misshaped_layer0_projection_is_named() {
    let m: Rnn<f32> = Rnn::new(RnnConfig::lstm(4, 3).num_layers(2).proj_size(2), 1).unwrap();
    let ts = sd(&m, "");
    for bad in [
        without(&ts, "weight_hr_l0"),
        replaced(&ts, f32t("weight_hr_l0", &[3, 2], vec![0.0; 6])),
        replaced(&ts, f32t("weight_hr_l0", &[2, 4], vec![0.0; 8])),
    ] {
        assert_has(&load_err(&bad), &["'weight_hr_l0'"]);
    }
}

#[test]
fn missing_projection_of_a_later_layer() {
    let m: Rnn<f32> = Rnn::new(RnnConfig::lstm(4, 3).num_layers(2).proj_size(2), 1).unwrap();
    let e = load_err(&without(&sd(&m, ""), "weight_hr_l1"));
    assert_has(&e, &[SRC, "missing tensor 'weight_hr_l1' of shape (2, 3)"]);
}

#[test]
fn unexpected_tensor_under_the_prefix() {
    let ts = sd(&lstm(), "");
    let e = load_err(&with(&ts, f32t("weight_ih_l5", &[12, 3], vec![0.0; 36])));
    assert_has(&e, &[SRC, "unexpected tensor 'weight_ih_l5'"]);
    // A reverse direction's tensor in a unidirectional model.
    let e = load_err(&with(
        &ts,
        f32t("weight_hh_l0_reverse", &[12, 3], vec![0.0; 36]),
    ));
    assert_has(&e, &["unexpected tensor 'weight_hh_l0_reverse'"]);
    // A layer beyond the last one, under a prefix.
    let ts = sd(&lstm(), "enc");
    let e = load_err(&with(&ts, f32t("enc.bias_ih_l9", &[12], vec![0.0; 12])));
    assert_has(&e, &["unexpected tensor 'enc.bias_ih_l9'"]);
    // Tensors of other modules, outside the prefix, are not the layer's business.
    let ok = with(&ts, f32t("fc.weight", &[2, 3], vec![0.0; 6]));
    let ok = with(&ok, f32t("encoder.bias_foo", &[2], vec![0.0; 2]));
    load_rnn::<f32>(&file(&ok), &LoadOptions::default()).unwrap();
}

/// `bias_foo` next to the layer's tensors is not a PyTorch parameter of the layer, and
/// `load_state_dict(strict=True)` would reject it as an unexpected key; recur ignores it
/// because only names starting with a parameter stem are checked.
#[test]
fn unexpected_tensor_with_another_stem() {
    let ts = sd(&lstm(), "");
    let e = load_err(&with(&ts, f32t("bias_foo", &[12], vec![0.0; 12])));
    assert_has(&e, &["unexpected tensor 'bias_foo'"]);
}

#[test]
fn misshaped_tensor_names_both_shapes() {
    let ts = sd(&lstm(), "");
    let e = load_err(&replaced(
        &ts,
        f32t("weight_ih_l1", &[12, 4], vec![0.0; 48]),
    ));
    assert_has(
        &e,
        &[
            SRC,
            "tensor 'weight_ih_l1' has shape (12, 4), expected (12, 3)",
        ],
    );
    let e = load_err(&replaced(&ts, f32t("bias_hh_l0", &[1, 12], vec![0.0; 12])));
    assert_has(
        &e,
        &["tensor 'bias_hh_l0' has shape (1, 12), expected (12,)"],
    );
    let e = load_err(&replaced(&ts, f32t("bias_ih_l1", &[11], vec![0.0; 11])));
    assert_has(&e, &["tensor 'bias_ih_l1' has shape (11,), expected (12,)"]);
    // The tensors the configuration is inferred from.
    let e = load_err(&replaced(
        &ts,
        f32t("weight_hh_l0", &[13, 3], vec![0.0; 39]),
    ));
    assert_has(&e, &[SRC, "'weight_hh_l0'", "(13, 3)"]);
    let e = load_err(&replaced(
        &ts,
        f32t("weight_hh_l0", &[10, 2], vec![0.0; 20]),
    ));
    assert_has(&e, &[SRC, "'weight_hh_l0'", "5 gate blocks"]);
    let e = load_err(&replaced(&ts, f32t("weight_ih_l0", &[48], vec![0.0; 48])));
    assert_has(&e, &[SRC, "'weight_ih_l0'", "(48,)", "2 dimensions"]);
    let e = load_err(&replaced(&ts, f32t("weight_hh_l0", &[12, 0], vec![])));
    assert_has(&e, &[SRC, "'weight_hh_l0'"]);
}

#[test]
fn non_float_weight() {
    let ts = sd(&lstm(), "");
    let t = T {
        name: "bias_ih_l0".into(),
        shape: vec![12],
        vals: Vals::I64(vec![1; 12]),
    };
    let e = load_err(&replaced(&ts, t));
    assert_has(
        &e,
        &[
            SRC,
            "tensor 'bias_ih_l0' has dtype I64, expected a floating-point type",
        ],
    );
    let t = T {
        name: "weight_ih_l0".into(),
        shape: vec![12, 4],
        vals: Vals::I64(vec![0; 48]),
    };
    let e = load_err(&replaced(&ts, t));
    assert_has(&e, &["'weight_ih_l0' has dtype I64"]);
}

/// A small file cut at every byte: always an error (never a panic), naming the file.
#[test]
fn truncated_at_every_cut_point() {
    let m: Rnn<f32> = Rnn::new(RnnConfig::gru(2, 2).bias(false), 3).unwrap();
    let b = bytes(&sd(&m, ""));
    assert!(load_rnn::<f32>(
        &TensorFile::from_bytes(&b, SRC).unwrap(),
        &LoadOptions::default()
    )
    .is_ok());
    for cut in 0..b.len() {
        let r = std::panic::catch_unwind(|| TensorFile::from_bytes(&b[..cut], SRC));
        match r {
            Err(_) => panic!("panic at cut {cut} of {}", b.len()),
            Ok(Ok(_)) => panic!("cut {cut} of {}: accepted a truncated file", b.len()),
            Ok(Err(e)) => assert_has(&e.to_string(), &[SRC, "not a valid safetensors file"]),
        }
    }
}

/// Every byte of a small file changed: an error or a file that loads or not, never a panic.
#[test]
fn corrupted_bytes_never_panic() {
    let m: Rnn<f32> = Rnn::new(RnnConfig::rnn(2, 2), 3).unwrap();
    let b = bytes(&sd(&m, ""));
    for k in 0..b.len() {
        for x in [0x01u8, 0x80, 0xff] {
            let mut c = b.clone();
            c[k] ^= x;
            let r = std::panic::catch_unwind(|| {
                if let Ok(f) = TensorFile::from_bytes(&c, SRC) {
                    let _ = load_rnn::<f32>(&f, &LoadOptions::default());
                    let _ = load_rnn::<f64>(&f, &LoadOptions::default());
                    let _ = load_cell::<f32>(&f, &LoadOptions::default());
                }
            });
            assert!(r.is_ok(), "panic with byte {k} ^ {x:#x}");
        }
    }
}

fn header_file(json: &str, data_len: usize) -> Vec<u8> {
    let mut b = (json.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(json.as_bytes());
    b.resize(b.len() + data_len, 0);
    b
}

/// Lengths and shapes that claim far more than the file holds: an error at once, and no
/// allocation beyond the file's own size.
#[test]
fn huge_claims_fail_fast_without_allocating() {
    let huge_len = {
        let mut b = (u64::MAX / 2).to_le_bytes().to_vec();
        b.extend_from_slice(b"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}");
        b
    };
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("header length u64::MAX/2", huge_len),
        ("header length u64::MAX", u64::MAX.to_le_bytes().to_vec()),
        ("header length 1 GB", (1u64 << 30).to_le_bytes().to_vec()),
        (
            "offsets past the end",
            header_file(
                r#"{"weight_ih_l0":{"dtype":"F32","shape":[1000000000],"data_offsets":[0,4000000000]}}"#,
                16,
            ),
        ),
        (
            "shape that overflows",
            header_file(
                r#"{"weight_ih_l0":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}}"#,
                16,
            ),
        ),
        (
            "shape that disagrees with the offsets",
            header_file(
                r#"{"weight_ih_l0":{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,16]}}"#,
                16,
            ),
        ),
    ];
    // The tracking sees a large allocation when there is one.
    let (_, big) = largest_allocation(|| std::hint::black_box(vec![0u8; 4 << 20]));
    assert!(big >= 4 << 20);
    for (what, b) in files {
        let t0 = Instant::now();
        let (r, largest) = largest_allocation(|| TensorFile::from_bytes(&b, SRC));
        let e = match r {
            Ok(_) => panic!("{what}: accepted"),
            Err(e) => e.to_string(),
        };
        assert_has(&e, &[SRC]);
        assert!(t0.elapsed() < Duration::from_secs(1), "{what}: slow");
        assert!(
            largest < 1 << 20,
            "{what}: allocated {largest} bytes for a {}-byte file",
            b.len()
        );
    }
}

#[test]
fn several_layers_need_a_prefix() {
    let enc = sd(&lstm(), "enc");
    let dec_model: Rnn<f32> = Rnn::new(RnnConfig::gru(3, 5), 9).unwrap();
    let mut both = enc.clone();
    both.extend(sd(&dec_model, "dec"));
    let e = load_err(&both);
    assert_has(
        &e,
        &[SRC, "several recurrent layers", "'dec.', 'enc.'", "prefix"],
    );
    // Either one, by its prefix (with or without the dot).
    for p in ["dec", "dec."] {
        let opts = LoadOptions {
            prefix: Some(p.into()),
            ..Default::default()
        };
        let r = load_rnn::<f32>(&file(&both), &opts).unwrap();
        assert_eq!(r.config(), dec_model.config());
        assert_eq!(r.params(), dec_model.params());
    }
    // One at the root and one under a prefix.
    let mut root = sd(&lstm(), "");
    root.extend(sd(&dec_model, "dec"));
    let e = load_err(&root);
    assert_has(&e, &["several recurrent layers", "'' (none)", "'dec.'"]);
    // A prefix that is not there: the message says where the weights are.
    let opts = LoadOptions {
        prefix: Some("decoder".into()),
        ..Default::default()
    };
    let e = load_err_opts(&enc, &opts);
    assert_has(
        &e,
        &[
            SRC,
            "no tensor 'decoder.weight_ih_l0'",
            "the file has it under the prefix 'enc.'",
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Element types

/// Values exact in f16 and bf16 (k/64 with |k| ≤ 128, f16 subnormals), as f32.
fn exact_values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| match (i + seed) % 11 {
            0 => 0.0,
            1 => 2f32.powi(-20), // a subnormal f16
            2 => -(2f32.powi(-24)),
            _ => (((i * 37 + seed * 11) % 257) as f32 - 128.0) / 64.0,
        })
        .collect()
}

/// f32 → f16 bits, for values exact in f16 (normal or subnormal).
fn f16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let a = x.abs();
    if a == 0.0 {
        return sign;
    }
    if a < 2f32.powi(-14) {
        let m = a * 2f32.powi(24);
        assert_eq!(m.fract(), 0.0, "{x} is not exact in f16");
        return sign | m as u16;
    }
    let e = ((b >> 23) & 0xff) as i32 - 127 + 15;
    assert!((1..31).contains(&e), "{x} out of f16 range");
    assert_eq!(b & 0x1fff, 0, "{x} is not exact in f16");
    sign | ((e as u16) << 10) | ((b >> 13) & 0x3ff) as u16
}

fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    assert_eq!(b & 0xffff, 0, "{x} is not exact in bf16");
    (b >> 16) as u16
}

/// A safetensors file written by hand, for dtypes `serialize_tensors` does not write.
fn raw_file(ts: &[(String, &str, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut data = Vec::new();
    for (name, dtype, shape, b) in ts {
        let shape: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        entries.push(format!(
            r#""{name}":{{"dtype":"{dtype}","shape":[{}],"data_offsets":[{},{}]}}"#,
            shape.join(","),
            data.len(),
            data.len() + b.len()
        ));
        data.extend_from_slice(b);
    }
    let mut json = format!("{{{}}}", entries.join(","));
    while json.len() % 8 != 0 {
        json.push(' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(&data);
    out
}

#[test]
fn f16_bf16_f64_weights_load_as_their_f32_values() {
    let cfg = RnnConfig::lstm(3, 4)
        .num_layers(2)
        .bidirectional(true)
        .proj_size(2);
    let shapes: Vec<(String, Vec<usize>)> = lstm_layout_names(&cfg);
    let vals: Vec<Vec<f32>> = shapes
        .iter()
        .enumerate()
        .map(|(k, (_, s))| exact_values(s.iter().product(), k))
        .collect();
    let f32_file: Vec<T> = shapes
        .iter()
        .zip(&vals)
        .map(|((n, s), v)| f32t(n, s, v.clone()))
        .collect();
    let reference = load_rnn::<f32>(&file(&f32_file), &LoadOptions::default()).unwrap();
    assert_eq!(reference.config().proj_size, 2);

    let encode = |dtype: &str, v: &[f32]| -> Vec<u8> {
        match dtype {
            "F16" => v.iter().flat_map(|&x| f16_bits(x).to_le_bytes()).collect(),
            "BF16" => v.iter().flat_map(|&x| bf16_bits(x).to_le_bytes()).collect(),
            "F64" => v.iter().flat_map(|&x| (x as f64).to_le_bytes()).collect(),
            _ => v.iter().flat_map(|&x| x.to_le_bytes()).collect(),
        }
    };
    let all = ["F16", "BF16", "F64", "F32"];
    // Each dtype alone, and all four mixed in one file.
    for mix in 0..=all.len() {
        let ts: Vec<(String, &str, Vec<usize>, Vec<u8>)> = shapes
            .iter()
            .zip(&vals)
            .enumerate()
            .map(|(k, ((n, s), v))| {
                let dtype = if mix == all.len() {
                    all[k % 4]
                } else {
                    all[mix]
                };
                (n.clone(), dtype, s.clone(), encode(dtype, v))
            })
            .collect();
        let f = TensorFile::from_bytes(&raw_file(&ts), SRC).unwrap();
        let what = if mix == all.len() { "mixed" } else { all[mix] };
        let r32 = load_rnn::<f32>(&f, &LoadOptions::default()).unwrap();
        assert_eq!(r32.config(), reference.config(), "{what}");
        assert_eq!(r32.params(), reference.params(), "{what}: f32 values");
        let r64 = load_rnn::<f64>(&f, &LoadOptions::default()).unwrap();
        let want: Vec<f64> = reference.params().iter().map(|&x| x as f64).collect();
        assert_eq!(r64.params(), want.as_slice(), "{what}: f64 values");
    }
}

/// The (name, shape) list of a configuration, in PyTorch's order.
fn lstm_layout_names(cfg: &RnnConfig) -> Vec<(String, Vec<usize>)> {
    let m: Rnn<f32> = Rnn::new(cfg.clone(), 0).unwrap();
    m.layout()
        .entries()
        .iter()
        .map(|e| (e.name.clone(), e.shape.clone()))
        .collect()
}

#[test]
fn known_half_precision_bits() {
    // (dtype, bits, value)
    let cases: [(&str, u16, f32); 8] = [
        ("F16", 0x3c00, 1.0),
        ("F16", 0xc000, -2.0),
        ("F16", 0x7bff, 65504.0),
        ("F16", 0x2e66, 819.0 / 8192.0),
        ("F16", 0x0001, 1.0 / 16_777_216.0),
        ("BF16", 0x3f80, 1.0),
        ("BF16", 0xc040, -3.0),
        ("BF16", 0x3dcd, 205.0 / 2048.0),
    ];
    for (dtype, bits, want) in cases {
        let f = TensorFile::from_bytes(
            &raw_file(&[("x".into(), dtype, vec![1], bits.to_le_bytes().to_vec())]),
            SRC,
        )
        .unwrap();
        assert_eq!(
            f.raw("x").unwrap().dtype,
            if dtype == "F16" {
                DType::F16
            } else {
                DType::BF16
            }
        );
        let got = f.float::<f32>("x").unwrap().data()[0];
        assert_eq!(got, want, "{dtype} {bits:#06x}");
    }
}

#[test]
fn f64_weights_keep_their_precision() {
    let m: Rnn<f64> = Rnn::new(RnnConfig::gru(2, 3), 5).unwrap();
    let ts: Vec<T> = state_dict(m.layout(), m.params(), "")
        .into_iter()
        .map(|(n, s, v)| T {
            name: n,
            shape: s,
            vals: Vals::F64(v.to_vec()),
        })
        .collect();
    let f = file(&ts);
    let r64 = load_rnn::<f64>(&f, &LoadOptions::default()).unwrap();
    assert_eq!(r64.params(), m.params());
    let r32 = load_rnn::<f32>(&f, &LoadOptions::default()).unwrap();
    let want: Vec<f32> = m.params().iter().map(|&x| x as f32).collect();
    assert_eq!(r32.params(), want.as_slice());
}

// ---------------------------------------------------------------------------------------------
// save → read → load

fn fixture(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/parity")
        .join(format!("{case}.safetensors"))
}

#[path = "../../../tests/support/tmpdir.rs"]
mod tmpdir;
use tmpdir::TmpDir;

/// Tensor names in the order of their data in the file.
fn data_order(bytes: &[u8]) -> Vec<String> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let h: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut v: Vec<(u64, String)> = h
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, t)| (t["data_offsets"][0].as_u64().unwrap(), k.clone()))
        .collect();
    v.sort();
    v.into_iter().map(|(_, k)| k).collect()
}

#[test]
fn save_read_load_round_trip() {
    let case = "lstm_l2_bi_bias_tm_ragged_p1_noh0_T5B3I4H3";
    let fx_bytes = std::fs::read(fixture(case)).unwrap();
    let fx = TensorFile::from_bytes(&fx_bytes, case).unwrap();
    let opts = LoadOptions {
        prefix: Some("params".into()),
        ..Default::default()
    };
    let rnn = load_rnn::<f32>(&fx, &opts).unwrap();
    // state_dict() lists the parameters in PyTorch's registration order.
    let mut pytorch_order = Vec::new();
    for l in 0..2 {
        for sfx in ["", "_reverse"] {
            for stem in ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"] {
                pytorch_order.push(format!("{stem}_l{l}{sfx}"));
            }
        }
    }
    let names: Vec<String> = state_dict(rnn.layout(), rnn.params(), "")
        .into_iter()
        .map(|(n, _, _)| n)
        .collect();
    assert_eq!(names, pytorch_order);

    let dir = TmpDir::new("save");
    for prefix in ["", "encoder.rnn", "encoder.rnn."] {
        let path = dir.0.join("w.safetensors");
        save(rnn.layout(), rnn.params(), prefix, &path).unwrap();
        let saved_bytes = std::fs::read(&path).unwrap();
        let saved = TensorFile::read(&path).unwrap();
        assert_eq!(
            saved.metadata().get("format").map(|s| s.as_str()),
            Some("pt")
        );
        let p = if prefix.is_empty() || prefix.ends_with('.') {
            prefix.to_string()
        } else {
            format!("{prefix}.")
        };
        // The same names as the fixture's params, in the same order in the file, all f32.
        let want: Vec<String> = data_order(&fx_bytes)
            .into_iter()
            .filter_map(|n| n.strip_prefix("params.").map(|r| format!("{p}{r}")))
            .collect();
        assert_eq!(data_order(&saved_bytes), want, "prefix {prefix:?}");
        for n in saved.names() {
            assert_eq!(saved.raw(n).unwrap().dtype, DType::F32, "{n}");
            let orig = fx
                .float::<f32>(&format!("params.{}", &n[p.len()..]))
                .unwrap();
            assert_eq!(saved.float::<f32>(n).unwrap(), orig, "{n}");
        }
        // Loaded back, with the prefix found or given: the same model.
        for given in [None, Some(prefix.to_string())] {
            let back = load_rnn::<f32>(
                &saved,
                &LoadOptions {
                    prefix: given,
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(back.config(), rnn.config());
            assert_eq!(back.params(), rnn.params());
        }
    }
    // Saving over an existing file replaces it.
    let path = dir.0.join("w.safetensors");
    let gru: Rnn<f64> = Rnn::new(RnnConfig::gru(2, 2), 1).unwrap();
    save(gru.layout(), gru.params(), "", &path).unwrap();
    let back = load_rnn::<f64>(&TensorFile::read(&path).unwrap(), &LoadOptions::default()).unwrap();
    let want: Vec<f64> = gru.params().iter().map(|&x| x as f32 as f64).collect();
    assert_eq!(back.params(), want.as_slice());
    assert_eq!(back.config().mode, Mode::Gru);
}

#[test]
fn cell_save_read_load_round_trip() {
    let case = "cell_lstm_bias_h0_B3I4H5";
    let fx = TensorFile::read(fixture(case)).unwrap();
    assert!(is_cell(&fx, Some("params")));
    let opts = LoadOptions {
        prefix: Some("params".into()),
        ..Default::default()
    };
    let cell = load_cell::<f32>(&fx, &opts).unwrap();
    let dir = TmpDir::new("cell");
    let path = dir.0.join("c.safetensors");
    save(cell.layout(), cell.params(), "", &path).unwrap();
    let saved = TensorFile::read(&path).unwrap();
    assert!(is_cell(&saved, None));
    let names: Vec<&str> = saved.names().collect();
    assert_eq!(names, ["bias_hh", "bias_ih", "weight_hh", "weight_ih"]);
    let back = load_cell::<f32>(&saved, &LoadOptions::default()).unwrap();
    assert_eq!(back.config(), cell.config());
    assert_eq!(back.params(), cell.params());
    // A cell's weights are not a layer's.
    let e = load_rnn::<f32>(&saved, &LoadOptions::default()).unwrap_err();
    assert_has(
        &e.to_string(),
        &["no recurrent weights found", "'weight_ih_l0'"],
    );
}
