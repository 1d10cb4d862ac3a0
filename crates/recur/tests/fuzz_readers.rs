//! Property tests (proptest) of every reader of `recur::data`, of `TensorFile::from_bytes`
//! and of the vocabulary files:
//! - valid generated files round-trip: parsing gives back exactly the records written;
//! - arbitrary bytes, and valid files with one line mutated (truncated, extra tabs or
//!   separators, invalid UTF-8, NaN / infinity / huge numbers, deleted bytes), never panic:
//!   the reader either parses or returns an error that names the source and, when it names a
//!   line, a line that exists and is not before the mutated one; with `skip_bad_lines` the
//!   report is consistent;
//! - no call allocates more than 64 MiB at once (the tracking allocator measures the peak),
//!   even for safetensors headers that claim huge tensors.
//!
//! The number of cases per property is small by default (the file runs in seconds);
//! `PROPTEST_CASES=N` sets it for a long run (docs/fuzzing.md).

use proptest::prelude::*;
#[path = "../../../tests/support/proptest_cases.rs"]
mod proptest_cases;
use proptest::sample::Index;
use proptest_cases::config;
use recur::data::cmudict::{self, CmudictOptions};
use recur::data::conllu::{self, ConlluOptions};
use recur::data::csv::{self, CsvOptions};
use recur::data::jsonl::{self, LabelledJsonl};
use recur::data::text::Vocab;
use recur::data::tokenize::{chars, Contractions, WordTokenizer};
use recur::data::ts::{self, TsOptions};
use recur::data::tsv::{self, LabelledTsv, PairTsv, ScoreLabels};
use recur::data::vocab::{LabelSet, TokenVocab};
use recur::data::{LabelledText, ReadReport, REPORTED_SKIPS};
use recur::io::state_dict::{serialize_tensors, OutTensor, TensorFile};
use recur::Error;
use recur_kernels::alloc::{current_bytes, peak_bytes, reset_peak, Tracking};

#[global_allocator]
static A: Tracking = Tracking;

/// The source name given to every parser.
const SRC: &str = "fuzz.in";

/// Most bytes one call may allocate at once.
const MAX_ALLOC: usize = 64 << 20;

/// Runs `f`, checking that the allocation peak it causes stays under [`MAX_ALLOC`].
fn bounded<R>(f: impl FnOnce() -> R) -> R {
    let before = current_bytes();
    reset_peak();
    let r = f();
    let grew = peak_bytes().saturating_sub(before);
    assert!(grew < MAX_ALLOC, "one call allocated {grew} bytes at once");
    r
}

/// The number of lines the readers see in `bytes`.
fn count_lines(bytes: &[u8]) -> usize {
    if bytes.is_empty() {
        return 0;
    }
    let n = bytes.split(|&b| b == b'\n').count();
    n - usize::from(bytes.ends_with(b"\n"))
}

/// Checks that an error names [`SRC`] and, if it names a line, that the line exists; returns
/// the line.
fn error_line(e: &Error, lines: usize) -> Option<usize> {
    let m = e.to_string();
    let rest = m
        .strip_prefix(SRC)
        .unwrap_or_else(|| panic!("the error does not name the source: {m}"));
    if let Some(r) = rest.strip_prefix(':') {
        let digits: String = r.chars().take_while(|c| c.is_ascii_digit()).collect();
        if !digits.is_empty() && r[digits.len()..].starts_with(": ") {
            let line: usize = digits.parse().unwrap();
            assert!(
                (1..=lines.max(1)).contains(&line),
                "the error names line {line} of {lines}: {m}"
            );
            return Some(line);
        }
        if r.starts_with(' ') {
            return None;
        }
        panic!("malformed error message: {m}");
    }
    None
}

/// Checks the report of a successful read.
fn check_report(r: &ReadReport, records: usize, lines: usize) {
    assert_eq!(r.source, SRC);
    assert_eq!(r.records, records);
    assert!(records > 0, "an empty data set must be an error");
    assert_eq!(r.lines, lines);
    assert_eq!(r.first_skipped.len(), r.skipped.min(REPORTED_SKIPS));
    let sl = r.skipped_lines();
    assert!(sl.windows(2).all(|w| w[0] < w[1]), "{sl:?}");
    assert!(sl.iter().all(|&l| (1..=lines).contains(&l)), "{sl:?}");
}

/// A reader under test: parses bytes with or without `skip_bad_lines` and returns its
/// report (after checking the report against the records it returned).
type Reader = fn(&[u8], bool) -> recur::Result<ReadReport>;

