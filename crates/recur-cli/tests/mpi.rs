//! `mpirun -np N recur train ...` (the cargo feature `mpi`; Open MPI's `mpirun` on PATH): N
//! ranks on loopback train the parameters one process does, within the tolerance of the
//! order of the sums (docs/distributed.md); the same N twice is bit-identical; resuming with
//! the same N is exact; ranks started with other options refuse to start and name the
//! option; a killed rank ends the run, and its last checkpoint resumes.

#![cfg(feature = "mpi")]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

#[path = "../../../tests/support/tmpdir.rs"]
mod tmpdir;
use tmpdir::TmpDir;

const BIN: &str = env!("CARGO_BIN_EXE_recur");

/// `mpirun` of `recur` on `ranks` ranks (oversubscribed, allowed as root), each with `args`.
fn mpirun_cmd(ranks: usize, args: &[&str]) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--oversubscribe", "-np", &ranks.to_string(), BIN])
        .args(args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        // Containers often forbid the cross-memory attach of the shared-memory transport.
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none");
    c
}

fn mpirun(ranks: usize, args: &[&str]) -> Output {
    mpirun_cmd(ranks, args).output().expect("run mpirun")
}

fn alone(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run recur")
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        o.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{err}",
        o.status,
        String::from_utf8_lossy(&o.stdout)
    );
    err
}

/// The `param.*` tensors of a checkpoint (safetensors: a little-endian u64 header length,
/// the JSON header, then the data).
fn params(dir: &Path) -> BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(dir.join("checkpoint.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut out = BTreeMap::new();
    for (k, v) in header.as_object().unwrap() {
        if !k.starts_with("param.") {
            continue;
        }
        assert_eq!(v["dtype"], "F32");
        let (a, b) = (
            v["data_offsets"][0].as_u64().unwrap() as usize,
            v["data_offsets"][1].as_u64().unwrap() as usize,
        );
        let vals = data[a..b]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        out.insert(k.clone(), vals);
    }
    assert!(!out.is_empty());
    out
}

/// The largest difference between two runs' parameters, relative to `1 + |value|`
/// (docs/distributed.md: the tolerance of the order of the sums).
fn max_rel_diff(a: &BTreeMap<String, Vec<f32>>, b: &BTreeMap<String, Vec<f32>>) -> f64 {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let mut worst = 0.0f64;
    for (k, x) in a {
        let y = &b[k];
        assert_eq!(x.len(), y.len(), "{k}");
        for (&p, &q) in x.iter().zip(y) {
            let d = (p as f64 - q as f64).abs() / (1.0 + q.abs() as f64);
            worst = worst.max(d);
        }
    }
    worst
}

/// The tolerance of N ranks against one process after the short runs of these tests: the
/// relative difference of the parameters docs/distributed.md derives for f32 sums regrouped
/// by the split of the batch, over a few tens of Adam steps.
const TOLERANCE: f64 = 1e-4;

fn text() -> String {
    // A deterministic text with structure to learn (a short repeated vocabulary).
    let words = [
        "the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far",
    ];
    let mut x: u64 = 12345;
    let mut s = String::new();
    for i in 0..900 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        s += words[(x >> 33) as usize % words.len()];
        s += if i % 9 == 8 { ".\n" } else { " " };
    }
    s
}

fn treebank(n: usize, seed: u64) -> String {
    let nouns = ["cat", "dog", "fish", "duck", "man", "tree", "car", "bird"];
    let verbs = ["sees", "likes", "finds", "eats"];
    let dets = ["the", "a", "every"];
    let mut x = seed;
    let mut pick = |v: &[&'static str]| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        v[(x >> 33) as usize % v.len()]
    };
    let mut s = String::new();
    for k in 0..n {
        s += &format!("# sent_id = s{k}\n");
        let mut words = vec![(pick(&dets), "DET"), (pick(&nouns), "NOUN")];
        if k % 3 == 0 {
            words.push((pick(&verbs), "VERB"));
            words.push((pick(&dets), "DET"));
            words.push((pick(&nouns), "NOUN"));
        } else {
            words.push((pick(&verbs), "VERB"));
        }
        words.push((".", "PUNCT"));
        for (i, (w, u)) in words.iter().enumerate() {
            s += &format!("{}\t{w}\t_\t{u}\t_\t_\t0\tdep\t_\t_\n", i + 1);
        }
        s.push('\n');
    }
    s
}

