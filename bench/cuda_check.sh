#!/usr/bin/env bash
# GPU check of the PyTorch executor (`executor: cuda`) on one NVIDIA GPU, in at most about 8 minutes: what a first
# GPU run must prove.
#   1. reports the environment (GPU, driver, Python, torch, CUDA, NCCL, Deno) -> env.json;
#   2. `deno task launch` on a 1-node, 1-GPU cuda config: 20 steps of a small GPT (4 layers, hidden 512, 8 heads,
#      byte vocabulary, 4K context) on the embedded deno-corpus, SIGKILLed after step 12 and finished with
#      `--resume` from the step-10 checkpoint -> launch.json (tokens/s, losses, step times, the resume);
#   3. `deno task profile --quick` on the same config -> the profile and its summary;
#   4. kernels/torch/llama_slice.py: a 2-layer slice of Llama-3-8B (GQA 32/8 heads, the full 128K vocabulary) at 4K,
#      32K and 64K tokens, bf16, selective checkpointing, the executor's own model and trainer: REQUIRES the flash
#      varlen kernel called with bf16 4-D tensors (the phase fails otherwise), reports tokens/s, MFU (LM head
#      included), activation bytes per token and, from torch.profiler, the GPU's idle time -> llama_slice.json;
#      the same slice at 32K under `full` checkpointing (activation bytes per token against the cost model's
#      2·hidden·layers estimate) and as a batch of 512 sequences of 64 tokens -> llama_full.json, llama_batch.json;
#   and prints one summary table (target: >= 40% MFU in bf16 on the 32K slice); everything lands in $OUT (the device
#   tool's result folder), else bench/results/cuda_check/.
#
# The GPU machine has Python 3.12 with torch 2.11 + CUDA 13, but no Deno and no network. Before the run, the lead
# prepares the carry on this machine, in the repository root (both folders are git-ignored):
#   deno install                                           # node_modules/ holds every npm package (about 19 MB)
#   mkdir -p .deno && xz -6 -T0 -c "$(command -v deno)" > .deno/deno.xz   # the Deno 2.9.6 binary, about 31 MB
# and runs it with the device tool:
#   run(command="bash bench/cuda_check.sh", carry=[".deno", "node_modules"], timeout_s=540)
# The script unpacks .deno/deno.xz into .deno/bin/deno, points DENO_DIR at .deno/deno_dir (a carried one is used
# as is, else a fresh one: node_modules/ is all Deno needs offline) and never touches the network.
#
# usage: bash bench/cuda_check.sh [--dry-run] [--rehearse] [--steps N] [--lengths 4096,...] [--python PY]
#   --dry-run   no GPU needed: checks the arguments, Deno and the carry, writes and validates the configs (with
#               `deno task plan`) and prints what would run; tests run it on CI.
#   --rehearse  the whole script on the CPU (`executor: torch-cpu`, tiny shapes, a tiny llama slice at 256-1024
#               tokens, 12 steps unless --steps): proves every phase and the summary before the one GPU run.
set -uo pipefail

DRY=0
KIND=cuda
STEPS=
LENGTHS=
PYTHON=python3
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --rehearse) KIND=torch-cpu ;;
    --steps) STEPS="${2:?--steps needs a number}"; shift ;;
    --lengths) LENGTHS="${2:?--lengths needs a list, e.g. 4096,8192}"; shift ;;
    --python) PYTHON="${2:?--python needs a path}"; shift ;;
    -h|--help) sed -n '2,37p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$KIND" = cuda ]; then
  STEPS="${STEPS:-20}" LENGTHS="${LENGTHS:-4096,32768,65536}" MID=32768 BATCH=512 REQUIRE="flash varlen"
  LLAMA_DEVICE=cuda
  LLAMA_SHAPE='{"family":"llama","layers":2,"hidden":4096,"heads":32,"kvHeads":8,"intermediate":14336,"vocab":128256,"maxSeq":65536,"ropeTheta":500000,"normEps":1e-5}'
  MODEL="{ layers: 4, hidden: 512, heads: 8, vocab: 256, max_seq: 4096, checkpointing: none }"
else
  STEPS="${STEPS:-12}" LENGTHS="${LENGTHS:-256,1024}" MID=1024 BATCH=16 REQUIRE=
  LLAMA_DEVICE=cpu
  LLAMA_SHAPE='{"family":"llama","layers":2,"hidden":64,"heads":4,"kvHeads":2,"intermediate":176,"vocab":256,"maxSeq":1024,"ropeTheta":10000,"normEps":1e-5}'
  MODEL="{ layers: 2, hidden: 64, heads: 4, vocab: 256, max_seq: 1024, checkpointing: none }"
