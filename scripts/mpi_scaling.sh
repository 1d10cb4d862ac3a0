#!/usr/bin/env bash
# Data-parallel scaling of `recur train` (docs/distributed.md):
#  1. on this machine, the char-LM and the tagger as 1 rank x 2 threads against 2 ranks x 1
#     thread (the same command otherwise): training steps per second, and the wall-clock
#     seconds to the same validation loss (the worse of the two runs' best);
#  2. the all-reduce of each model's gradient buffer timed on loopback (2 ranks);
#  3. the expected scaling to 8-64 machines on 10 and 25 Gbit/s from those measurements (a
#     ring all-reduce model, see the docs);
#  4. the all-reduce time a step leaves exposed with the buckets started as seq2seq's
#     backward pass finishes them against one all-reduce after it, alternating step by step
#     in one run (RECUR_MPI_OVERLAP=alternate; 2 ranks x 1 thread, generated pairs).
#
#   bash scripts/mpi_scaling.sh [--smoke] [--lm-text FILE] [--tag-train FILE --tag-valid FILE]
#                               [--steps N] [--out DIR]
#
# Without data files it generates its own (a text of random words, a treebank of short
# sentences). --smoke: tiny models and a few steps, to check that everything runs. Timings
# need an otherwise idle machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

smoke=0
steps=300
lm_text=""
tag_train=""
tag_valid=""
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1; steps=12 ;;
    --steps) steps="$2"; shift ;;
    --lm-text) lm_text="$2"; shift ;;
    --tag-train) tag_train="$2"; shift ;;
    --tag-valid) tag_valid="$2"; shift ;;
    --out) out="$2"; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$out" ]; then
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"

