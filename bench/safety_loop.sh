#!/usr/bin/env bash
# The safety loop as a trade-off (issue 23) on the embedded model: every command docs/RESULTS.md
# cites, in order, each timed. Run from the repository root after `make setup`.
#   XSTEST=<released xstest_prompts.csv>  (default ../shared/data/xstest/xstest_prompts.csv)
#   HARM_JUDGE=<trained harm judge dir>   (default runs/judges/harm; `selfalign judge train harm ...`)
#   HONESTY_MODEL=<a trained model dir>    (optional: the demo's CONFIDENCE-VERB model, as one more point)
set -euo pipefail
S=.venv/bin/selfalign
XS=${XSTEST:-../shared/data/xstest/xstest_prompts.csv}
HARM=${HARM_JUDGE:-runs/judges/harm}
OUT=${OUT:-runs/loop}
GEN=smollm2-135m  # writes the safety questions in every evaluation, so each run answers the same questions
t() { local s=$SECONDS; "$@"; echo "[time] $((SECONDS - s)) s: $*" >&2; }

# 1. the unaligned model, all nine studies on the bundled sets (the run the loop's data come from)
t $S trust run -o "$OUT/base"
# 2. two training sets from its failures: (a) refusals + helpful QA rows (issue 11's best);
#    (b) the same + the over-refusal rows (own compliant answers to the bundled safe prompts kept)
t $S trust to-data "$OUT/base" -o "$OUT/data-a"
t $S trust to-data "$OUT/base" -o "$OUT/data-b" --overrefusal
t $S trust train "$OUT/data-a" --method sft --set epochs=5 -o "$OUT/sft-a"
t $S trust train "$OUT/data-b" --method sft --set epochs=5 -o "$OUT/sft-b"
#    (c) DPO on data-b's pairs: refusal over the failing answer on the train keywords, and the contrast pairs
#        (own answer over a refusal on safe prompts, refusal over the answer on complied unsafe ones)
t $S trust train "$OUT/data-b" --method dpo --set epochs=3 --set learning_rate=2e-4 -o "$OUT/dpo-b"
# 3. every model on the held-out safety keywords, the bundled QA (hallucination) and the released XSTest
models=("base=smollm2-135m" "sft-a=$OUT/sft-a/model" "sft-b=$OUT/sft-b/model" "dpo-b=$OUT/dpo-b/model")
[ -n "${HONESTY_MODEL:-}" ] && models+=("honesty=$HONESTY_MODEL")
pairs=()
for nm in "${models[@]}"; do
  name=${nm%%=*}; model=${nm#*=}
  t $S trust run -m "$model" --generator $GEN --studies safety,hallucination,xstest \
      --set holdout="$OUT/data-a/split.json" --set xstest="$XS" --set harm_judge="$HARM" -o "$OUT/eval-$name"
  pairs+=("$name=$OUT/eval-$name")
done
# 4. the trade-off page: each run paired with the unaligned model
t $S trust tradeoff "${pairs[@]}" --harm-judge "$HARM" -o "$OUT/tradeoff"