fi
KILL_AT=$(( STEPS / 2 + 2 ))
case "$STEPS" in ''|*[!0-9]*|0) echo "error: --steps $STEPS: expected a positive integer" >&2; exit 2 ;; esac
case "$LENGTHS" in *[!0-9,]*|,*|*,|*,,*|'') echo "error: --lengths $LENGTHS: expected numbers like 4096,8192" >&2; exit 2 ;; esac

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 2
RES="${OUT:-$ROOT/bench/results}/cuda_check"
mkdir -p "$RES"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/flexsp-cuda-check-XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
T0=$(date +%s)
say() { echo "[cuda_check +$(( $(date +%s) - T0 ))s] $*" >&2; }

# ---- Deno from the carry (or the one on PATH, e.g. for --dry-run here) ----
if [ -f .deno/deno.xz ]; then
  if [ ! -x .deno/bin/deno ] || [ .deno/deno.xz -nt .deno/bin/deno ]; then
    mkdir -p .deno/bin && xz -dc .deno/deno.xz > .deno/bin/deno.tmp && chmod +x .deno/bin/deno.tmp &&
      mv .deno/bin/deno.tmp .deno/bin/deno || { echo "error: cannot unpack .deno/deno.xz" >&2; exit 2; }
  fi
  export PATH="$ROOT/.deno/bin:$PATH"
fi
if ! command -v deno >/dev/null 2>&1; then
  echo "error: no Deno: carry .deno/deno.xz (mkdir -p .deno && xz -6 -c \"\$(command -v deno)\" > .deno/deno.xz)" >&2
  exit 2
fi
if [ ! -d node_modules/yaml ]; then
  echo "error: node_modules/ is missing: run \`deno install\` and carry node_modules with the run" >&2
  exit 2
fi
if [ -d .deno/deno_dir ]; then export DENO_DIR="$ROOT/.deno/deno_dir"; else export DENO_DIR="$WORK/deno_dir"; fi
export DENO_NO_UPDATE_CHECK=1 NO_COLOR=1
DENO="deno run -A --cached-only"

# ---- 1. environment ----
say "environment"
SMI="$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n1 |
  tr -d '"\\')"
PROBE="$("$PYTHON" kernels/torch/probe.py 2>/dev/null | tail -n1)"
case "$PROBE" in "{"*) ;; *) PROBE=null ;; esac
{
  echo "{"
  echo "  \"date\": \"$(date -u +%FT%TZ)\","
  echo "  \"host\": \"$(hostname)\","
  echo "  \"deno\": \"$(deno --version | head -n1)\","
  if [ -n "$SMI" ]; then echo "  \"nvidiaSmi\": \"$SMI\","; else echo "  \"nvidiaSmi\": null,"; fi
  echo "  \"python\": $PROBE"
  echo "}"
} > "$RES/env.json"
cat "$RES/env.json" >&2

# ---- the configs ----
CFG="$WORK/cuda.yaml"
cat > "$CFG" <<EOF
name: cuda-check
cluster:
  nodes:
    - host: localhost
      transport: local
      devices: 1
      executor: $KIND
      python: $PYTHON
model: $MODEL
training:
  dataset: $ROOT/data/deno-corpus
  dataset_builtin: deno-corpus
  global_batch: 32
  steps: $STEPS
  lr: 0.001
  warmup_steps: 5
  seed: 1
  checkpoint_interval: $(( STEPS / 2 ))
planner: { strategy: flexsp, memory_budget_gb: 60, zero_stage: 0, milp: none, deterministic: true }
profile:
  path: $WORK/profile.json
  constants:
    alpha1: 1.0e-6
    alpha2: 0.002
    beta1: 0.5
    act_mb_per_token: 0.5
    bandwidth_gbps: { intra: { 2: 100 }, inter: { 2: 10 } }
EOF
say "config $CFG"
if [ "$DRY" = 1 ]; then
  cat "$CFG"
  $DENO orchestrator/cli/plan.ts "$CFG" --steps 1 || { echo "error: the generated config does not plan" >&2; exit 1; }
  echo "dry run: would run launch ($STEPS steps, killed after step $KILL_AT, then --resume), profile --quick and the llama slice at $LENGTHS; results to $RES"
  echo "dry run: the llama slice: $PYTHON -m kernels.torch.llama_slice --shape '$LLAMA_SHAPE' --tokens $LENGTHS --policy selective --device $LLAMA_DEVICE${REQUIRE:+ --require-kernel '$REQUIRE'} --torch-profile"
  echo "dry run: then at $MID tokens under full checkpointing, and as $BATCH sequences of $(( MID / BATCH )) tokens"
  exit 0
