//! Parity with PyTorch for the regularizers whose semantics public PyTorch code defines
//! (fixtures in `tests/fixtures/regular/`, written by `scripts/gen_regular_fixtures.py`):
//! the layer-normalized LSTM of pytorch/benchmarks' custom_lstms.py (recur's layer norm with
//! `bias=false`) and AWD-LSTM's WeightDrop on `weight_hh` (recur's weight drop with the same
//! mask). Outputs, final states and every gradient, in f64.

use recur::core::regular::{LayerMasks, Masks};
use recur::core::tolerance::F64_VS_TORCH;
use recur::io::state_dict::TensorFile;
use recur::{Rnn, RnnConfig, State, Tensor};
use std::path::PathBuf;

fn fixture(name: &str) -> TensorFile {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/regular")
        .join(format!("{name}.safetensors"));
    TensorFile::read(&p).expect("tests/fixtures/regular (run scripts/gen_regular_fixtures.py)")
}

fn t(f: &TensorFile, n: &str) -> Tensor<f64> {
    f.float::<f64>(n).unwrap_or_else(|e| panic!("{n}: {e}"))
}

fn close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: size");
    for (k, (a, e)) in got.iter().zip(want).enumerate() {
        assert!(F64_VS_TORCH.ok(*a, *e), "{what}[{k}]: {a} vs PyTorch {e}");
    }
}

fn check(name: &str, cfg: RnnConfig, masks: impl Fn(&TensorFile) -> Masks<f64>) {
    let f = fixture(name);
    let x = t(&f, "x");
    let mut params = Vec::new();
    let probe: Rnn<f64> = Rnn::new(cfg.clone(), 0).unwrap();
    for e in probe.layout().entries() {
        let v = t(&f, &e.name);
        assert_eq!(v.shape(), e.shape.as_slice(), "{name}: {}", e.name);
        params.extend_from_slice(v.data());
    }
    let m = Rnn::from_params(cfg, params).unwrap();
    let state = State {
        h: t(&f, "h0"),
        c: Some(t(&f, "c0")),
    };
    let masks = masks(&f);
    let (out, tape) = m
        .forward_train_masked(&x, Some(&state), None, &masks)
        .unwrap();
    close(
        &format!("{name} output"),
        out.output.data(),
        t(&f, "output").data(),
    );
    close(&format!("{name} h_n"), out.h_n.data(), t(&f, "h_n").data());
    close(
        &format!("{name} c_n"),
        out.c_n.as_ref().unwrap().data(),
        t(&f, "c_n").data(),
    );
    let mut grads = m.zeros_like_params();
    let g = m
        .backward(
            &tape,
            Some(&t(&f, "gy")),
            Some(&t(&f, "gh")),
            Some(&t(&f, "gc")),
            &mut grads,
        )
        .unwrap();
    for e in m.layout().entries() {
        close(
            &format!("{name} grad {}", e.name),
            &grads[e.range()],
            t(&f, &format!("grad.{}", e.name)).data(),
        );
    }
    close(
        &format!("{name} grad x"),
        g.input.data(),
        t(&f, "grad.x").data(),
    );
    close(
        &format!("{name} grad h0"),
        g.h0.data(),
        t(&f, "grad.h0").data(),
    );
    close(
        &format!("{name} grad c0"),
        g.c0.as_ref().unwrap().data(),
        t(&f, "grad.c0").data(),
    );
}

#[test]
fn layer_norm_lstm_matches_custom_lstms() {
    for (name, i, h, l) in [("ln_lstm_1layer", 3, 5, 1), ("ln_lstm_2layers", 4, 5, 2)] {
        let cfg = RnnConfig::lstm(i, h)
            .num_layers(l)
            .bias(false)
            .layer_norm(true);
        check(name, cfg.clone(), |_| Masks {
            layers: vec![LayerMasks::default(); l],
        });
        // Evaluation mode is the same computation: no masks to draw.
        let f = fixture(name);
        let probe: Rnn<f64> = Rnn::new(cfg.clone(), 0).unwrap();
        let params: Vec<f64> = probe
            .layout()
            .entries()
            .iter()
            .flat_map(|e| t(&f, &e.name).into_data())
            .collect();
        let m = Rnn::from_params(cfg, params).unwrap();
        let s = State {
            h: t(&f, "h0"),
            c: Some(t(&f, "c0")),
        };
        let o = m.forward(&t(&f, "x"), Some(&s), None).unwrap();
        close(
            &format!("{name} eval output"),
            o.output.data(),
            t(&f, "output").data(),
        );
    }
}

#[test]
fn weight_drop_matches_awd_lstm() {
    let cfg = RnnConfig::lstm(4, 6).num_layers(2).weight_drop(0.5);
    check("weight_drop_lstm", cfg, |f| Masks {
        layers: (0..2)
            .map(|k| LayerMasks {
                weight_hh: Some(t(f, &format!("mask_l{k}")).into_data()),
                ..LayerMasks::default()
            })
            .collect(),
    });
}
