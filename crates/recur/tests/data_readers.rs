//! The data readers of `recur::data` on small files written here, each modelled on a real
//! format (vader-sentiment TSV, SpamAssassin JSONL, sktime `.ts`, UD CoNLL-U, parallel-text
//! TSV with a header, CMUdict, statsmodels CSV): the records and line numbers each must give
//! (written out by hand from the format's definition), the exact error messages (file, line,
//! expected vs found), `skip_bad_lines` reports, the tokenizer rules, and the vocabularies'
//! order, encoding and JSON round trip.

use recur::data::cmudict::{self, CmudictOptions};
use recur::data::conllu::{self, ConlluOptions};
use recur::data::csv::{self, CsvOptions};
use recur::data::jsonl::{self, LabelledJsonl};
use recur::data::tokenize::{chars, Contractions, Tokenizer, WordTokenizer};
use recur::data::ts::{self, TsOptions};
use recur::data::tsv::{self, LabelledTsv, PairTsv, ScoreLabels};
use recur::data::vocab::{LabelSet, TokenVocab, SPECIALS};
use recur::data::{Column, LabelledText, ReadReport, REPORTED_SKIPS};
use recur::Error;

#[path = "../../../tests/support/tmpdir.rs"]
mod tmpdir;
use tmpdir::TmpDir;

fn msg<T: std::fmt::Debug>(r: recur::Result<T>) -> String {
    r.unwrap_err().to_string()
}

fn lt(label: &str, text: &str, line: usize) -> LabelledText {
    LabelledText {
        label: label.into(),
        text: text.into(),
        line,
    }
}

// ---------------------------------------------------------------------------------------------
// TSV: labelled texts

#[test]
fn tsv_label_text_default_layout() {
    // CRLF line ends, a byte-order mark, a blank line, no final newline.
    let file = "\u{FEFF}pos\tA fine film.\r\nneg\t Dull \r\n\r\nneg\tToo long";
    let r = tsv::parse_labelled(file.as_bytes(), "t.tsv", &LabelledTsv::default()).unwrap();
    assert_eq!(
        r.records,
        vec![
            lt("pos", "A fine film.", 1),
            lt("neg", "Dull", 2),
            lt("neg", "Too long", 4)
        ]
    );
    assert_eq!(
        r.report,
        ReadReport {
            source: "t.tsv".into(),
            lines: 4,
            records: 3,
            skipped: 0,
            first_skipped: vec![],
            dropped: 0
        }
    );
}

#[test]
fn tsv_scores_become_labels() {
    // vader-sentiment layout: id<TAB>mean_rating<TAB>text.
    let file = "1\t2.7\tgood\n2\t-0.2\tmeh\n3\t0\tnothing\n4\t-1.5\tbad\n5\t0.4\tokay\n";
    let mut o = LabelledTsv {
        label: Column::Index(1),
        text: Column::Index(2),
        score: Some(ScoreLabels::sign("pos", "neg")),
        ..LabelledTsv::default()
    };
    let r = tsv::parse_labelled(file.as_bytes(), "v.txt", &o).unwrap();
    let got: Vec<(&str, usize)> = r
        .records
        .iter()
        .map(|x| (x.label.as_str(), x.line))
        .collect();
    assert_eq!(got, [("pos", 1), ("neg", 2), ("neg", 4), ("pos", 5)]);
    assert_eq!(r.report.dropped, 1);

    // |score| <= 0.5 is neutral: dropped, or labelled when a neutral label is given.
    o.score.as_mut().unwrap().threshold = 0.5;
    let r = tsv::parse_labelled(file.as_bytes(), "v.txt", &o).unwrap();
    assert_eq!(r.records.iter().map(|x| x.line).collect::<Vec<_>>(), [1, 4]);
    assert_eq!(r.report.dropped, 3);
    o.score.as_mut().unwrap().neutral = Some("neutral".into());
    let r = tsv::parse_labelled(file.as_bytes(), "v.txt", &o).unwrap();
    let labels: Vec<&str> = r.records.iter().map(|x| x.label.as_str()).collect();
    assert_eq!(labels, ["pos", "neutral", "neutral", "neg", "neutral"]);

    o.score.as_mut().unwrap().threshold = f64::NAN;
    assert!(matches!(
        tsv::parse_labelled(file.as_bytes(), "v.txt", &o),
        Err(Error::Config(_))
    ));
}

