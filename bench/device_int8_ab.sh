#!/bin/bash
# One call: the INT8 GPU tests of this checkout (bit-exact against the numpy emulation), then
# bench_int8_layers.py here and in an old tree, each with its own lowering (.old/tree: the
# whole tree, `git archive BASE | tar -x -C .old/tree`), and int8_bound.py of both. Carry
# .devslim and .old; everything comes back as $OUT/results.tgz.
#   TEST_S=200 BENCH_S=150 bash bench/device_int8_ab.sh
set -u
source bench/device_env.sh
if [ "${TEST_S:-200}" != 0 ]; then  # TEST_S=0: no tests
  timeout ${TEST_S:-200} python3 -m pytest -q -p no:cacheprovider -rfE -n ${XDIST:-6} \
    --dist loadfile test/cuda/test_int8_kernels.py test/cuda/test_qoperator_cuda.py \
    > $OUT/test_int8.log 2>&1
  grep -E "^FAILED|^ERROR| passed| failed" $OUT/test_int8.log | cut -c1-200 | tail -n 8
fi
since tests
for tree in ${RUNS:-new old new2}; do  # new twice, around old: drift shows as new vs new2
  dir=$PWD
  [ $tree = old ] && dir=$PWD/.old/tree
  (cd $dir && PYTHONPATH=/tmp/site:$dir timeout ${BENCH_S:-150} python3 \
    bench/bench_int8_layers.py --out $OUT/int8_layers_$tree.json > $OUT/int8_layers_$tree.log 2>&1)
  python3 bench/int8_bound.py $OUT/int8_layers_$tree.json --out $OUT/int8_bound_$tree.json \
    | tail -n 3
  since "layers $tree"
done
(cd $OUT && tar czf /tmp/results.tgz . && rm -rf ./* && mv /tmp/results.tgz .)