/// `recur train lm` on the test's text into `out`, with 2 layers and dropout (masks between
/// the layers and on the output). A constant learning rate: the tests resume runs with a
/// larger `--steps`, which a cosine schedule (lm's default) refuses.
fn lm_args(train: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let a: Vec<String> = [
        "train",
        "lm",
        "--lr-schedule",
        "constant",
        "--train",
        train.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--cell",
        "lstm",
        "--hidden-size",
        "24",
        "--embed-size",
        "8",
        "--num-layers",
        "2",
        "--dropout",
        "0.2",
        "--batch-size",
        "7",
        "--seq-len",
        "16",
        "--steps",
        "24",
        "--eval-every",
        "8",
        "--sample-length",
        "0",
        "--threads",
        "1",
        "--log-every",
        "1000",
        "--lr",
        "0.005",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    with(a, extra)
}

fn tag_args(train: &Path, valid: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let a: Vec<String> = [
        "train",
        "tag",
        "--train",
        train.to_str().unwrap(),
        "--valid",
        valid.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--hidden-size",
        "12",
        "--embed-size",
        "8",
        "--num-layers",
        "2",
        "--dropout",
        "0.3",
        "--batch-size",
        "10",
        "--steps",
        "20",
        "--eval-every",
        "10",
        "--threads",
        "1",
        "--log-every",
        "1000",
        "--lr",
        "0.01",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    with(a, extra)
}

/// Pairs `source<TAB>target` of short letter strings and their reversals, of lengths 2 to
/// 7 (so that every batch is padded).
fn pairs(n: usize, seed: u64) -> String {
    let mut x = seed;
    let mut next = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) as usize
    };
    let mut s = String::new();
    for _ in 0..n {
        let len = 2 + next() % 6;
        let w: String = (0..len)
            .map(|_| (b'a' + (next() % 6) as u8) as char)
            .collect();
        s += &format!("{w}\t{}\n", w.chars().rev().collect::<String>());
    }
    s
}

