//! Model directories written before config.json had a `"format"` field (format 0, kept in
//! tests/fixtures/old-format: a character LM, a text classifier and a seq2seq model, each
//! trained for two steps by the recur of that time) still load, evaluate and predict; a
//! directory from a newer format is refused with a message that says what to do.

use std::path::{Path, PathBuf};

#[path = "../../../tests/support/cli.rs"]
mod cli;
use cli::{fails_with, ok, recur, s};
#[path = "../../../tests/support/tmpdir.rs"]
mod tmpdir;
use tmpdir::TmpDir;

fn fixture(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/old-format")
        .join(kind)
}

fn config(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

#[test]
fn old_model_directories_have_no_format_field_and_still_load() {
    for (kind, model) in [("lm", "char_lm"), ("cls", "seq_model"), ("s2s", "seq2seq")] {
        let dir = fixture(kind);
        let c = config(&dir);
        assert!(c.get("format").is_none(), "{kind}: an old directory");
        assert_eq!(c["model"], model);
        let cfg = recur::models::read_config(&dir).unwrap();
        assert_eq!(cfg.format, 0);
        assert_eq!(cfg.kind.name(), model);
    }
    // The library's loaders read them.
    let (lm, vocab) = recur::models::lm::load_dir::<f32>(fixture("lm")).unwrap();
    assert_eq!(lm.config().vocab_size, vocab.len());
    let cls = recur::models::seqmodel::load_dir::<f32>(fixture("cls")).unwrap();
    assert_eq!(cls.config().output_size, 2);
    let s2s = recur::models::seq2seq::load_dir::<f32>(fixture("s2s")).unwrap();
    assert_eq!(s2s.model.config().src_vocab_size, s2s.src_vocab.len());
}

#[test]
fn old_model_directories_predict_and_sample_through_the_command_line() {
    let dir = TmpDir::new("old-format");
    let input = dir.path("in.txt");
    std::fs::write(&input, "good fun film\n").unwrap();
    let p = ok(&recur(&[
        "predict",
        "--model",
        s(&fixture("cls")),
        "--input",
        s(&input),
    ]));
    assert!(p.starts_with("pos\t") || p.starts_with("neg\t"), "{p}");
    std::fs::write(&input, "abc\n").unwrap();
    let p = ok(&recur(&[
        "predict",
        "--model",
        s(&fixture("s2s")),
        "--input",
        s(&input),
        "--max-len",
        "5",
    ]));
    assert_eq!(p.lines().count(), 1, "{p}");
    let t = ok(&recur(&[
        "sample",
        "--model",
        s(&fixture("lm")),
        "--prime",
        "the",
        "--length",
        "10",
    ]));
    assert!(t.starts_with("the"), "{t}");
}

#[test]
fn a_newer_format_is_refused_with_what_to_do_and_new_directories_say_their_format() {
    let dir = TmpDir::new("new-format");
    let copy = dir.path("cls");
    std::fs::create_dir_all(&copy).unwrap();
    for f in [
        "config.json",
        "labels.json",
        "model.safetensors",
        "vocab.json",
    ] {
        std::fs::copy(fixture("cls").join(f), copy.join(f)).unwrap();
    }
    let mut c = config(&copy);
    c["format"] = 99.into();
    std::fs::write(copy.join("config.json"), c.to_string()).unwrap();
    let o = recur(&["predict", "--model", s(&copy)]);
    fails_with(
        &o,
        "format 99 was written by a newer recur; this one reads formats 0 to 1",
    );
    let e = recur::models::seqmodel::load_dir::<f32>(&copy)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Use a recur as new as the one that trained the model"),
        "{e}"
    );
    c["format"] = 0.into();
    c["model"] = "transformer".into();
    std::fs::write(copy.join("config.json"), c.to_string()).unwrap();
    let o = recur(&["predict", "--model", s(&copy)]);
    fails_with(&o, "does not know models of kind \"transformer\"");

    // A directory written now holds the format it was written in.
    let m = recur::models::seqmodel::load_dir::<f32>(fixture("cls")).unwrap();
    let out = dir.path("resaved");
    recur::models::seqmodel::save_dir(&out, &m, None).unwrap();
    assert_eq!(config(&out)["format"], recur::models::FORMAT_VERSION);
    assert_eq!(recur::models::read_config(&out).unwrap().format, 1);
}