/// Parses `bytes` strictly and with `skip_bad_lines`: no panic, bounded allocation, errors
/// naming a line at or after `first_bad` (the first line that may be malformed), and a strict
/// success implies the same report when skipping.
fn check_reader(read: Reader, bytes: &[u8], first_bad: usize) {
    let lines = count_lines(bytes);
    let strict = bounded(|| read(bytes, false));
    let lenient = bounded(|| read(bytes, true));
    match &strict {
        Ok(r) => {
            assert_eq!(r.skipped, 0);
            assert_eq!(
                lenient.as_ref().ok(),
                Some(r),
                "strict and lenient reads differ"
            );
        }
        Err(e) => {
            if let Some(l) = error_line(e, lines) {
                assert!(
                    l >= first_bad,
                    "error at line {l}, before line {first_bad}: {e}"
                );
            }
        }
    }
    match &lenient {
        Ok(r) => assert!(r.skipped_lines().iter().all(|&l| l >= first_bad)),
        Err(e) => {
            if let Some(l) = error_line(e, lines) {
                assert!(
                    l >= first_bad,
                    "error at line {l}, before line {first_bad}: {e}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The readers, as `Reader`s.

fn vader_opts(skip: bool) -> LabelledTsv {
    LabelledTsv {
        label: 1.into(),
        text: 2.into(),
        score: Some(ScoreLabels::sign("pos", "neg")),
        skip_bad_lines: skip,
        ..LabelledTsv::default()
    }
}
fn read_vader(b: &[u8], skip: bool) -> recur::Result<ReadReport> {
    let r = tsv::parse_labelled(b, SRC, &vader_opts(skip))?;
    check_report(&r.report, r.records.len(), count_lines(b));
    Ok(r.report)
}
fn read_labelled_tsv(b: &[u8], skip: bool) -> recur::Result<ReadReport> {
    let o = LabelledTsv {
        skip_bad_lines: skip,
        ..LabelledTsv::default()
    };
    let r = tsv::parse_labelled(b, SRC, &o)?;
    check_report(&r.report, r.records.len(), count_lines(b));
    Ok(r.report)
}
fn pair_opts(skip: bool) -> PairTsv {
    PairTsv {
        source: "src".into(),
        target: "tgt".into(),
        header: true,
        skip_bad_lines: skip,
        ..PairTsv::default()
    }
}
fn read_pairs(b: &[u8], skip: bool) -> recur::Result<ReadReport> {
    let r = tsv::parse_pairs(b, SRC, &pair_opts(skip))?;
    check_report(&r.report, r.records.len(), count_lines(b));
    Ok(r.report)
}
fn jsonl_opts(skip: bool) -> LabelledJsonl {
    LabelledJsonl {
        text: vec!["subject".into(), "body".into()],
        skip_bad_lines: skip,
        ..LabelledJsonl::default()
    }
}
fn read_jsonl(b: &[u8], skip: bool) -> recur::Result<ReadReport> {
    let r = jsonl::parse_labelled(b, SRC, &jsonl_opts(skip))?;
    check_report(&r.report, r.records.len(), count_lines(b));
    Ok(r.report)
}
fn read_ts(b: &[u8], skip: bool) -> recur::Result<ReadReport> {
    let d = ts::parse(
        b,
        SRC,
        &TsOptions {
            skip_bad_lines: skip,
        },
    )?;
    check_report(&d.report, d.series.len(), count_lines(b));
    for s in &d.series {
        assert_eq!(s.values.len(), s.len * d.dims);
        assert!(s.values.iter().all(|v| v.is_finite()));
        assert!(d.class_labels.contains(&s.label));
    }
    Ok(d.report)
}
fn read_conllu(b: &[u8], skip: bool) -> recur::Result<ReadReport> {
    let r = conllu::parse(
        b,
        SRC,
        &ConlluOptions {
            skip_bad_lines: skip,
        },
    )?;
    check_report(&r.report, r.records.len(), count_lines(b));
    for s in &r.records {
        assert!(!s.tokens.is_empty());
        assert!(s
            .tokens
            .iter()
            .all(|t| !t.form.is_empty() && !t.upos.is_empty()));
        let m = s.merge_inflectional_groups();
        assert!(m.tokens.len() <= s.tokens.len() && !m.tokens.is_empty());
    }
    Ok(r.report)
}
fn read_cmudict(b: &[u8], skip: bool) -> recur::Result<ReadReport> {
    let r = cmudict::parse(
        b,
        SRC,
        &CmudictOptions {
            skip_bad_lines: skip,
        },
    )?;
    check_report(&r.report, r.records.len(), count_lines(b));
    assert!(r
        .records
        .iter()
        .all(|p| !p.phones.is_empty() && p.variant >= 1));
    Ok(r.report)
}
fn read_csv(b: &[u8], skip: bool) -> recur::Result<ReadReport> {
    let o = CsvOptions {
        skip_bad_lines: skip,
        ..CsvOptions::columns(vec!["c1".into(), 0.into()])
    };
    let t = csv::parse(b, SRC, &o)?;
    check_report(&t.report, t.rows(), count_lines(b));
    assert_eq!(t.values.len(), t.rows() * 2);
    assert!(t.values.iter().all(|v| v.is_finite()));
    Ok(t.report)
}

// ---------------------------------------------------------------------------------------------
// Generators of valid content.

/// A field: any characters but tab, line breaks and the byte-order mark, trimmed, not empty.
fn field() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 1..12).prop_map(|cs| {
        let s: String = cs
            .into_iter()
            .map(|c| match c {
                '\t' | '\n' | '\r' | '\u{FEFF}' => ' ',
                c => c,
            })
            .collect();
        let t = s.trim();
        if t.is_empty() {
            "x".to_string()
        } else {
            t.to_string()
        }
    })
}

fn label() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["pos", "neg", "1", "10", "spam", "ham", "é"]).prop_map(String::from)
}

/// A finite f64 of any magnitude (Display writes it so that it parses back exactly).
fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![
        -10.0f64..10.0,
        any::<f64>().prop_filter("finite", |x| x.is_finite()),
        Just(0.0),
    ]
}