/// `recur train seq2seq`: a 2-layer bidirectional LSTM encoder and a 2-layer decoder with
/// general attention and dropout (masks between the layers of both and on the decoder's
/// output), batches of 9 pairs.
fn s2s_args(train: &Path, valid: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let a: Vec<String> = [
        "train",
        "seq2seq",
        "--train",
        train.to_str().unwrap(),
        "--valid",
        valid.to_str().unwrap(),
        "--test",
        valid.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--hidden-size",
        "16",
        "--embed-size",
        "8",
        "--num-layers",
        "2",
        "--bidirectional",
        "--dropout",
        "0.25",
        "--batch-size",
        "9",
        "--steps",
        "16",
        "--eval-every",
        "8",
        "--threads",
        "1",
        "--log-every",
        "1000",
        "--lr",
        "0.01",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    with(a, extra)
}

/// `base` with the options of `extra` (`--name value`, or `--name` alone before another
/// option) in place of the same options of `base`, or added.
fn with(mut base: Vec<String>, extra: &[&str]) -> Vec<String> {
    let mut i = 0;
    while i < extra.len() {
        let name = extra[i];
        let value = extra.get(i + 1).filter(|v| !v.starts_with("--"));
        if let Some(k) = base.iter().position(|a| a == name) {
            let had_value = base.get(k + 1).is_some_and(|v| !v.starts_with("--"));
            base.drain(k..k + 1 + usize::from(had_value));
        }
        base.push(name.to_string());
        if let Some(v) = value {
            base.push(v.to_string());
        }
        i += 1 + usize::from(value.is_some());
    }
    base
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(|s| s.as_str()).collect()
}

#[test]
fn lm_on_two_and_three_ranks_trains_the_parameters_of_one_process() {
    let dir = TmpDir::new("mpi-lm");
    let train = dir.path("train.txt");
    std::fs::write(&train, text()).unwrap();
    let one = dir.path("one");
    ok(&alone(&strs(&lm_args(&train, &one, &[]))));
    let p1 = params(&one);
    for ranks in [2, 3] {
        let out = dir.path(&format!("r{ranks}"));
        let o = mpirun(ranks, &strs(&lm_args(&train, &out, &["--json"])));
        ok(&o);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert_eq!(stdout.lines().count(), 1, "rank 0 alone prints: {stdout}");
        let pn = params(&out);
        let d = max_rel_diff(&pn, &p1);
        eprintln!("lm, {ranks} ranks: largest relative difference {d:e}");
        assert!(d < TOLERANCE, "{ranks} ranks against one process: {d:e}");
        assert!(out.join("metrics.json").exists());
    }
    // The same N twice: bit for bit.
    let again = dir.path("r2-again");
    ok(&mpirun(2, &strs(&lm_args(&train, &again, &[]))));
    assert_eq!(params(&again), params(&dir.path("r2")));
}

/// The LM's backward pass announces the head, then the recurrent stack, then the
/// embedding, and their all-reduces start as it goes: on two ranks each sum is one
/// addition, so it gives the bits of one all-reduce after the backward pass, for char and
/// word tokens, and with the two ways alternating step by step.
#[test]
fn an_lm_announcing_its_parts_on_two_ranks_gives_the_bits_of_one_all_reduce() {
    let dir = TmpDir::new("mpi-lm-overlap");
    let train = dir.path("train.txt");
    std::fs::write(&train, text()).unwrap();
    for tokens in ["char", "word"] {
        let extra = ["--tokens", tokens, "--steps", "12", "--eval-every", "6"];
        let run = |mode: &str| {
            let out = dir.path(&format!("{tokens}-{mode}"));
            let o = mpirun_cmd(2, &strs(&lm_args(&train, &out, &extra)))
                .env("RECUR_MPI_OVERLAP", mode)
                .output()
                .unwrap();
            let err = ok(&o);
            (params(&out), err)
        };
        let (on, _) = run("on");
        let (off, _) = run("off");
        let (alternate, err) = run("alternate");
        assert_eq!(on, off, "{tokens}: overlapped against blocking");
        assert_eq!(on, alternate, "{tokens}: alternating");
        // The alternating run reports both ways' exposed times, 6 steps each.
        let line = err
            .lines()
            .find(|l| l.contains("overlapped_steps"))
            .unwrap_or_else(|| panic!("no timing line in:\n{err}"));
        let t: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            (t["overlapped_steps"].as_u64(), t["blocking_steps"].as_u64()),
            (Some(6), Some(6))
        );
    }
}