#[test]
fn tsv_errors_name_file_line_and_what_was_expected() {
    let o = LabelledTsv {
        label: 1.into(),
        text: 2.into(),
        score: Some(ScoreLabels::sign("pos", "neg")),
        ..LabelledTsv::default()
    };
    let p = |s: &[u8]| msg(tsv::parse_labelled(s, "v.txt", &o));
    assert_eq!(
        p(b"1\t2\tok\n2 -1 bad\n"),
        "v.txt:2: expected 3 tab-separated fields, found 1"
    );
    assert_eq!(
        p(b"1\t2\tok\t\n"),
        "v.txt:1: expected 3 tab-separated fields, found 4"
    );
    assert_eq!(
        p(b"1\t2\tok\n2\t1\tb\xFFd\n"),
        "v.txt:2: invalid UTF-8 at byte 6 of the line (byte 0xFF)"
    );
    assert_eq!(
        p(b"1\tNaN\tx\n"),
        "v.txt:1: field 2 (score): expected a finite number, found \"NaN\" (NaN)"
    );
    assert_eq!(
        p(b"1\t1e400\tx\n"),
        "v.txt:1: field 2 (score): expected a finite number, found \"1e400\" (inf)"
    );
    assert_eq!(
        p(b"1\tgood\tx\n"),
        "v.txt:1: field 2 (score): expected a number, found \"good\""
    );
    assert_eq!(p(b"1\t1\t  \n"), "v.txt:1: field 3 is empty");
    assert_eq!(
        p(b"\n\n"),
        "v.txt: no labelled texts found (2 lines read, 0 skipped, 0 dropped)"
    );
    assert_eq!(
        p(b""),
        "v.txt: no labelled texts found (0 lines read, 0 skipped, 0 dropped)"
    );
    assert_eq!(
        p(b"1\t0\tx\n"),
        "v.txt: no labelled texts found (1 lines read, 0 skipped, 1 dropped)"
    );
}

#[test]
fn tsv_skip_bad_lines_reports_them() {
    let mut file = String::new();
    for k in 1..=30 {
        if k % 2 == 0 {
            file.push_str(&format!("bad line {k}\n"));
        } else {
            file.push_str(&format!("lab\ttext {k}\n"));
        }
    }
    let o = LabelledTsv {
        skip_bad_lines: true,
        ..LabelledTsv::default()
    };
    let r = tsv::parse_labelled(file.as_bytes(), "s.tsv", &o).unwrap();
    assert_eq!(r.records.len(), 15);
    assert_eq!(r.report.skipped, 15);
    assert_eq!(r.report.first_skipped.len(), REPORTED_SKIPS);
    assert_eq!(
        r.report.skipped_lines(),
        [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    );
    assert_eq!(
        r.report.first_skipped[0].message,
        "expected 2 tab-separated fields, found 1"
    );
    assert_eq!(
        r.report.to_string(),
        "s.tsv: 30 lines, 15 records, 15 skipped, 0 dropped (skipped lines 2, 4, 6, 8, 10, 12, \
         14, 16, 18, 20, ...)"
    );
    // Nothing valid at all: still an error, which quotes the first problem.
    assert_eq!(
        msg(tsv::parse_labelled(b"x\ny\n", "s.tsv", &o)),
        "s.tsv: no labelled texts found (2 lines read, 2 skipped, 0 dropped); the first \
         skipped line is 1: expected 2 tab-separated fields, found 1"
    );
}

#[test]
fn tsv_columns_by_name_need_a_header() {
    let file = "id\tstars\treview\n7\t5\tloved it\n";
    let o = LabelledTsv {
        label: "stars".into(),
        text: "review".into(),
        header: true,
        ..LabelledTsv::default()
    };
    let r = tsv::parse_labelled(file.as_bytes(), "h.tsv", &o).unwrap();
    assert_eq!(r.records, vec![lt("5", "loved it", 2)]);
    let o2 = LabelledTsv {
        label: "score".into(),
        ..o.clone()
    };
    assert_eq!(
        msg(tsv::parse_labelled(file.as_bytes(), "h.tsv", &o2)),
        "h.tsv:1: no column 'score' in the header; it has id, stars, review"
    );
    let o3 = LabelledTsv {
        header: false,
        ..o.clone()
    };
    assert!(matches!(
        tsv::parse_labelled(file.as_bytes(), "h.tsv", &o3),
        Err(Error::Config(_))
    ));
    let o4 = LabelledTsv {
        text: 3.into(),
        ..o
    };
    assert_eq!(
        msg(tsv::parse_labelled(file.as_bytes(), "h.tsv", &o4)),
        "h.tsv:1: column index 3 is out of range: the header has 3 fields (id, stars, review)"
    );
}

#[test]
fn readers_read_paths_and_name_missing_files() {
    let dir = TmpDir::new("data-readers");
    let p = dir.path("t.tsv");
    std::fs::write(&p, "a\tb\n").unwrap();
    let r = tsv::read_labelled(&p, &LabelledTsv::default()).unwrap();
    assert_eq!(r.records, vec![lt("a", "b", 1)]);
    assert_eq!(r.report.source, p.display().to_string());
    let missing = dir.path("missing.tsv");
    let e = tsv::read_labelled(&missing, &LabelledTsv::default()).unwrap_err();
    // The operating system's error is the source, typed.
    assert!(matches!(e, Error::File { .. }));
    let source = std::error::Error::source(&e).expect("a source");
    let io = source
        .downcast_ref::<std::io::Error>()
        .expect("an io::Error");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    assert!(e
        .to_string()
        .starts_with(&format!("{}: cannot read", missing.display())));
    std::fs::write(&p, "a\tb\nc\n").unwrap();
    let e = tsv::read_labelled(&p, &LabelledTsv::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:2: expected 2 tab-separated fields, found 1",
            p.display()
        )
    );
}

