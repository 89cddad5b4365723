#!/bin/bash
# One call (or the tail of one): plan load in fresh processes, trees interleaved
# (bench_plan_load.py). Carry .devslim (pycuda wheels) and the trees as .old/s12/NAME.tar.gz
# (`git archive REF | gzip`); this checkout is the tree 'here'.
#   TREES="main warm" bash bench/device_plan_load.sh      -> $OUT/plan_load.tgz
set -u
source bench/device_env.sh
SPEC=here=$PWD
for t in ${TREES:-}; do
  mkdir -p /tmp/trees/$t && tar xzf .old/s12/$t.tar.gz -C /tmp/trees/$t && SPEC=$SPEC,$t=/tmp/trees/$t
done
mkdir -p $OUT/plan_load
timeout ${LOAD_S:-200} python3 bench/bench_plan_load.py --model ${MODEL:-resnet50} \
  --trees $SPEC --rounds ${ROUNDS:-5} --out $OUT/plan_load/plan_load_h200.json \
  --profile $OUT/plan_load/load_profile.txt \
  > $OUT/plan_load/plan_load.log 2>&1
tail -n 4 $OUT/plan_load/plan_load.log | cut -c1-300
since "plan load"
(cd $OUT && tar czf /tmp/plan_load.tgz plan_load && rm -rf plan_load && mv /tmp/plan_load.tgz .)