/// The regularizers draw the masks of the whole batch on every rank, and each rank uses its
/// streams' rows: the regularized layers' masks (layer norm, input and recurrent dropout,
/// zoneout, weight drop, locked dropout between the layers), and, with the fused layers, the
/// dropout between them; the embedding dropout, the output's mask and AR/TAR beside both.
#[test]
fn a_regularized_lm_on_two_and_three_ranks_trains_the_parameters_of_one_process() {
    let dir = TmpDir::new("mpi-lm-regular");
    let train = dir.path("train.txt");
    std::fs::write(&train, text()).unwrap();
    let inside = [
        "--layer-norm",
        "--input-dropout",
        "0.1",
        "--recurrent-dropout",
        "0.2",
        "--zoneout",
        "0.1",
        "--weight-drop",
        "0.2",
        "--locked-dropout",
        "--embed-dropout",
        "0.1",
        "--ar",
        "0.5",
        "--tar",
        "0.5",
        // Layer norm makes this small model chaotic: the difference of the order of the
        // sums grows about twofold a step (docs/distributed.md), so few steps.
        "--steps",
        "4",
        "--eval-every",
        "2",
    ];
    let beside = ["--embed-dropout", "0.1", "--ar", "0.5", "--tar", "0.5"];
    for (name, reg, ranks) in [
        ("inside", &inside[..], &[2, 3][..]),
        ("beside", &beside[..], &[2][..]),
    ] {
        let one = dir.path(&format!("{name}-one"));
        ok(&alone(&strs(&lm_args(&train, &one, reg))));
        let p1 = params(&one);
        for &n in ranks {
            let out = dir.path(&format!("{name}-r{n}"));
            ok(&mpirun(n, &strs(&lm_args(&train, &out, reg))));
            let d = max_rel_diff(&params(&out), &p1);
            eprintln!(
                "regularized lm ({name} the layers), {n} ranks: largest relative difference {d:e}"
            );
            assert!(
                d < TOLERANCE,
                "{name}, {n} ranks against one process: {d:e}"
            );
        }
    }
    let again = dir.path("inside-r3-again");
    ok(&mpirun(3, &strs(&lm_args(&train, &again, &inside))));
    assert_eq!(params(&again), params(&dir.path("inside-r3")));
}

#[test]
fn tagger_on_two_and_three_ranks_trains_the_parameters_of_one_process() {
    let dir = TmpDir::new("mpi-tag");
    let (train, valid) = (dir.path("train.conllu"), dir.path("dev.conllu"));
    std::fs::write(&train, treebank(95, 1)).unwrap();
    std::fs::write(&valid, treebank(20, 2)).unwrap();
    let one = dir.path("one");
    ok(&alone(&strs(&tag_args(&train, &valid, &one, &[]))));
    let p1 = params(&one);
    for ranks in [2, 3] {
        let out = dir.path(&format!("r{ranks}"));
        let o = mpirun(ranks, &strs(&tag_args(&train, &valid, &out, &["--json"])));
        ok(&o);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert_eq!(stdout.lines().count(), 1, "rank 0 alone prints: {stdout}");
        let d = max_rel_diff(&params(&out), &p1);
        eprintln!("tag, {ranks} ranks: largest relative difference {d:e}");
        assert!(d < TOLERANCE, "{ranks} ranks against one process: {d:e}");
    }
    let again = dir.path("r3-again");
    ok(&mpirun(3, &strs(&tag_args(&train, &valid, &again, &[]))));
    assert_eq!(params(&again), params(&dir.path("r3")));
    // The backward pass announces the head, the recurrent stack, then the embedding: on two
    // ranks the buckets all-reduced as it goes give the bits of one all-reduce after it.
    let blocking = dir.path("r2-blocking");
    let o = mpirun_cmd(2, &strs(&tag_args(&train, &valid, &blocking, &[])))
        .env("RECUR_MPI_OVERLAP", "off")
        .output()
        .unwrap();
    ok(&o);
    assert_eq!(params(&blocking), params(&dir.path("r2")));
}