// ---------------------------------------------------------------------------------------------
// TSV: pairs

#[test]
fn tsv_pairs_with_header_and_chosen_columns() {
    let file = "ref\tolder\tnewer\nA 1:1\tThou art\tYou are\nA 1:2\tYe be\tYou are\n";
    let o = PairTsv {
        source: 1.into(),
        target: "newer".into(),
        header: true,
        ..PairTsv::default()
    };
    let r = tsv::parse_pairs(file.as_bytes(), "p.tsv", &o).unwrap();
    let got: Vec<(&str, &str, usize)> = r
        .records
        .iter()
        .map(|p| (p.source.as_str(), p.target.as_str(), p.line))
        .collect();
    assert_eq!(got, [("Thou art", "You are", 2), ("Ye be", "You are", 3)]);
    assert_eq!(
        msg(tsv::parse_pairs(
            b"ref\tolder\tnewer\nA\tB\t\n",
            "p.tsv",
            &o
        )),
        "p.tsv:2: newer is empty"
    );
    assert_eq!(
        msg(tsv::parse_pairs(b"ref\tolder\tnewer\n", "p.tsv", &o)),
        "p.tsv: no pairs found (1 lines read, 0 skipped, 0 dropped)"
    );
    // Default: source<TAB>target, exactly two fields.
    let r = tsv::parse_pairs(b"abc\tx y z\n", "p.tsv", &PairTsv::default()).unwrap();
    assert_eq!(
        (r.records[0].source.as_str(), r.records[0].target.as_str()),
        ("abc", "x y z")
    );
    let o = PairTsv {
        fields: Some(3),
        ..PairTsv::default()
    };
    assert_eq!(
        msg(tsv::parse_pairs(b"abc\txyz\n", "p.tsv", &o)),
        "p.tsv:1: expected 3 tab-separated fields, found 2"
    );
}

// ---------------------------------------------------------------------------------------------
// JSONL

#[test]
fn jsonl_named_fields() {
    let file = concat!(
        r#"{"group": "g1", "id": "1", "label": "spam", "subject": "Win \"big\"", "body": "Click\nnow"}"#,
        "\n\n",
        r#"{"label": "ham", "subject": "", "body": "Lunch?", "extra": [1, 2]}"#,
        "\r\n",
        r#"{"label": 3, "subject": "x", "body": "y"}"#,
        "\n",
    );
    let o = LabelledJsonl {
        text: vec!["subject".into(), "body".into()],
        separator: " | ".into(),
        ..LabelledJsonl::default()
    };
    let r = jsonl::parse_labelled(file.as_bytes(), "m.jsonl", &o).unwrap();
    assert_eq!(
        r.records,
        vec![
            lt("spam", "Win \"big\" | Click\nnow", 1),
            lt("ham", "Lunch?", 3),
            lt("3", "x | y", 4)
        ]
    );
    let p = |s: &str| msg(jsonl::parse_labelled(s.as_bytes(), "m.jsonl", &o));
    assert_eq!(
        p("{\"label\": \"a\", \"subject\": \"s\"}\n"),
        "m.jsonl:1: no field \"body\" (text)"
    );
    assert_eq!(
        p("{\"label\": \"a\", \"subject\": \"s\", \"body\": null}\n"),
        "m.jsonl:1: field \"body\" (text) must be a string, found null"
    );
    assert_eq!(
        p("{\"label\": 1.5, \"subject\": \"s\", \"body\": \"b\"}\n"),
        "m.jsonl:1: field \"label\" (the label) must be a string, an integer or a boolean, found \
         the number 1.5"
    );
    assert_eq!(
        p("{\"label\": \"a\", \"subject\": \"\", \"body\": \" \"}\n"),
        "m.jsonl:1: the text (subject, body) is empty"
    );
    assert_eq!(
        p("[1, 2]\n"),
        "m.jsonl:1: expected a JSON object, found an array"
    );
    let e = p("{\"label\": \"a\", \"subject\": \"s\", \"body\": \"b\"}\n{\"label\": \n");
    assert!(e.starts_with("m.jsonl:2: invalid JSON: "), "{e}");
    assert_eq!(
        msg(jsonl::parse_labelled(
            b"{\"label\": \"\xC3\xA9\", \"subject\": \"s\", \"body\": \"b\xFF\"}\n",
            "m.jsonl",
            &o
        )),
        "m.jsonl:1: invalid UTF-8 at byte 43 of the line (byte 0xFF)"
    );
}

// ---------------------------------------------------------------------------------------------
// sktime .ts

const TS: &str = "# A comment\n\
#\n\
@problemName Toy\n\
@timeStamps false\n\
@missing false\n\
@univariate false\n\
@dimensions 2\n\
@equalLength false\n\
@classLabel true 1 2 10\n\
@data\n\
1.0,2.0,3.0:-1,-2,-3:2\n\
\n\
0.5:1e-3:10\r\n";