fn join_lines(lines: &[String], crlf: bool, final_newline: bool) -> Vec<u8> {
    let eol = if crlf { "\r\n" } else { "\n" };
    let mut s = lines.join(eol);
    if final_newline {
        s.push_str(eol);
    }
    s.into_bytes()
}

// ---------------------------------------------------------------------------------------------
// Mutations of one line.

#[derive(Clone, Debug)]
enum Mutation {
    Truncate(Index),
    DeleteByte(Index),
    Insert(Index, &'static [u8]),
    ReplaceNumber(Index, &'static str),
}

const JUNK: &[&[u8]] = &[
    b"\xFF",
    b"\xC3",
    b"\xE2\x82",
    b"\x80",
    b"\t",
    b"\t\t",
    b":",
    b"::",
    b",",
    b",,",
    b"\"",
    b" ",
    b"#",
    b"@",
    b"\r",
    b"\x00",
    b"-",
    b"(2)",
    b"'",
    b"{",
    b"}",
    b"[",
    b"1-2",
    b"3.1",
];

const WEIRD_NUMBERS: &[&str] = &[
    "NaN",
    "nan",
    "inf",
    "-inf",
    "infinity",
    "1e999",
    "-1e400",
    "99999999999999999999999999999999999999999",
    "18446744073709551616",
    "4294967296",
    "?",
    "",
    "1.2.3",
    "0x10",
    "1e",
    "--1",
    "\u{FF11}",
    "1e-400",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::Truncate),
        any::<Index>().prop_map(Mutation::DeleteByte),
        (any::<Index>(), prop::sample::select(JUNK)).prop_map(|(i, j)| Mutation::Insert(i, j)),
        (any::<Index>(), prop::sample::select(WEIRD_NUMBERS))
            .prop_map(|(i, w)| Mutation::ReplaceNumber(i, w)),
    ]
}

/// Applies `m` to line `which` of `bytes` (lines split at `\n`); returns the new bytes and
/// the 1-based number of the mutated line.
fn mutate(bytes: &[u8], which: Index, m: &Mutation) -> (Vec<u8>, usize) {
    let mut lines: Vec<Vec<u8>> = bytes.split(|&b| b == b'\n').map(|l| l.to_vec()).collect();
    if bytes.ends_with(b"\n") {
        lines.pop();
    }
    let k = which.index(lines.len());
    let l = &mut lines[k];
    match m {
        Mutation::Truncate(i) => l.truncate(i.index(l.len() + 1)),
        Mutation::DeleteByte(i) => {
            if !l.is_empty() {
                l.remove(i.index(l.len()));
            }
        }
        Mutation::Insert(i, junk) => {
            let at = i.index(l.len() + 1);
            l.splice(at..at, junk.iter().copied());
        }
        Mutation::ReplaceNumber(i, w) => {
            // The maximal runs of number characters that hold a digit.
            let is_num = |b: u8| b.is_ascii_digit() || b"+-.eE".contains(&b);
            let mut runs = Vec::new();
            let mut s = 0;
            while s < l.len() {
                if is_num(l[s]) {
                    let mut e = s;
                    while e < l.len() && is_num(l[e]) {
                        e += 1;
                    }
                    if l[s..e].iter().any(|b| b.is_ascii_digit()) {
                        runs.push((s, e));
                    }
                    s = e;
                } else {
                    s += 1;
                }
            }
            let (a, b) = if runs.is_empty() {
                let at = i.index(l.len() + 1);
                (at, at)
            } else {
                runs[i.index(runs.len())]
            };
            l.splice(a..b, w.bytes());
        }
    }
    let mut out = lines.join(&b'\n');
    if bytes.ends_with(b"\n") {
        out.push(b'\n');
    }
    (out, k + 1)
}