fi

status() { echo "\"$1\": {\"code\": $2, \"seconds\": $3}"; }
PHASES=()

# ---- 2. launch, SIGKILL, --resume ----
say "launch: $STEPS steps, killed after step $KILL_AT, then --resume"
t=$(date +%s)
$DENO orchestrator/cli/launch.ts "$CFG" --run-dir "$WORK/run" > "$RES/launch.out" 2> "$RES/launch.err" &
lpid=$!
for _ in $(seq 1 110); do
  grep -qE "step +$KILL_AT/" "$RES/launch.out" "$RES/launch.err" 2>/dev/null && break
  kill -0 $lpid 2>/dev/null || break
  sleep 1
done
killed=0
if kill -0 $lpid 2>/dev/null; then kill -KILL $lpid && killed=1; fi
wait $lpid 2>/dev/null
sleep 2 # the agent notices its orchestrator is gone and stops the executors
timeout 110 $DENO orchestrator/cli/launch.ts "$CFG" --resume "$WORK/run" > "$RES/resume.out" 2> "$RES/resume.err"
rc=$?
[ $killed = 1 ] || { echo "launch was not killed mid-run (it ended before step $KILL_AT)" >&2; [ $rc = 0 ] && rc=4; }
PHASES+=("$(status launch $rc $(( $(date +%s) - t )))")
tail -n 5 "$RES/resume.out" >&2; [ $rc -ne 0 ] && tail -n 20 "$RES/launch.err" "$RES/resume.err" >&2
cp "$WORK/run/ledger.jsonl" "$RES/ledger.jsonl" 2>/dev/null
cp -r "$WORK/run/logs" "$RES/launch-logs" 2>/dev/null

# ---- 3. profile ----
say "profile --quick"
t=$(date +%s)
timeout 110 $DENO orchestrator/cli/profile.ts "$CFG" --quick --timeout 90 --run-dir "$WORK/profile-run" \
  > "$RES/profile.out" 2> "$RES/profile.err"
rc=$?
PHASES+=("$(status profile $rc $(( $(date +%s) - t )))")
tail -n 15 "$RES/profile.out" >&2; [ $rc -ne 0 ] && tail -n 20 "$RES/profile.err" >&2
cp "$WORK/profile.json" "$RES/profile.json" 2>/dev/null

# ---- 4. the llama-8B slice: bf16, flash varlen required ----
GPU_NAME="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)"
case "$GPU_NAME" in
  *H200*|*H100*SXM*|*H100\ 80GB\ HBM3*) PEAK=989 ;; *H100*) PEAK=756 ;; *A100*) PEAK=312 ;; *L40S*) PEAK=362 ;; *) PEAK=0 ;;