#[test]
fn ts_variable_length_multivariate() {
    let d = ts::parse(TS.as_bytes(), "toy.ts", &TsOptions::default()).unwrap();
    assert_eq!(d.problem_name.as_deref(), Some("Toy"));
    assert_eq!(d.dims, 2);
    assert_eq!(d.class_labels, ["1", "2", "10"]);
    assert_eq!(d.series.len(), 2);
    let s = &d.series[0];
    assert_eq!((s.len, s.label.as_str(), s.line), (3, "2", 11));
    assert_eq!(s.values, [1.0, -1.0, 2.0, -2.0, 3.0, -3.0]);
    let s = &d.series[1];
    assert_eq!((s.len, s.label.as_str(), s.line), (1, "10", 13));
    assert_eq!(s.values, [0.5, 1e-3]);
    assert_eq!(d.report.lines, 13);
    assert_eq!(d.report.records, 2);
}

#[test]
fn ts_errors() {
    let with = |data: &str| format!("@dimensions 2\n@classLabel true a b\n@data\n{data}\n");
    let p = |s: &str| msg(ts::parse(s.as_bytes(), "x.ts", &TsOptions::default()));
    assert_eq!(
        p(&with("1,2:3,4:a\n1,2:a")),
        "x.ts:5: expected 2 dimensions and a class label separated by ':', found 1 dimensions"
    );
    assert_eq!(
        p(&with("1,2:3:a")),
        "x.ts:4: dimension 2 has 1 values but dimension 1 has 2: every dimension of a series \
         must have the same length"
    );
    assert_eq!(
        p(&with("1,2:3,4:c")),
        "x.ts:4: class label \"c\" is not one of @classLabel (a b)"
    );
    assert_eq!(
        p(&with("1,?:3,4:a")),
        "x.ts:4: dimension 1, value 2: missing value '?'"
    );
    assert_eq!(
        p(&with("1,2:3,nan:a")),
        "x.ts:4: dimension 2, value 2: expected a finite number, found \"nan\" (NaN)"
    );
    assert_eq!(
        p(&with("1,2:3,,4:a")),
        "x.ts:4: dimension 2, value 2: missing value (empty field)"
    );
    assert_eq!(
        p(&with("1,2:a")),
        "x.ts:4: expected 2 dimensions and a class label separated by ':', found 1 dimensions"
    );
    assert_eq!(p(&with(":3,4:a")), "x.ts:4: dimension 1 is empty");
    assert_eq!(
        p("@classLabel true a\n1,2:a\n"),
        "x.ts:2: expected a header line (@...) or @data before the series, found \"1,2:a\""
    );
    assert_eq!(
        p("@classLabel true a\n"),
        "x.ts: no @data line: not a .ts file?"
    );
    assert_eq!(
        p("@data\n1:a\n"),
        "x.ts:1: @data before @classLabel true ...: the class labels are not given"
    );
    assert_eq!(
        p("@timeStamps true\n"),
        "x.ts:1: @timeStamps true: series with time stamps are not supported"
    );
    assert_eq!(
        p("@colour red\n"),
        "x.ts:1: unknown header line @\"colour\""
    );
    assert_eq!(
        p("@dimensions -1\n"),
        "x.ts:1: @dimensions: expected a positive integer, found \"-1\""
    );
    assert_eq!(
        p("@classLabel true a a\n"),
        "x.ts:1: @classLabel lists the label \"a\" twice"
    );
    assert_eq!(
        p("@equalLength true\n@seriesLength 3\n@classLabel true a\n@data\n1,2:a\n"),
        "x.ts:5: expected 3 values per dimension (@seriesLength), found 2"
    );
    assert_eq!(
        p(&with("1,2:3,4:a\n@data")),
        "x.ts:5: header line \"@data\" after @data"
    );
    assert_eq!(
        p(&with("")),
        "x.ts: no series found (4 lines read, 0 skipped, 0 dropped)"
    );
    // Without @dimensions, the first series sets the number of dimensions.
    let d = ts::parse(
        b"@classLabel true a\n@data\n1:2:3:a\n4:5:6:a\n",
        "x.ts",
        &TsOptions::default(),
    )
    .unwrap();
    assert_eq!(d.dims, 3);
    assert_eq!(
        p("@classLabel true a\n@data\n1:2:3:a\n4:5:a\n"),
        "x.ts:4: expected 3 dimensions and a class label separated by ':', found 2 dimensions"
    );
    // Skipping: the bad series go, the good ones stay.
    let o = TsOptions {
        skip_bad_lines: true,
    };
    let d = ts::parse(
        with("1,2:3,4:a\n1:2:3:b\n5:6:b\n1:\u{0}:a").as_bytes(),
        "x.ts",
        &o,
    )
    .unwrap();
    assert_eq!(d.series.iter().map(|s| s.line).collect::<Vec<_>>(), [4, 6]);
    assert_eq!(d.report.skipped_lines(), [5, 7]);
}

// ---------------------------------------------------------------------------------------------
// CoNLL-U