#[test]
fn seq2seq_on_two_and_three_ranks_trains_the_parameters_of_one_process() {
    let dir = TmpDir::new("mpi-s2s");
    let (train, valid) = (dir.path("train.tsv"), dir.path("valid.tsv"));
    std::fs::write(&train, pairs(60, 1)).unwrap();
    std::fs::write(&valid, pairs(12, 2)).unwrap();
    let one = dir.path("one");
    ok(&alone(&strs(&s2s_args(&train, &valid, &one, &[]))));
    let p1 = params(&one);
    for ranks in [2, 3] {
        let out = dir.path(&format!("r{ranks}"));
        let o = mpirun(ranks, &strs(&s2s_args(&train, &valid, &out, &["--json"])));
        ok(&o);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert_eq!(stdout.lines().count(), 1, "rank 0 alone prints: {stdout}");
        let d = max_rel_diff(&params(&out), &p1);
        eprintln!("seq2seq, {ranks} ranks: largest relative difference {d:e}");
        assert!(d < TOLERANCE, "{ranks} ranks against one process: {d:e}");
    }
    // The same N twice: bit for bit.
    let again = dir.path("r3-again");
    ok(&mpirun(3, &strs(&s2s_args(&train, &valid, &again, &[]))));
    assert_eq!(params(&again), params(&dir.path("r3")));
    // On two ranks each sum is one addition, whatever the order: the buckets all-reduced
    // as the backward pass finishes them give the bits of one all-reduce after it.
    let blocking = dir.path("r2-blocking");
    let o = mpirun_cmd(2, &strs(&s2s_args(&train, &valid, &blocking, &[])))
        .env("RECUR_MPI_OVERLAP", "off")
        .output()
        .unwrap();
    ok(&o);
    assert_eq!(params(&blocking), params(&dir.path("r2")));
}

#[test]
fn resuming_with_the_same_ranks_is_exact() {
    let dir = TmpDir::new("mpi-resume");
    let train = dir.path("train.txt");
    std::fs::write(&train, text()).unwrap();
    let full = dir.path("full");
    ok(&mpirun(2, &strs(&lm_args(&train, &full, &[]))));
    let part = dir.path("part");
    ok(&mpirun(
        2,
        &strs(&lm_args(&train, &part, &["--steps", "11"])),
    ));
    ok(&mpirun(2, &strs(&lm_args(&train, &part, &["--resume"]))));
    assert_eq!(params(&part), params(&full));
}

#[test]
fn ranks_started_with_other_options_refuse_and_name_the_option() {
    let dir = TmpDir::new("mpi-options");
    let train = dir.path("train.txt");
    std::fs::write(&train, text()).unwrap();
    let out = dir.path("m");
    let a = lm_args(&train, &out, &[]);
    let b = lm_args(&train, &out, &["--batch-size", "5"]);
    // Open MPI's MPMD form: rank 0 with `a`, rank 1 with `b`.
    let mut args = vec!["-np", "1", BIN];
    args.extend(strs(&a));
    args.extend([":", "-np", "1", BIN]);
    args.extend(strs(&b));
    let o = Command::new("mpirun")
        .arg("--oversubscribe")
        .args(&args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("rank 1 was started with other data or options than rank 0")
            && err.contains("trajectory.config.batch_size: 7 on rank 0, 5 on rank 1"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.join("checkpoint.safetensors").exists());
}

/// The processes whose environment holds `marker` and the rank `rank`.
fn pids_of_rank(marker: &str, rank: usize) -> Vec<u32> {
    let want_rank = format!("OMPI_COMM_WORLD_RANK={rank}");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        let vars: Vec<&[u8]> = env.split(|&b| b == 0).collect();
        let has = |s: &str| vars.contains(&s.as_bytes());
        let exe = std::fs::read_link(e.path().join("exe")).unwrap_or_default();
        if has(marker) && has(&want_rank) && exe.ends_with("recur") {
            out.push(pid);
        }
    }
    out
}