esac
slice() { # NAME TIMEOUT ARGS...: one llama_slice.py run -> $RES/NAME.json
  local name=$1 limit=$2
  shift 2
  local t0
  t0=$(date +%s)
  (PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" timeout "$limit" "$PYTHON" -m kernels.torch.llama_slice --shape "$LLAMA_SHAPE" --device "$LLAMA_DEVICE" \
    --repeats 2 --peak-tflops "$PEAK" ${REQUIRE:+--require-kernel "$REQUIRE"} "$@") > "$RES/$name.json" 2> "$RES/$name.err"
  local rc=$?
  PHASES+=("$(status "$name" $rc $(( $(date +%s) - t0 )))")
  cat "$RES/$name.json"; [ $rc -ne 0 ] && tail -n 20 "$RES/$name.err" >&2
}
say "llama 2-layer slice at $LENGTHS tokens (selective, bf16 on cuda)"
slice llama_slice 150 --tokens "$LENGTHS" --policy selective --torch-profile
say "llama slice at $MID tokens under full checkpointing"
slice llama_full 60 --tokens "$MID" --policy full
say "llama slice: $BATCH sequences of $(( MID / BATCH )) tokens"
slice llama_batch 60 --tokens "$MID" --sequences "$BATCH" --policy selective

# ---- summary ----
PHASES_JSON="{$(IFS=,; echo "${PHASES[*]}")}"
export LLAMA_SHAPE
$DENO --no-config --ext=ts - "$RES" "$PHASES_JSON" <<'EOF'
const [res, phasesJson] = Deno.args;
const read = (f: string) => { try { return Deno.readTextFileSync(`${res}/${f}`); } catch { return undefined; } };
const env = JSON.parse(read("env.json") ?? "null");
const ledger = (read("ledger.jsonl") ?? "").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
const after = ledger.slice(ledger.length > 6 ? 3 : ledger.length > 1 ? 1 : 0); // warm-up steps left out
const tokens = after.reduce((s, r) => s + r.tokens, 0), wall = after.reduce((s, r) => s + r.wallMs, 0);
const launch = ledger.length ? {
  steps: ledger.length, firstLoss: ledger[0].loss, lastLoss: ledger.at(-1).loss,
  tokensPerS: wall ? tokens / (wall / 1000) : null,
  stepMs: after.length ? after.reduce((s, r) => s + r.measuredMs, 0) / after.length : null,
  overheadMs: after.length ? after.reduce((s, r) => s + r.overheadMs, 0) / after.length : null,
} : null;
const rowsOf = (f: string) => (read(f) ?? "").split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
const llama = { slice: rowsOf("llama_slice.json"), full: rowsOf("llama_full.json"), batch: rowsOf("llama_batch.json") };
const resumed = /nothing to do|resum/i.test(read("resume.err") ?? "") || /resum/i.test(read("resume.out") ?? "");
const summary = { env, phases: JSON.parse(phasesJson), launch, resumed, profileWritten: read("profile.json") !== undefined, llama };
Deno.writeTextFileSync(`${res}/cuda_check.json`, JSON.stringify(summary, null, 2) + "\n");
const rows: string[][] = [["what", "result"]];
rows.push(["GPU", env?.nvidiaSmi ?? "?"]);
rows.push(["torch", `${env?.python?.torch ?? "-"} (CUDA ${env?.python?.cuda ?? "-"}, NCCL ${env?.python?.nccl ?? "-"})`]);
for (const [k, v] of Object.entries(summary.phases) as [string, { code: number; seconds: number }][]) {
  rows.push([`phase ${k}`, `${v.code === 0 ? "ok" : `FAILED (code ${v.code})`} in ${v.seconds} s`]);
}
if (launch) {
  rows.push(["launch", `${launch.steps} steps, loss ${launch.firstLoss.toFixed(3)} -> ${launch.lastLoss.toFixed(3)}, ` +
    `${Math.round(launch.tokensPerS ?? 0)} tok/s, step ${launch.stepMs?.toFixed(1)} ms, overhead ${launch.overheadMs?.toFixed(2)} ms`]);
}
const mb = (b?: number) => b === undefined ? "-" : (b / 2 ** 20).toFixed(3);
const pct = (x?: number | null) => x == null ? "-" : `${(100 * x).toFixed(1)}%`;
for (const [what, list] of [["slice", llama.slice], ["full ckpt", llama.full], ["batch", llama.batch]] as const) {
  for (const r of list) {
    const act = r.activationBytesPerToken ?? r.peakGrowthBytes / r.tokens;
    rows.push([`llama ${r.layers}L ${what} ${r.tokens}${r.sequences > 1 ? ` (${r.sequences} seqs)` : ""}`,
      `${Math.round(r.tokensPerS)} tok/s, MFU ${pct(r.mfu)} (LM head incl.), ${mb(act)} MB/token, ` +
      `${r.attention.split(";")[0]} on ${r.kernelInputs.join("/")}` +
      (r.profile ? `, GPU idle ${pct(r.profile.idleFraction)}` : "") + (r.requireFailed ? `, FAILED: ${r.requireFailed}` : "")]);
  }
}
const at32 = llama.slice.find((r) => r.tokens === 32768);
if (at32?.mfu != null) rows.push(["target: MFU >= 40% at 32K", `${pct(at32.mfu)}: ${at32.mfu >= 0.4 ? "met" : "MISSED"}`]);
const full = llama.full[0];
if (full?.activationBytesPerToken !== undefined) {
  const shape = JSON.parse(Deno.env.get("LLAMA_SHAPE") ?? "{}");
  const est = 2 * shape.hidden * shape.layers;
  rows.push(["full ckpt vs cost model", `${full.activationBytesPerToken.toFixed(0)} B/token measured (peak), ` +
    `2·hidden·layers = ${est} B/token kept + one layer's activations transiently`]);
}
const w = [0, 1].map((i) => Math.max(...rows.map((r) => r[i].length)));
console.log("\n## cuda_check\n\n" + rows.map((r) => r.map((c, i) => c.padEnd(w[i])).join("  ")).join("\n"));
console.log(`\nJSON: ${res}/cuda_check.json`);
EOF
say "done"