const CONLLU: &str = "# newdoc id = d1\n\
# sent_id = d1-0001\n\
# text = They didn't go.\n\
1\tThey\tthey\tPRON\tPRP\t_\t3\tnsubj\t_\t_\n\
2-3\tdidn't\t_\t_\t_\t_\t_\t_\t_\t_\n\
2\tdid\tdo\tAUX\tVBD\t_\t4\taux\t_\t_\n\
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_\n\
4\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\tSpaceAfter=No\n\
4.1\tgone\tgo\tVERB\tVBN\t_\t_\t_\t4:conj\t_\n\
5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_\n\
\n\
# sent_id = d1-0002\n\
1\tYes\tyes\tINTJ\tUH\t_\t0\troot\t_\t_\n";

#[test]
fn conllu_words_skip_ranges_and_empty_nodes() {
    let r = conllu::parse(CONLLU.as_bytes(), "x.conllu", &ConlluOptions::default()).unwrap();
    assert_eq!(r.records.len(), 2);
    let s = &r.records[0];
    assert_eq!(s.id.as_deref(), Some("d1-0001"));
    assert_eq!(s.line, 4);
    assert_eq!(s.forms(), ["They", "did", "n't", "go", "."]);
    assert_eq!(s.upos(), ["PRON", "AUX", "PART", "VERB", "PUNCT"]);
    assert_eq!(s.xpos(), ["PRP", "VBD", "RB", "VB", "."]);
    let spaces: Vec<bool> = s.tokens.iter().map(|t| t.space_after).collect();
    assert_eq!(spaces, [true, true, true, false, true]);
    let s = &r.records[1];
    assert_eq!(
        (s.id.as_deref(), s.line, s.forms()),
        (Some("d1-0002"), 13, vec!["Yes"])
    );
    assert_eq!(r.report.lines, 13);
}

#[test]
fn conllu_errors_and_skipping() {
    let p = |s: &str| {
        msg(conllu::parse(
            s.as_bytes(),
            "x.conllu",
            &ConlluOptions::default(),
        ))
    };
    assert_eq!(
        p("1\ta\ta\tX\tX\t_\t0\troot\t_\n"),
        "x.conllu:1: expected 10 tab-separated fields, found 9"
    );
    assert_eq!(
        p("1\ta\ta\tX\tX\t_\t0\troot\t_\t_\n3\tb\tb\tX\tX\t_\t1\tdep\t_\t_\n"),
        "x.conllu:2: expected word ID 2, found \"3\""
    );
    assert_eq!(
        p("x\ta\ta\tX\tX\t_\t0\troot\t_\t_\n"),
        "x.conllu:1: ID (field 1) must be an integer, a range like 3-4 or an empty node like \
         8.1, found \"x\""
    );
    assert_eq!(
        p("1\ta\ta\t\tX\t_\t0\troot\t_\t_\n"),
        "x.conllu:1: UPOS (field 4) is empty"
    );
    assert_eq!(
        p("# only comments\n\n"),
        "x.conllu: no sentences found (2 lines read, 0 skipped, 0 dropped)"
    );
    // A bad line drops its whole sentence.
    let bad = CONLLU.replace("2\tdid\tdo\tAUX", "2\tdid\tAUX");
    assert_eq!(
        p(&bad),
        "x.conllu:6: expected 10 tab-separated fields, found 9"
    );
    let o = ConlluOptions {
        skip_bad_lines: true,
    };
    let r = conllu::parse(bad.as_bytes(), "x.conllu", &o).unwrap();
    assert_eq!(r.records.len(), 1);
    assert_eq!(r.records[0].id.as_deref(), Some("d1-0002"));
    assert_eq!(r.report.skipped_lines(), [6]);
}

#[test]
fn conllu_inflectional_groups_merge_into_words() {
    // Three groups of one word (the first two attached by `ig`), then a plain word.
    let file = "1\tAçık\taçık\tNOUN\tNN\t_\t2\tig\t_\tSpaceAfter=No\n\
                2\tla\t_\tVERB\tVB\t_\t3\tig\t_\tSpaceAfter=No\n\
                3\tyan\t_\tADJ\tVJ\t_\t4\trcmod\t_\t_\n\
                4\tsoru\tsoru\tNOUN\tNN\t_\t0\troot\t_\t_\n";
    let r = conllu::parse(file.as_bytes(), "tr.conllu", &ConlluOptions::default()).unwrap();
    let m = r.records[0].merge_inflectional_groups();
    assert_eq!(m.forms(), ["Açıklayan", "soru"]);
    assert_eq!(m.upos(), ["ADJ", "NOUN"]);
    assert_eq!(m.xpos(), ["VJ", "NN"]);
}

// ---------------------------------------------------------------------------------------------
// CMUdict