#[test]
fn a_killed_rank_ends_the_run_and_the_last_checkpoint_resumes() {
    let dir = TmpDir::new("mpi-kill");
    let train = dir.path("train.txt");
    std::fs::write(&train, text()).unwrap();
    let out = dir.path("m");
    let marker = format!("RECUR_MPI_TEST={}", std::process::id());
    let long = lm_args(
        &train,
        &out,
        &[
            "--steps",
            "1000000",
            "--eval-every",
            "1000000",
            "--checkpoint-every",
            "3",
        ],
    );
    let mut child = mpirun_cmd(2, &strs(&long))
        .env("RECUR_MPI_TEST", std::process::id().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ckpt = out.join("checkpoint.safetensors");
    let t0 = Instant::now();
    while !ckpt.exists() {
        assert!(t0.elapsed() < Duration::from_secs(120), "no checkpoint");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let pids = pids_of_rank(&marker, 1);
    assert_eq!(pids.len(), 1, "rank 1: {pids:?}");
    let killed = Command::new("kill")
        .args(["-KILL", &pids[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let t1 = Instant::now();
    let o = loop {
        if let Some(_status) = child.try_wait().unwrap() {
            break child.wait_with_output().unwrap();
        }
        if t1.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the run did not end within 60 s of the kill");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let err = String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success());
    assert!(err.contains("rank 1"), "the message names the rank: {err}");
    // The last checkpoint is whole: resume it for 2 more steps.
    let c = recur::train::checkpoint::Checkpoint::read(&ckpt).unwrap();
    let step = c.field("run").unwrap()["step"].as_u64().unwrap();
    assert!(step >= 3 && step.is_multiple_of(3), "step {step}");
    let total = (step + 2).to_string();
    let resumed = lm_args(
        &train,
        &out,
        &[
            "--steps",
            &total,
            "--eval-every",
            "1000000",
            "--checkpoint-every",
            "3",
            "--resume",
        ],
    );
    let log = ok(&mpirun(2, &strs(&resumed)));
    let _ = log;
    let c = recur::train::checkpoint::Checkpoint::read(&ckpt).unwrap();
    assert_eq!(c.field("run").unwrap()["step"].as_u64(), Some(step + 2));
}

/// A rank that hangs (stopped with SIGSTOP: alive, but it never answers): with
/// `--dist-timeout`, the rank waiting for it in the step's all-reduce ends the run, naming
/// itself and the time-out, and the last checkpoint is whole.
#[test]
fn a_hanging_rank_ends_the_run_after_the_dist_timeout() {
    let dir = TmpDir::new("mpi-hang");
    let train = dir.path("train.txt");
    std::fs::write(&train, text()).unwrap();
    let out = dir.path("m");
    let marker = format!("RECUR_MPI_HANG_TEST={}", std::process::id());
    let long = lm_args(
        &train,
        &out,
        &[
            "--steps",
            "1000000",
            "--eval-every",
            "1000000",
            "--checkpoint-every",
            "3",
            "--dist-timeout",
            "2",
        ],
    );
    let mut child = mpirun_cmd(2, &strs(&long))
        .env("RECUR_MPI_HANG_TEST", std::process::id().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ckpt = out.join("checkpoint.safetensors");
    let t0 = Instant::now();
    while !ckpt.exists() {
        assert!(t0.elapsed() < Duration::from_secs(120), "no checkpoint");
        std::thread::sleep(Duration::from_millis(100));
    }
    let pids = pids_of_rank(&marker, 1);
    assert_eq!(pids.len(), 1, "rank 1: {pids:?}");
    let stopped = Command::new("kill")
        .args(["-STOP", &pids[0].to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let t1 = Instant::now();
    let o = loop {
        if let Some(_status) = child.try_wait().unwrap() {
            break child.wait_with_output().unwrap();
        }
        if t1.elapsed() > Duration::from_secs(60) {
            let _ = Command::new("kill")
                .args(["-KILL", &pids[0].to_string()])
                .status();
            let _ = child.kill();
            panic!("the run did not end within 60 s of the hang");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // The stopped process, if the launcher left it.
    let _ = Command::new("kill")
        .args(["-KILL", &pids[0].to_string()])
        .status();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success());
    assert!(
        err.contains("error: rank 0 of 2: no answer from the other ranks for 2 s")
            && err.contains("--dist-timeout"),
        "{err}"
    );
    let c = recur::train::checkpoint::Checkpoint::read(&ckpt).unwrap();
    let step = c.field("run").unwrap()["step"].as_u64().unwrap();
    assert!(step >= 3 && step.is_multiple_of(3), "step {step}");
}