/// Arbitrary bytes; bytes drawn from the characters that structure the formats; and UTF-8
/// text mixing those characters, format keywords and any other characters.
fn format_bytes() -> impl Strategy<Value = Vec<u8>> {
    const ALPHABET: &[u8] = b"\t\t\t\n\n\n\r::,,.#@-_ 0123456789eaAbBN?{}[]\"'()=|\xFF\xC3\xA9";
    const PIECES: &[&str] = &[
        "\t",
        "\n",
        "\r\n",
        ":",
        ",",
        "#",
        " ",
        "@data\n",
        "@classLabel true a b\n",
        "@dimensions 2\n",
        "1",
        "2.5",
        "-3e2",
        "NaN",
        "inf",
        "?",
        "\"",
        "{\"label\": ",
        "}",
        "1-2",
        "3.1",
        "(2)",
        "AH0",
        ";;;",
        "c0,c1\n",
        "ref\tsrc\ttgt\n",
        "SpaceAfter=No",
    ];
    let piece = prop_oneof![
        prop::sample::select(PIECES).prop_map(|s| s.as_bytes().to_vec()),
        any::<char>().prop_map(|c| c.to_string().into_bytes()),
        any::<u8>().prop_map(|b| vec![b]),
    ];
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        prop::collection::vec(prop::sample::select(ALPHABET), 0..300),
        prop::collection::vec(piece, 0..80).prop_map(|p| p.concat()),
    ]
}

// ---------------------------------------------------------------------------------------------
// Valid files and the records they must give.

fn labelled_tsv_file() -> impl Strategy<Value = (Vec<u8>, Vec<LabelledText>)> {
    (
        prop::collection::vec((label(), field()), 1..20),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(recs, crlf, fin)| {
            let lines: Vec<String> = recs.iter().map(|(l, t)| format!("{l}\t{t}")).collect();
            let want = recs
                .into_iter()
                .enumerate()
                .map(|(k, (label, text))| LabelledText {
                    label,
                    text,
                    line: k + 1,
                })
                .collect();
            (join_lines(&lines, crlf, fin), want)
        })
}

/// vader layout `id<TAB>score<TAB>text`, with the labels the scores must give.
fn vader_file() -> impl Strategy<Value = (Vec<u8>, Vec<LabelledText>, usize)> {
    prop::collection::vec((finite(), field()), 1..20).prop_map(|recs| {
        let mut lines = Vec::new();
        let mut want = Vec::new();
        let mut zeros = 0;
        for (k, (score, text)) in recs.into_iter().enumerate() {
            lines.push(format!("{}\t{score}\t{text}", k + 1));
            let label = if score > 0.0 {
                "pos"
            } else if score < 0.0 {
                "neg"
            } else {
                zeros += 1;
                continue;
            };
            want.push(LabelledText {
                label: label.into(),
                text,
                line: k + 1,
            });
        }
        (join_lines(&lines, true, true), want, zeros)
    })
}

fn pairs_file() -> impl Strategy<Value = (Vec<u8>, Vec<(String, String)>)> {
    prop::collection::vec((field(), field()), 1..20).prop_map(|pairs| {
        let mut lines = vec!["ref\tsrc\ttgt".to_string()];
        lines.extend(
            pairs
                .iter()
                .enumerate()
                .map(|(k, (s, t))| format!("r{k}\t{s}\t{t}")),
        );
        (join_lines(&lines, false, true), pairs)
    })
}

fn jsonl_file() -> impl Strategy<Value = (Vec<u8>, Vec<LabelledText>)> {
    prop::collection::vec((label(), field(), field()), 1..15).prop_map(|recs| {
        let mut lines = Vec::new();
        let mut want = Vec::new();
        for (k, (label, subject, body)) in recs.into_iter().enumerate() {
            let v =
                serde_json::json!({"group": "g", "label": label, "subject": subject, "body": body});
            lines.push(v.to_string());
            want.push(LabelledText {
                label,
                text: format!("{subject}\n{body}"),
                line: k + 1,
            });
        }
        (join_lines(&lines, false, true), want)
    })
}

/// A `.ts` file: (bytes, dims, [(values (T, dims), T, label)]).
type TsWant = (Vec<u8>, usize, Vec<(Vec<f64>, usize, String)>);