#[test]
fn cmudict_entries_variants_and_comments() {
    let file = ";;; # CMUdict  --  Major Version: 0.07\n\
                'bout B AW1 T\n\
                read R IY1 D\n\
                read(2) R EH1 D # past\n\
                \n\
                d'artagnan D AH0 R T AE1 NG Y AH0 N # foreign french\n";
    let r = cmudict::parse(file.as_bytes(), "c.dict", &CmudictOptions::default()).unwrap();
    let got: Vec<(&str, u32, String, usize)> = r
        .records
        .iter()
        .map(|p| (p.word.as_str(), p.variant, p.phones.join(" "), p.line))
        .collect();
    assert_eq!(
        got,
        [
            ("'bout", 1, "B AW1 T".to_string(), 2),
            ("read", 1, "R IY1 D".to_string(), 3),
            ("read", 2, "R EH1 D".to_string(), 4),
            ("d'artagnan", 1, "D AH0 R T AE1 NG Y AH0 N".to_string(), 6)
        ]
    );
    let p = |s: &str| {
        msg(cmudict::parse(
            s.as_bytes(),
            "c.dict",
            &CmudictOptions::default(),
        ))
    };
    assert_eq!(p("a AH0\nb\n"), "c.dict:2: \"b\" has no phones");
    assert_eq!(
        p("cat K AE3 T\n"),
        "c.dict:1: \"cat\": expected phones like AH0 or NG (upper-case letters and an optional \
         stress digit 0-2), found \"AE3\""
    );
    assert_eq!(
        p("a(x) AH0\n"),
        "c.dict:1: alternative pronunciation \"a(x)\": expected word(n) with n >= 2"
    );
    assert_eq!(
        p(";;; nothing\n"),
        "c.dict: no pronunciations found (1 lines read, 0 skipped, 0 dropped)"
    );
}

// ---------------------------------------------------------------------------------------------
// CSV

#[test]
fn csv_columns_by_name_and_index() {
    let file = "\"YEAR\",\"A\",\"B\"\n1700,5,0.5\n1701,\"11\",1e1\n";
    let t = csv::parse(
        file.as_bytes(),
        "y.csv",
        &CsvOptions::columns(vec!["B".into(), 1.into()]),
    )
    .unwrap();
    assert_eq!(t.names, ["B", "A"]);
    assert_eq!(t.values, [0.5, 5.0, 10.0, 11.0]);
    assert_eq!(t.rows(), 2);
    assert_eq!(t.column(0), [0.5, 10.0]);
    assert_eq!(t.column(1), [5.0, 11.0]);
    assert_eq!(t.lines, [2, 3]);
    // The other columns may hold anything.
    let t = csv::parse(b"date,v\n1999-01-01,1\n", "d.csv", &CsvOptions::column("v")).unwrap();
    assert_eq!(t.values, [1.0]);
    // No header: by index only, the first line sets the field count.
    let o = CsvOptions {
        header: false,
        delimiter: ';',
        ..CsvOptions::column(2)
    };
    let t = csv::parse(b"1;2;3\n4;5;6\n", "n.csv", &o).unwrap();
    assert_eq!(
        (t.names.clone(), t.values.clone()),
        (vec!["field 3".to_string()], vec![3.0, 6.0])
    );
    assert_eq!(
        msg(csv::parse(b"1;2;3\n4;5\n", "n.csv", &o)),
        "n.csv:2: expected 3 fields separated by ';', found 2"
    );
}

#[test]
fn csv_errors() {
    let o = CsvOptions::column("co2");
    let p = |s: &str| msg(csv::parse(s.as_bytes(), "c.csv", &o));
    assert_eq!(
        p("date,co2\n1,316.1\n2,\n"),
        "c.csv:3: column 'co2' (field 2): missing value (empty field)"
    );
    assert_eq!(
        p("date,co2\n1,inf\n"),
        "c.csv:2: column 'co2' (field 2): expected a finite number, found \"inf\" (inf)"
    );
    assert_eq!(
        p("date,co2\n1,NA\n"),
        "c.csv:2: column 'co2' (field 2): expected a number, found \"NA\""
    );
    assert_eq!(
        p("date,co2\n1,2,3\n"),
        "c.csv:2: expected 2 fields separated by ',', found 3"
    );
    assert_eq!(
        p("date,co2\n1,\"2\n"),
        "c.csv:2: field 2: unterminated quote"
    );
    assert_eq!(
        p("date,co2\n1,\"2\"x\n"),
        "c.csv:2: field 2: text after the closing quote"
    );
    assert_eq!(
        p("date,co\n"),
        "c.csv:1: no column 'co2' in the header; it has date, co"
    );
    assert_eq!(p(""), "c.csv: empty file: expected a header line");
    assert_eq!(
        p("date,co2\n"),
        "c.csv: no rows found (1 lines read, 0 skipped, 0 dropped)"
    );
    let by_index = CsvOptions::column(1);
    assert_eq!(
        msg(csv::parse(b"date,co2\n1,x\n", "c.csv", &by_index)),
        "c.csv:2: column 'co2' (field 2): expected a number, found \"x\""
    );
    // Skipping rows with missing values.
    let o = CsvOptions {
        skip_bad_lines: true,
        ..CsvOptions::column("co2")
    };
    let t = csv::parse(b"date,co2\n1,1.5\n2,\n3,2.5\n4,\n", "c.csv", &o).unwrap();
    assert_eq!(t.values, [1.5, 2.5]);
    assert_eq!(t.lines, [2, 4]);
    assert_eq!(t.report.skipped_lines(), [3, 5]);
}

