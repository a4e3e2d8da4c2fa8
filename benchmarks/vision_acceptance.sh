#!/usr/bin/env bash
# Issue 25's acceptance evaluation of synth-llava, as run on the lent H200 (notes/vision.md, "Mitigations
# measured"): independent scene sets (world seeds) of the broken and held-out splits; on each, POPE's three
# splits and CHAIR captions with no edit, VHR, PAINT and their random controls (one `vlm eval` per set,
# all conditions in one process), CARVE as an answerer on POPE questions, and CARVE's map study (where
# the contrast map peaks) on other scene sets. The sets run as parallel
# processes on one device (the 135M model leaves the GPU mostly idle). `vlm eval` resumes: running this
# again after a kill finishes what is missing.
#
#   bash benchmarks/vision_acceptance.sh OUT_DIR            # DEVICE=cuda, 100 scenes a set
#   DEVICE=cuda SCENES=60 DEADLINE=400 bash benchmarks/vision_acceptance.sh OUT   # what one call allows
#   DEVICE=cpu SCENES=10 CARVE_LIMIT=8 bash benchmarks/vision_acceptance.sh OUT   # a small CPU trial
set -euo pipefail
out=${1:?usage: vision_acceptance.sh OUT_DIR}
device=${DEVICE:-cuda}
scenes=${SCENES:-100}
carve_limit=${CARVE_LIMIT:-100}
batch=${BATCH_SIZE:-64}
sets=${SETS:-"broken:0 broken:1 broken:2 heldout:0"}
study_seeds=${STUDY_SEEDS-"1"}   # CARVE's map study (benchmarks/vision_carve.py); seed 0 ran on the CPU
study_scenes=${STUDY_SCENES:-"40 24"}   # held-out and broken scenes of each study seed
deadline=${DEADLINE:-0}   # seconds each process may run (0: no limit); a cut run keeps what it answered
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}   # a dozen processes share the host's cores
headscope=(python3 -m probe.cli)
mkdir -p "$out"
bounded() { if [ "$deadline" -gt 0 ]; then timeout -s TERM "$deadline" "$@"; else "$@"; fi; }

# the model is converted and cached once, before the parallel processes would race to build it
python3 -c "from probe.models import load_model; load_model('synth-llava')" > "$out/load.log" 2>&1

for set in $sets; do
  split=${set%%:*}; seed=${set##*:}; name=$split$seed; items="$out/sets/$name"
  "${headscope[@]}" vlm world --split "$split" --count "$scenes" --world-seed "$seed" --out "$items" > /dev/null
  pope=()
  for p in adversarial popular random; do pope+=(--pope "$items/world-${split}_pope_$p.json"); done
  bounded "${headscope[@]}" vlm eval --model synth-llava --device "$device" --batch-size "$batch" --no-progress \
    "${pope[@]}" --chair-captions --annotations "$items/world-${split}_annotations.jsonl" \
    --chair-vocabulary "$items/world_chair_vocabulary.json" --caption-prompt "Describe this image." \
    --edit vhr --edit vhr-random --edit paint --edit paint-random \
    --out "$out/eval-$name" > "$out/eval-$name.log" 2>&1 &
  bounded "${headscope[@]}" vlm eval --model synth-llava --device "$device" --answerer carve --no-progress \
    --pope "$items/world-${split}_pope_adversarial.json" --limit "$carve_limit" \
    --out "$out/carve-$name" > "$out/carve-$name.log" 2>&1 &
done
for seed in $study_seeds; do
  read -r study_heldout study_broken <<< "$study_scenes"
  bounded python3 benchmarks/vision_carve.py --world-seed "$seed" --device "$device" \
    --heldout "$study_heldout" --broken "$study_broken" \
    --out "$out/carve-study-$seed" > "$out/carve-study-$seed.log" 2>&1 &
done
wait
echo "done: $(ls -d "$out"/eval-* "$out"/carve-* | grep -v '\.log$' | wc -l) runs in $out"
