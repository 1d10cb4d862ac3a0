//! The configuration of every kind of model through the one reader and writer of
//! `recur::models`: the JSON objects read back, fields old directories lack get their
//! defaults, and a bad field is an error naming the file and the field.

use recur::models::lm::CharLmConfig;
use recur::models::seq2seq::{Attention, Seq2SeqConfig};
use recur::models::seqmodel::{Head, Pooling, SeqModelConfig};
use recur::models::{parse_config, ModelKind};
use recur::Mode;
use serde_json::json;

fn lm() -> CharLmConfig {
    CharLmConfig::new(Mode::Gru, 7)
        .embed_size(3)
        .hidden_size(5)
        .num_layers(2)
        .dropout(0.25)
}

#[test]
fn every_kind_reads_back_what_it_writes_with_the_same_keys_as_before() {
    let c = lm();
    let v = c.to_json();
    assert_eq!(
        v,
        json!({"model": "char_lm", "cell": "gru", "vocab_size": 7, "embed_size": 3,
               "hidden_size": 5, "num_layers": 2, "dropout": 0.25})
    );
    assert_eq!(CharLmConfig::from_json(&v, "c.json").unwrap(), c);

    let s = Seq2SeqConfig::new(Mode::RnnRelu, 9, 8)
        .attention(Attention::Dot)
        .bidirectional(true)
        .hidden_size(6);
    let v = s.to_json();
    assert_eq!(v["cell"], "rnn_relu");
    assert_eq!(v["attention"], "dot");
    assert_eq!(v["model"], "seq2seq");
    assert_eq!(Seq2SeqConfig::from_json(&v, "c.json").unwrap(), s);

    let t = SeqModelConfig::tagger(11, 4).mode(Mode::Lstm).dropout(0.5);
    let v = t.to_json();
    assert_eq!(
        v,
        json!({"model": "seq_model", "input": "tokens", "vocab_size": 11, "embed_size": 64,
               "cell": "lstm", "hidden_size": 128, "num_layers": 1, "bidirectional": true,
               "dropout": 0.5, "head": "step", "loss": "cross_entropy", "output_size": 4})
    );
    assert_eq!(SeqModelConfig::from_json(&v, "c.json").unwrap(), t);
    let f = SeqModelConfig::forecaster(2, 3).head(Head::PerSequence(Pooling::Mean));
    let v = f.to_json();
    assert_eq!(v["num_features"], 2);
    assert_eq!(v["pooling"], "mean");
    assert!(v.get("vocab_size").is_none());
    assert_eq!(SeqModelConfig::from_json(&v, "c.json").unwrap(), f);
}

#[test]
fn fields_old_directories_lack_get_their_defaults_and_other_keys_are_ignored() {
    let mut v = lm().to_json();
    v.as_object_mut().unwrap().remove("dropout");
    v["training"] = json!({"steps": 2});
    v["format"] = 0.into();
    assert_eq!(CharLmConfig::from_json(&v, "c.json").unwrap().dropout, 0.0);
    let mut v = Seq2SeqConfig::new(Mode::Lstm, 5, 6).to_json();
    v.as_object_mut().unwrap().remove("bidirectional");
    v.as_object_mut().unwrap().remove("dropout");
    let s = Seq2SeqConfig::from_json(&v, "c.json").unwrap();
    assert!(!s.bidirectional);
    assert_eq!(s.dropout, 0.0);
}

#[test]
fn a_bad_field_is_an_error_naming_the_file_and_the_field() {
    let err = |v: &serde_json::Value, kind: &str| -> String {
        match kind {
            "lm" => CharLmConfig::from_json(v, "dir/config.json").map(|_| ()),
            "seq" => SeqModelConfig::from_json(v, "dir/config.json").map(|_| ()),
            _ => Seq2SeqConfig::from_json(v, "dir/config.json").map(|_| ()),
        }
        .unwrap_err()
        .to_string()
    };
    let mut v = lm().to_json();
    v["hidden_size"] = "five".into();
    let e = err(&v, "lm");
    assert!(
        e.starts_with("dir/config.json: invalid type: string \"five\""),
        "{e}"
    );
    assert!(e.ends_with("(field \"hidden_size\")"), "{e}");
    let mut v = lm().to_json();
    v["num_layers"] = (-1).into();
    let e = err(&v, "lm");
    assert!(
        e.contains("-1") && e.contains("(field \"num_layers\")"),
        "{e}"
    );
    let mut v = lm().to_json();
    v["cell"] = "transformer".into();
    let e = err(&v, "lm");
    assert!(
        e.starts_with("dir/config.json: unknown cell 'transformer': expected one of"),
        "{e}"
    );
    assert!(e.ends_with("(field \"cell\")"), "{e}");
    let mut v = lm().to_json();
    v.as_object_mut().unwrap().remove("vocab_size");
    assert_eq!(err(&v, "lm"), "dir/config.json: missing field `vocab_size`");

    let mut v = SeqModelConfig::text_classifier(4, 2).to_json();
    v["bidirectional"] = "yes".into();
    let e = err(&v, "seq");
    assert!(
        e.contains("invalid type: string \"yes\", expected a boolean"),
        "{e}"
    );
    assert!(e.ends_with("(field \"bidirectional\")"), "{e}");
    let mut v = SeqModelConfig::text_classifier(4, 2).to_json();
    v["head"] = "tree".into();
    let e = err(&v, "seq");
    assert!(
        e.contains("unknown variant `tree`") && e.contains("(field \"head\")"),
        "{e}"
    );
    let mut v = SeqModelConfig::text_classifier(4, 2).to_json();
    v.as_object_mut().unwrap().remove("embed_size");
    assert_eq!(
        err(&v, "seq"),
        "dir/config.json: missing field \"embed_size\" (of \"input\": \"tokens\")"
    );
    let mut v = SeqModelConfig::text_classifier(4, 2).to_json();
    v.as_object_mut().unwrap().remove("pooling");
    assert!(err(&v, "seq").contains("missing field \"pooling\""));

    let mut v = Seq2SeqConfig::new(Mode::Lstm, 5, 6).to_json();
    v["dropout"] = json!({"p": 0.1});
    let e = err(&v, "s2s");
    assert!(
        e.contains("invalid type: map") && e.ends_with("(field \"dropout\")"),
        "{e}"
    );
    // Checked after reading: a value of the right type out of range.
    let mut v = Seq2SeqConfig::new(Mode::Lstm, 5, 6).to_json();
    v["dropout"] = 1.5.into();
    assert!(err(&v, "s2s").starts_with("dir/config.json: dropout must be in [0, 1)"));
    // Another kind's file.
    let e = parse_config::<CharLmConfig>(
        &Seq2SeqConfig::new(Mode::Lstm, 5, 6).to_json(),
        ModelKind::CharLm,
        "x.json",
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "x.json: not a character language model (expected \"model\": \"char_lm\")"
    );
}