// ---------------------------------------------------------------------------------------------
// Tokenizers

#[test]
fn word_tokenizer_rules() {
    let t = WordTokenizer::default();
    let cases: &[(&str, &[&str])] = &[
        ("Hello, world!", &["hello", ",", "world", "!"]),
        ("I don't know.", &["i", "do", "n't", "know", "."]),
        ("can't won't", &["ca", "n't", "wo", "n't"]),
        (
            "It's John's; we're here, I'm sure",
            &[
                "it", "'s", "john", "'s", ";", "we", "'re", "here", ",", "i", "'m", "sure",
            ],
        ),
        (
            "they'll they've he'd",
            &["they", "'ll", "they", "'ve", "he", "'d"],
        ),
        ("shouldn't've", &["should", "n't", "'ve"]),
        ("DON\u{2019}T", &["do", "n\u{2019}t"]),
        (
            "o'clock rock'n'roll y'all",
            &["o'clock", "rock'n'roll", "y'all"],
        ),
        (
            "'em dogs' 'quoted'",
            &["'", "em", "dogs", "'", "'", "quoted", "'"],
        ),
        (
            "well-known co-op COVID-19 -x a- b",
            &["well-known", "co-op", "covid-19", "-", "x", "a", "-", "b"],
        ),
        (
            "3.14 1,000,000 3. 1,",
            &["3.14", "1,000,000", "3", ".", "1", ","],
        ),
        ("Wait... what?!", &["wait", "...", "what", "?", "!"]),
        ("a--b", &["a", "--", "b"]),
        ("café naïve Straße", &["café", "naïve", "straße"]),
        ("cafe\u{301} x", &["cafe\u{301}", "x"]),
        ("  \t\n ", &[]),
        ("", &[]),
    ];
    for (text, want) in cases {
        assert_eq!(t.tokenize(text), *want, "{text:?}");
    }
    let keep = WordTokenizer {
        lowercase: false,
        contractions: Contractions::Keep,
    };
    assert_eq!(
        keep.tokenize("I don't know, it's John's."),
        ["I", "don't", "know", ",", "it's", "John's", "."]
    );
}

#[test]
fn char_tokenizer() {
    assert_eq!(chars("Ab c", false), ["A", "b", " ", "c"]);
    assert_eq!(chars("ÀB", true), ["à", "b"]);
    // Scalar values, not grapheme clusters: e + combining acute accent is two tokens.
    assert_eq!(chars("e\u{301}", false), ["e", "\u{301}"]);
    let t = Tokenizer::Chars { lowercase: true };
    assert_eq!(t.tokenize("Hi!"), ["h", "i", "!"]);
    let w = Tokenizer::Words(WordTokenizer::default());
    assert_eq!(w.tokenize("Hi!"), ["hi", "!"]);
}

// ---------------------------------------------------------------------------------------------
// Vocabularies

#[test]
fn token_vocab_order_min_freq_and_max_size() {
    // Counts: b 3, a 2, c 2, <eos> 2 (a special: not added again), d 1.
    let data = vec![
        vec!["b", "a", "c", "b"],
        vec!["d", "c", "a", "b", "<eos>", "<eos>"],
    ];
    let v = TokenVocab::build(&data, 1, None).unwrap();
    assert_eq!(
        v.tokens(),
        ["<pad>", "<unk>", "<bos>", "<eos>", "b", "a", "c", "d"]
    );
    assert_eq!(v.tokens()[..4], SPECIALS);
    assert_eq!(
        (
            TokenVocab::PAD,
            TokenVocab::UNK,
            TokenVocab::BOS,
            TokenVocab::EOS
        ),
        (0, 1, 2, 3)
    );
    let v2 = TokenVocab::build(&data, 2, None).unwrap();
    assert_eq!(v2.tokens()[4..], ["b", "a", "c"]);
    let v3 = TokenVocab::build(&data, 1, Some(6)).unwrap();
    assert_eq!(v3.tokens()[4..], ["b", "a"]);
    assert_eq!(v3.len(), 6);
    assert!(matches!(
        TokenVocab::build(&data, 0, None),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        TokenVocab::build(&data, 1, Some(3)),
        Err(Error::Config(_))
    ));
    // The order does not depend on the order of the data.
    let mut rev: Vec<Vec<&str>> = data
        .iter()
        .map(|s| s.iter().rev().copied().collect())
        .collect();
    rev.reverse();
    assert_eq!(TokenVocab::build(&rev, 1, None).unwrap(), v);

    assert_eq!(v.encode(&["a", "zzz", "d"]), [5, TokenVocab::UNK, 7]);
    assert_eq!(v.encode_with_bounds(&["c"]), [2, 6, 3]);
    assert_eq!(v.count_unknown(&["a", "q", "r"]), 2);
    assert_eq!(v.decode(&[4, 7, 99, 1]), ["b", "d", "<unk>", "<unk>"]);
    assert_eq!(
        (v.get("c"), v.get("zzz"), v.token(6), v.token(8)),
        (Some(6), None, Some("c"), None)
    );
    let v4 = TokenVocab::from_tokens(&["x", "y"]).unwrap();
    assert_eq!(v4.id("y"), 5);
    assert!(TokenVocab::from_tokens(&["x", "x"]).is_err());
    assert!(TokenVocab::from_tokens(&["<pad>"]).is_err());
}