cargo build --release --locked -q -p recur-cli --features mpi
recur="$PWD/target/release/recur"
mpirun=(mpirun --oversubscribe)
if [ "$(id -u)" = 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
# Containers often forbid the cross-memory attach of the shared-memory transport.
export OMPI_MCA_btl_vader_single_copy_mechanism="${OMPI_MCA_btl_vader_single_copy_mechanism:-none}"

if [ "$smoke" = 1 ]; then n_words=3000; n_sents=200; else n_words=200000; n_sents=4000; fi
if [ -z "$lm_text" ]; then
  lm_text="$out/lm.txt"
  python3 - "$lm_text" "$n_words" <<'EOF'
import random, sys
random.seed(0)
words = "the cat sat on a mat and dog ran far into old red house while we sang".split()
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        f.write(random.choice(words) + (".\n" if i % 11 == 10 else " "))
EOF
fi
if [ -z "$tag_train" ]; then
  tag_train="$out/train.conllu"
  tag_valid="$out/dev.conllu"
  python3 - "$tag_train" "$tag_valid" "$n_sents" <<'EOF'
import random, sys
random.seed(1)
pos = {"DET": "the a every some".split(), "NOUN": "cat dog fish duck man tree car bird".split(),
       "VERB": "sees likes fish duck finds eats".split(), "ADJ": "red old big small".split()}
shapes = [["DET", "NOUN", "VERB", "DET", "NOUN"], ["DET", "ADJ", "NOUN", "VERB"],
          ["DET", "NOUN", "VERB", "DET", "ADJ", "NOUN"]]
def bank(path, n):
    with open(path, "w") as f:
        for k in range(n):
            f.write(f"# sent_id = s{k}\n")
            for i, u in enumerate(random.choice(shapes) + ["PUNCT"]):
                w = "." if u == "PUNCT" else random.choice(pos[u])
                f.write(f"{i + 1}\t{w}\t_\t{u}\t_\t_\t0\tdep\t_\t_\n")
            f.write("\n")
bank(sys.argv[1], int(sys.argv[3]))
bank(sys.argv[2], max(20, int(sys.argv[3]) // 10))
EOF
fi

if [ "$smoke" = 1 ]; then
  lm_model=(--hidden-size 32 --embed-size 16 --batch-size 8 --seq-len 16)
  tag_model=(--hidden-size 16 --embed-size 8 --batch-size 16)
else
  lm_model=(--hidden-size 256 --embed-size 64 --num-layers 2 --batch-size 32 --seq-len 64)
  tag_model=(--hidden-size 128 --embed-size 64 --batch-size 32)
fi
every=$((steps / 6 > 0 ? steps / 6 : 1))
common=(--steps "$steps" --eval-every "$every" --log-every 1000 --json)

run_pair() { # name, then the task's arguments
  local name="$1"; shift
  echo "== $name: 1 rank x 2 threads, then 2 ranks x 1 thread" >&2
  "$recur" train "$@" "${common[@]}" --threads 2 --out "$out/$name-1x2" >/dev/null 2>&1
  "${mpirun[@]}" -np 2 "$recur" train "$@" "${common[@]}" --threads 1 \
    --out "$out/$name-2x1" >/dev/null 2>&1
}
run_pair lm lm --train "$lm_text" --sample-length 0 "${lm_model[@]}"
run_pair tag tag --train "$tag_train" --valid "$tag_valid" "${tag_model[@]}"

# The gradient buffer of each model: its parameters (from its checkpoint).
sizes=$(python3 - "$out/lm-1x2" "$out/tag-1x2" <<'EOF'
import json, struct, sys
counts = []
for d in sys.argv[1:]:
    with open(f"{d}/checkpoint.safetensors", "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    counts.append(sum((v["data_offsets"][1] - v["data_offsets"][0]) // 4
                      for k, v in h.items() if k.startswith("param.")))
print(",".join(map(str, counts)))
EOF
)
iters=30; [ "$smoke" = 1 ] && iters=5
echo "== all-reduce on loopback, 2 ranks, sizes $sizes" >&2
"${mpirun[@]}" -np 2 "$recur" allreduce-bench --sizes "$sizes" --iters "$iters" >"$out/allreduce.jsonl"

echo "== seq2seq, 2 ranks x 1 thread, overlapped and blocking all-reduce alternating" >&2
n_pairs=20000; s2s_hidden=256; [ "$smoke" = 1 ] && { n_pairs=300; s2s_hidden=16; }
python3 - "$out/pairs.tsv" "$n_pairs" <<'EOF'
import random, sys
random.seed(2)
with open(sys.argv[1], "w") as f:
    for _ in range(int(sys.argv[2])):
        w = "".join(random.choice("abcdefghij") for _ in range(random.randint(3, 12)))
        f.write(f"{w}\t{w[::-1]}\n")
EOF
head -n 200 "$out/pairs.tsv" >"$out/pairs-valid.tsv"
RECUR_MPI_OVERLAP=alternate "${mpirun[@]}" -np 2 "$recur" train seq2seq --train "$out/pairs.tsv" \
  --valid "$out/pairs-valid.tsv" --test "$out/pairs-valid.tsv" --out "$out/s2s" \
  --hidden-size "$s2s_hidden" --batch-size 64 --steps "$steps" --eval-every 1000000 \
  --threads 1 --log-every 1000000 2>&1 | grep '"overlapped_steps"' >"$out/overlap.json"

python3 - "$out" "$sizes" <<'EOF'
import json, sys
out, sizes = sys.argv[1], [int(x) for x in sys.argv[2].split(",")]
ar = {r["params"]: r for r in map(json.loads, open(f"{out}/allreduce.jsonl"))}

def metrics(run):
    return json.load(open(f"{out}/{run}/metrics.json"))

def time_to(m, target):
    for p in m["curve"]:
        if p.get("valid_loss", float("inf")) <= target:
            return p["seconds"]
    return float("nan")

print("Measured on this machine (same command; evaluation included in the wall clock):")
print(f"{'task':6} {'run':12} {'steps/s':>8} {'best valid_loss':>16} {'s to target':>12}")
step_s = {}
for task in ["lm", "tag"]:
    a, b = metrics(f"{task}-1x2"), metrics(f"{task}-2x1")
    best = lambda m: min(p["valid_loss"] for p in m["curve"])
    target = max(best(a), best(b))
    for name, m in [("1 rank x 2", a), ("2 ranks x 1", b)]:
        sps = m["steps"] / m["train_seconds"]
        print(f"{task:6} {name:12} {sps:8.2f} {best(m):16.4f} {time_to(m, target):12.2f}")
    step_s[task] = a["train_seconds"] / a["steps"]
    print(f"{task:6} 2x1 / 1x2 steps/s ratio: "
          f"{(b['steps'] / b['train_seconds']) / (a['steps'] / a['train_seconds']):.2f}")

print()
print("All-reduce of the gradient buffer (f64, 8 bytes per parameter), loopback, 2 ranks:")
for task, n in zip(["lm", "tag"], sizes):
    r = ar[n]
    print(f"{task:6} {n:>10} params {r['bytes'] / 1e6:8.2f} MB  median {r['median_seconds'] * 1e3:8.3f} ms")

# Ring all-reduce over M machines on a link of B bit/s with latency ALPHA per message:
# 2(M-1)/M of the buffer crosses every link, in 2(M-1) messages. The global batch is split
# over the machines, so compute per step is t1 / M (an upper bound on the speed-up: small
# shares compute less efficiently); the loopback time is added as the local cost of the
# reduction (copies, f64 conversion).
ALPHA = 25e-6
print()
print(f"Expected speed-up (strong scaling, global batch fixed), ring all-reduce, latency {ALPHA * 1e6:.0f} us:")
for task, n in zip(["lm", "tag"], sizes):
    t1, nbytes, local = step_s[task], ar[n]["bytes"], ar[n]["median_seconds"]
    print(f"{task}: {n} params, {nbytes / 1e6:.2f} MB per step, one-machine step {t1 * 1e3:.1f} ms")
    print(f"  {'machines':>8} " + " ".join(f"{'%d Gbit/s' % g:>22}" for g in (10, 25)))
    for m in [1, 2, 4, 8, 16, 32, 64]:
        cells = []
        for gbit in (10, 25):
            if m == 1:
                t = t1
            else:
                comm = 2 * (m - 1) / m * nbytes * 8 / (gbit * 1e9) + 2 * (m - 1) * ALPHA
                t = t1 / m + comm + local
            cells.append(f"{t * 1e3:8.2f} ms x{t1 / t:6.2f} ({t1 / t / m:4.0%})")
        print(f"  {m:>8} " + " ".join(f"{c:>22}" for c in cells))

o = json.load(open(f"{out}/overlap.json"))
print()
print("seq2seq, 2 ranks x 1 thread: all-reduce time exposed per step (same run, alternating):")
for way in ["overlapped", "blocking"]:
    print(f"  {way:10} {o[way + '_steps']:4d} steps  mean {o[way + '_exposed_seconds_mean'] * 1e3:9.2f} ms"
          f"  median {o[way + '_exposed_seconds_median'] * 1e3:9.2f} ms")
print(f"  overlapped / blocking: mean {o['overlapped_exposed_seconds_mean'] / o['blocking_exposed_seconds_mean']:.2f}"
      f", median {o['overlapped_exposed_seconds_median'] / o['blocking_exposed_seconds_median']:.2f}")
EOF