fn ts_file() -> impl Strategy<Value = TsWant> {
    (1usize..4)
        .prop_flat_map(|dims| {
            let series = prop::collection::vec(
                (1usize..6).prop_flat_map(move |t| {
                    (
                        prop::collection::vec(finite(), t * dims),
                        Just(t),
                        prop::sample::select(vec!["a", "b", "7"]),
                    )
                }),
                1..8,
            );
            (Just(dims), series)
        })
        .prop_map(|(dims, series)| {
            let mut lines = vec![
                "# generated".to_string(),
                "@problemName Gen".to_string(),
                "@timeStamps false".to_string(),
                format!("@dimensions {dims}"),
                "@equalLength false".to_string(),
                "@classLabel true a b 7".to_string(),
                "@data".to_string(),
            ];
            let mut want = Vec::new();
            for (values, t, label) in series {
                let dims_text: Vec<String> = (0..dims)
                    .map(|d| {
                        (0..t)
                            .map(|s| values[s * dims + d].to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .collect();
                lines.push(format!("{}:{label}", dims_text.join(":")));
                want.push((values, t, label.to_string()));
            }
            (join_lines(&lines, false, true), dims, want)
        })
}

/// A CoNLL-U file: (bytes, [(forms, upos)]).
type ConlluWant = (Vec<u8>, Vec<(Vec<String>, Vec<String>)>);

fn conllu_file() -> impl Strategy<Value = ConlluWant> {
    let tag = prop::sample::select(vec!["NOUN", "VERB", "PUNCT", "ADJ", "X"]);
    let word = (field(), tag, any::<u8>());
    prop::collection::vec(prop::collection::vec(word, 1..7), 1..5).prop_map(|sents| {
        let mut lines = Vec::new();
        let mut want = Vec::new();
        for (k, words) in sents.iter().enumerate() {
            lines.push(format!("# sent_id = s{k}"));
            for (i, (form, upos, extra)) in words.iter().enumerate() {
                let id = i + 1;
                if extra % 5 == 0 {
                    lines.push(format!("{id}-{}\t{form}\t_\t_\t_\t_\t_\t_\t_\t_", id + 1));
                }
                let misc = if extra % 3 == 0 { "SpaceAfter=No" } else { "_" };
                lines.push(format!("{id}\t{form}\t_\t{upos}\tXP\t_\t0\tdep\t_\t{misc}"));
                if extra % 7 == 0 {
                    lines.push(format!("{id}.1\te\t_\tX\t_\t_\t_\t_\t{id}:dep\t_"));
                }
            }
            lines.push(String::new());
            want.push((
                words.iter().map(|w| w.0.clone()).collect(),
                words.iter().map(|w| w.1.to_string()).collect(),
            ));
        }
        (join_lines(&lines, false, false), want)
    })
}

/// A pronouncing dictionary: (bytes, [(word, variant, phones)]).
type CmuWant = (Vec<u8>, Vec<(String, u32, Vec<String>)>);

fn cmudict_file() -> impl Strategy<Value = CmuWant> {
    let word = prop::collection::vec(
        prop::sample::select("abcxyz'.-_0123éßü語".chars().collect::<Vec<_>>()),
        1..10,
    )
    .prop_map(|c| c.into_iter().collect::<String>());
    let phones = prop::collection::vec(
        prop::sample::select(vec!["AH0", "B", "K", "AE1", "NG", "IY2", "ZH"])
            .prop_map(String::from),
        1..7,
    );
    prop::collection::vec((word, phones, 1u32..4, any::<bool>()), 1..15).prop_map(|entries| {
        let mut lines = vec![";;; generated".to_string()];
        let mut want = Vec::new();
        for (w, ph, variant, comment) in entries {
            let head = if variant == 1 {
                w.clone()
            } else {
                format!("{w}({variant})")
            };
            let c = if comment { " # note" } else { "" };
            lines.push(format!("{head} {}{c}", ph.join(" ")));
            want.push((w, variant, ph));
        }
        (join_lines(&lines, false, true), want)
    })
}

/// A CSV file with columns c0, c1, ...: (bytes, rows).
fn csv_file() -> impl Strategy<Value = (Vec<u8>, Vec<Vec<f64>>)> {
    (2usize..5)
        .prop_flat_map(|cols| {
            (
                Just(cols),
                prop::collection::vec(prop::collection::vec(finite(), cols), 1..15),
                any::<bool>(),
            )
        })
        .prop_map(|(cols, rows, quote)| {
            let names: Vec<String> = (0..cols)
                .map(|c| {
                    if quote {
                        format!("\"c{c}\"")
                    } else {
                        format!("c{c}")
                    }
                })
                .collect();
            let mut lines = vec![names.join(",")];
            lines.extend(rows.iter().map(|r| {
                r.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            }));
            (join_lines(&lines, false, true), rows)
        })
}

// ---------------------------------------------------------------------------------------------
// Properties of the readers.

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn labelled_tsv_round_trips((bytes, want) in labelled_tsv_file()) {
        let r = tsv::parse_labelled(&bytes, SRC, &LabelledTsv::default()).unwrap();
        prop_assert_eq!(r.records, want);
    }

    #[test]
    fn vader_tsv_round_trips((bytes, want, zeros) in vader_file()) {
        match tsv::parse_labelled(&bytes, SRC, &vader_opts(false)) {
            Ok(r) => {
                prop_assert_eq!(r.records, want);
                prop_assert_eq!(r.report.dropped, zeros);
            }
            Err(e) => {
                // Only when every score is zero.
                prop_assert!(want.is_empty(), "{}", e);
            }
        }
    }

    #[test]
    fn pairs_tsv_round_trips((bytes, want) in pairs_file()) {
        let r = tsv::parse_pairs(&bytes, SRC, &pair_opts(false)).unwrap();
        let got: Vec<(String, String)> =
            r.records.into_iter().map(|p| (p.source, p.target)).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn jsonl_round_trips((bytes, want) in jsonl_file()) {
        let r = jsonl::parse_labelled(&bytes, SRC, &jsonl_opts(false)).unwrap();
        prop_assert_eq!(r.records, want);
    }

    #[test]
    fn ts_round_trips((bytes, dims, want) in ts_file()) {
        let d = ts::parse(&bytes, SRC, &TsOptions::default()).unwrap();
        prop_assert_eq!(d.dims, dims);
        let got: Vec<(Vec<f64>, usize, String)> =
            d.series.into_iter().map(|s| (s.values, s.len, s.label)).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn conllu_round_trips((bytes, want) in conllu_file()) {
        let r = conllu::parse(&bytes, SRC, &ConlluOptions::default()).unwrap();
        let got: Vec<(Vec<String>, Vec<String>)> = r
            .records
            .iter()
            .map(|s| {
                (
                    s.forms().into_iter().map(String::from).collect(),
                    s.upos().into_iter().map(String::from).collect(),
                )
            })
            .collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn cmudict_round_trips((bytes, want) in cmudict_file()) {
        let r = cmudict::parse(&bytes, SRC, &CmudictOptions::default()).unwrap();
        let got: Vec<(String, u32, Vec<String>)> =
            r.records.into_iter().map(|p| (p.word, p.variant, p.phones)).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn csv_round_trips((bytes, rows) in csv_file()) {
        let t = csv::parse(&bytes, SRC, &CsvOptions::columns(vec!["c1".into(), 0.into()])).unwrap();
        let want: Vec<f64> = rows.iter().flat_map(|r| [r[1], r[0]]).collect();
        prop_assert_eq!(t.values, want);
        prop_assert_eq!(t.names, vec!["c1".to_string(), "c0".to_string()]);
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn mutated_labelled_tsv((bytes, _) in labelled_tsv_file(), which in any::<Index>(), m in mutation()) {
        let (b, line) = mutate(&bytes, which, &m);
        check_reader(read_labelled_tsv, &b, line);
    }

    #[test]
    fn mutated_vader_tsv((bytes, _, _) in vader_file(), which in any::<Index>(), m in mutation()) {
        let (b, line) = mutate(&bytes, which, &m);
        check_reader(read_vader, &b, line);
    }

    #[test]
    fn mutated_pairs_tsv((bytes, _) in pairs_file(), which in any::<Index>(), m in mutation()) {
        let (b, line) = mutate(&bytes, which, &m);
        check_reader(read_pairs, &b, line);
    }

    #[test]
    fn mutated_jsonl((bytes, _) in jsonl_file(), which in any::<Index>(), m in mutation()) {
        let (b, line) = mutate(&bytes, which, &m);
        check_reader(read_jsonl, &b, line);
    }

    #[test]
    fn mutated_ts((bytes, _, _) in ts_file(), which in any::<Index>(), m in mutation()) {
        let (b, line) = mutate(&bytes, which, &m);
        check_reader(read_ts, &b, line);
    }

    #[test]
    fn mutated_conllu((bytes, _) in conllu_file(), which in any::<Index>(), m in mutation()) {
        let (b, line) = mutate(&bytes, which, &m);
        check_reader(read_conllu, &b, line);
    }

    #[test]
    fn mutated_cmudict((bytes, _) in cmudict_file(), which in any::<Index>(), m in mutation()) {
        let (b, line) = mutate(&bytes, which, &m);
        check_reader(read_cmudict, &b, line);
    }

    #[test]
    fn mutated_csv((bytes, _) in csv_file(), which in any::<Index>(), m in mutation()) {
        let (b, line) = mutate(&bytes, which, &m);
        check_reader(read_csv, &b, line);
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in format_bytes()) {
        let readers: [Reader; 8] = [
            read_labelled_tsv, read_vader, read_pairs, read_jsonl, read_ts, read_conllu,
            read_cmudict, read_csv,
        ];
        for read in readers {
            check_reader(read, &bytes, 1);
        }
    }

    #[test]
    fn tokenizers_lose_no_characters(text in any::<String>()) {
        let plain = WordTokenizer { lowercase: false, contractions: Contractions::Split };
        let keep = WordTokenizer { lowercase: false, contractions: Contractions::Keep };
        let visible: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        for t in [plain, keep] {
            let toks = t.tokenize(&text);
            prop_assert!(toks.iter().all(|s| !s.is_empty() && !s.chars().any(char::is_whitespace)));
            prop_assert_eq!(toks.concat(), visible.clone());
        }
        let lower = WordTokenizer::default().tokenize(&text);
        prop_assert_eq!(lower.len(), plain.tokenize(&text).len());
        prop_assert_eq!(chars(&text, false).concat(), text.clone());
    }

    #[test]
    fn token_vocab_is_ordered_and_round_trips(
        seqs in prop::collection::vec(prop::collection::vec(label(), 0..10), 0..6),
        min_freq in 1usize..3,
        max_size in prop::option::of(4usize..9),
    ) {
        let v = TokenVocab::build(&seqs, min_freq, max_size).unwrap();
        let mut count = std::collections::HashMap::new();
        for t in seqs.iter().flatten() {
            *count.entry(t.as_str()).or_insert(0usize) += 1;
        }
        let toks = &v.tokens()[4..];
        prop_assert!(toks.iter().all(|t| count[t.as_str()] >= min_freq));
        let ordered = toks.windows(2).all(|w| {
            let (a, b) = (count[w[0].as_str()], count[w[1].as_str()]);
            a > b || (a == b && w[0] < w[1])
        });
        prop_assert!(ordered, "not ordered by count, then token: {:?}", toks);
        if let Some(m) = max_size {
            prop_assert!(v.len() <= m);
        }
        for t in toks {
            prop_assert_eq!(v.decode(&[v.id(t)]), vec![t.as_str()]);
        }
        prop_assert_eq!(TokenVocab::from_json(&v.to_json(), SRC).unwrap(), v);
    }

    #[test]
    fn label_set_round_trips(labels in prop::collection::vec(field(), 1..10)) {
        let l = LabelSet::from_labels(&labels).unwrap();
        for k in 0..l.len() {
            prop_assert_eq!(l.id(l.name(k).unwrap()).unwrap(), k);
        }
        prop_assert!(labels.iter().all(|x| l.contains(x)));
        prop_assert_eq!(LabelSet::from_json(&l.to_json(), SRC).unwrap(), l);
    }

    #[test]
    fn vocabulary_json_never_panics(
        which in 0usize..3,
        text in any::<String>(),
        which_line in any::<Index>(),
        m in mutation(),
    ) {
        // Arbitrary text, and the mutated JSON of a valid vocabulary.
        let valid = match which {
            0 => Vocab::from_text("hello, world").to_json(),
            1 => TokenVocab::build(&[vec!["a", "b", "a"]], 1, None).unwrap().to_json(),
            _ => LabelSet::from_labels(["x", "y"]).unwrap().to_json(),
        };
        let (mutated, _) = mutate(valid.as_bytes(), which_line, &m);
        for input in [text, String::from_utf8_lossy(&mutated).into_owned()] {
            for r in [
                Vocab::from_json(&input, SRC).map(|_| ()),
                TokenVocab::from_json(&input, SRC).map(|_| ()),
                LabelSet::from_json(&input, SRC).map(|_| ()),
            ] {
                if let Err(e) = r {
                    prop_assert!(e.to_string().starts_with(SRC), "{}", e);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// safetensors

/// A valid safetensors file of up to three small tensors (f32, f64, i64).
fn safetensors_file() -> impl Strategy<Value = Vec<u8>> {
    let shape = prop::collection::vec(0usize..4, 0..3);
    prop::collection::vec((shape, 0u8..3, any::<u64>()), 1..4).prop_map(|ts| {
        let owned: Vec<(String, Vec<usize>, Vec<f64>, u8)> = ts
            .into_iter()
            .enumerate()
            .map(|(k, (shape, kind, seed))| {
                let n: usize = shape.iter().product();
                let data = (0..n)
                    .map(|i| ((seed >> (i % 32)) % 1000) as f64 - 500.0)
                    .collect();
                (format!("layer.{k}.weight"), shape, data, kind)
            })
            .collect();
        let f32s: Vec<Vec<f32>> = owned
            .iter()
            .map(|t| t.2.iter().map(|&x| x as f32).collect())
            .collect();
        let i64s: Vec<Vec<i64>> = owned
            .iter()
            .map(|t| t.2.iter().map(|&x| x as i64).collect())
            .collect();
        let tensors: Vec<(String, Vec<usize>, OutTensor<'_>)> = owned
            .iter()
            .enumerate()
            .map(|(k, (name, shape, data, kind))| {
                let t = match kind {
                    0 => OutTensor::F32(&f32s[k]),
                    1 => OutTensor::F64(data),
                    _ => OutTensor::I64(&i64s[k]),
                };
                (name.clone(), shape.clone(), t)
            })
            .collect();
        serialize_tensors(&tensors, &[("note", "fuzz")]).unwrap()
    })
}

#[derive(Clone, Debug)]
enum StMutation {
    FlipBytes(Vec<(Index, u8)>),
    Truncate(Index),
    HeaderLength(u64),
    /// Replace the n-th number of the JSON header with this text.
    HeaderNumber(Index, &'static str),
    Append(Vec<u8>),
}

fn st_mutation() -> impl Strategy<Value = StMutation> {
    let huge = prop::sample::select(vec![
        "18446744073709551615",
        "18446744073709551616",
        "4294967296",
        "1099511627776",
        "9223372036854775807",
        "100000000",
        "-1",
        "1e9",
        "0",
    ]);
    prop_oneof![
        prop::collection::vec((any::<Index>(), any::<u8>()), 1..5).prop_map(StMutation::FlipBytes),
        any::<Index>().prop_map(StMutation::Truncate),
        prop_oneof![
            any::<u64>(),
            Just(u64::MAX),
            Just(1u64 << 40),
            Just(100_000_000u64),
            0u64..512
        ]
        .prop_map(StMutation::HeaderLength),
        (any::<Index>(), huge).prop_map(|(i, h)| StMutation::HeaderNumber(i, h)),
        prop::collection::vec(any::<u8>(), 1..64).prop_map(StMutation::Append),
    ]
}

fn st_mutate(bytes: &[u8], m: &StMutation) -> Vec<u8> {
    let mut b = bytes.to_vec();
    match m {
        StMutation::FlipBytes(flips) => {
            for (i, x) in flips {
                let k = i.index(b.len());
                b[k] ^= x | 1;
            }
        }
        StMutation::Truncate(i) => b.truncate(i.index(b.len())),
        StMutation::HeaderLength(n) => b[..8].copy_from_slice(&n.to_le_bytes()),
        StMutation::HeaderNumber(i, text) => {
            let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
            let header = &b[8..8 + n];
            let mut runs = Vec::new();
            let mut s = 0;
            while s < header.len() {
                if header[s].is_ascii_digit() {
                    let mut e = s;
                    while e < header.len() && header[e].is_ascii_digit() {
                        e += 1;
                    }
                    runs.push((s, e));
                    s = e;
                } else {
                    s += 1;
                }
            }
            if !runs.is_empty() {
                let (a, e) = runs[i.index(runs.len())];
                let mut h = header.to_vec();
                h.splice(a..e, text.bytes());
                // Keep the header length right (padding with spaces as safetensors does), so
                // that the claim itself is what is tested.
                let mut out = (h.len() as u64).to_le_bytes().to_vec();
                out.extend(h);
                out.extend(&b[8 + n..]);
                b = out;
            }
        }
        StMutation::Append(junk) => b.extend(junk),
    }
    b
}

fn check_tensor_file(bytes: &[u8]) {
    let r = bounded(|| TensorFile::from_bytes(bytes, SRC));
    match r {
        Ok(f) => {
            let names: Vec<String> = f.names().map(String::from).collect();
            for name in names {
                let raw = f.raw(&name).unwrap();
                let n: usize = raw.shape.iter().product();
                if raw.dtype.is_float() {
                    let t = bounded(|| f.float::<f64>(&name)).unwrap();
                    assert_eq!(t.data().len(), n);
                } else {
                    let _ = bounded(|| f.lengths(&name));
                }
            }
        }
        Err(e) => assert!(e.to_string().starts_with(SRC), "{e}"),
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn safetensors_round_trip(bytes in safetensors_file()) {
        let f = TensorFile::from_bytes(&bytes, SRC).unwrap();
        prop_assert_eq!(f.metadata().get("note").map(String::as_str), Some("fuzz"));
        check_tensor_file(&bytes);
    }

    #[test]
    fn mutated_safetensors_never_panic(bytes in safetensors_file(), m in st_mutation()) {
        check_tensor_file(&st_mutate(&bytes, &m));
    }

    #[test]
    fn arbitrary_safetensors_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        check_tensor_file(&bytes);
    }
}

/// Headers that claim huge tensors or a huge header are errors, found without allocating.
#[test]
fn huge_claims_allocate_nothing_big() {
    let header = |json: &str| {
        let mut b = (json.len() as u64).to_le_bytes().to_vec();
        b.extend(json.as_bytes());
        b.extend([0u8; 16]);
        b
    };
    let cases = [
        header(r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}}"#),
        header(r#"{"w":{"dtype":"F32","shape":[1000000000],"data_offsets":[0,4000000000]}}"#),
        header(r#"{"w":{"dtype":"F64","shape":[2],"data_offsets":[0,18446744073709551615]}}"#),
        header(r#"{"w":{"dtype":"F32","shape":[18446744073709551615,2],"data_offsets":[0,16]}}"#),
        [u64::MAX.to_le_bytes().as_slice(), b"{}"].concat(),
        [(1u64 << 40).to_le_bytes().as_slice(), b"{}"].concat(),
        [99_999_999u64.to_le_bytes().as_slice(), b"{}"].concat(),
    ];
    for b in &cases {
        let e = bounded(|| TensorFile::from_bytes(b, SRC)).unwrap_err();
        assert!(e.to_string().starts_with(SRC), "{e}");
    }
}