#[test]
fn token_vocab_json_round_trip_and_errors() {
    let dir = TmpDir::new("token-vocab");
    let v = TokenVocab::build(&[vec!["é", "\"q\"", "\n", "a"]], 1, None).unwrap();
    let p = dir.path("vocab.json");
    v.save(&p).unwrap();
    assert_eq!(TokenVocab::load(&p).unwrap(), v);
    let json: serde_json::Value = serde_json::from_str(&v.to_json()).unwrap();
    assert_eq!(json["type"], "tokens");
    assert_eq!(json["tokens"][4], "\n");

    let e = |s: &str| msg(TokenVocab::from_json(s, "v.json"));
    assert!(e("{").starts_with("v.json: not a token vocabulary: invalid JSON"));
    assert_eq!(
        e(r#"{"type": "char", "tokens": []}"#),
        "v.json: not a token vocabulary: expected \"type\": \"tokens\""
    );
    let specials = r#""specials": ["<pad>", "<unk>", "<bos>", "<eos>"]"#;
    assert_eq!(
        e(&format!(
            r#"{{"type": "tokens", {specials}, "tokens": ["<pad>", "<unk>", "<bos>", "<eos>", "a", "a"]}}"#
        )),
        "v.json: not a token vocabulary: \"a\" occurs twice (at 4 and 5)"
    );
    assert_eq!(
        e(&format!(
            r#"{{"type": "tokens", {specials}, "tokens": ["<unk>", "<pad>", "<bos>", "<eos>"]}}"#
        )),
        "v.json: not a token vocabulary: \"tokens\" must start with the specials [\"<pad>\", \
         \"<unk>\", \"<bos>\", \"<eos>\"]"
    );
    assert_eq!(
        e(&format!(
            r#"{{"type": "tokens", {specials}, "tokens": ["<pad>", "<unk>", "<bos>", "<eos>", 5]}}"#
        )),
        "v.json: not a token vocabulary: tokens[4] is not a string"
    );
    std::fs::write(&p, b"{\"type\": \"tok\xffens\"}").unwrap();
    assert_eq!(
        msg(TokenVocab::load(&p)),
        format!("{}: invalid UTF-8 at byte 14", p.display())
    );
    let missing = dir.path("none.json");
    assert!(
        msg(TokenVocab::load(&missing)).starts_with(&format!("{}: cannot read", missing.display()))
    );
}

#[test]
fn label_set_sorted_with_clear_unknown_errors() {
    let l = LabelSet::from_labels(["10", "2", "1", "2", "10"]).unwrap();
    assert_eq!(l.names(), ["1", "2", "10"]);
    let l = LabelSet::from_labels(["spam", "ham", "spam"]).unwrap();
    assert_eq!(l.names(), ["ham", "spam"]);
    assert_eq!(
        (l.id("spam").unwrap(), l.name(0), l.name(2)),
        (1, Some("ham"), None)
    );
    assert_eq!(l.encode(&["spam", "ham"]).unwrap(), [1, 0]);
    assert_eq!(
        msg(l.encode(&["ham", "eggs"])),
        "unknown label \"eggs\"; the known labels are: ham, spam"
    );
    let many = LabelSet::from_labels((0..30).map(|k| format!("c{k:02}"))).unwrap();
    let e = msg(many.id("x"));
    assert!(e.ends_with("c18, c19, ... (30 in all)"), "{e}");
    assert!(LabelSet::from_labels(Vec::<String>::new()).is_err());
    assert!(LabelSet::from_labels([""]).is_err());
    assert!(LabelSet::new(vec!["a".into(), "a".into()]).is_err());
    // Given order is kept by `new`.
    assert_eq!(
        LabelSet::new(vec!["z".into(), "a".into()])
            .unwrap()
            .id("a")
            .unwrap(),
        1
    );

    let dir = TmpDir::new("label-set");
    let p = dir.path("labels.json");
    l.save(&p).unwrap();
    assert_eq!(LabelSet::load(&p).unwrap(), l);
    assert_eq!(
        msg(LabelSet::from_json(
            r#"{"type": "labels", "labels": ["a", "a"]}"#,
            "l.json"
        )),
        "l.json: not a label set: label set: \"a\" occurs twice (at 0 and 1)"
    );
    assert_eq!(
        msg(LabelSet::from_json(r#"{"type": "labels"}"#, "l.json")),
        "l.json: not a label set: no \"labels\" list"
    );
}
