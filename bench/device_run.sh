#!/bin/bash
# One call on the GPU machine (see bench/README.md): `bash bench/device_run.sh tests|bench`.
# Carry .devdata (python bench/devdata.py pack .devdata; open_nsfw packed too; photos/; whl/
# with the pycuda wheels of ../shared/wheels) and, for `bench`, .old (`git archive` of the
# commit to compare with, unpacked): old and new run side by side in the same call.
# Logs and JSON come back as one $OUT/results.tgz (at most 8 files come back).
set -u
MODE=${1:-tests}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .devdata/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 TX2_INFER_CACHE=/tmp/tx2cache
T0=$(date +%s)
ROOT=$PWD
pack() { (cd $OUT && tar czf /tmp/results.tgz . && rm -rf ./* && mv /tmp/results.tgz .); }
since() { echo "[$1 $(( $(date +%s) - T0 )) s]"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/device.txt
python3 bench/devdata.py unpack .devdata /tmp/tx2cache/assets || exit 1
since unpacked

prepare() {  # $1: tree, $2: data folder
  (cd $1 && PYTHONPATH=/tmp/site:$PWD python3 bench/cuda_accuracy.py prepare $2) \
    > $OUT/prepare_$(basename $2).log 2>&1 || echo "prepare $1 failed"
}

if [ "$MODE" = int8 ]; then  # the INT8 kernels against the numpy emulation, then per layer
  export PYTHONPATH=/tmp/site:$PWD
  timeout ${TEST_S:-300} python3 -m pytest -q -p no:cacheprovider -rf -x --maxfail=20 \
    test/cuda/test_int8_kernels.py > $OUT/test_int8.log 2>&1
  since int8_tests
  timeout ${BENCH_S:-200} python3 bench/bench_int8_layers.py \
    --out $OUT/int8_layers_h200.json > $OUT/int8_layers.log 2>&1
  since int8_bench
  grep -E "FAILED|ERROR|passed|failed" $OUT/test_int8.log | cut -c1-250 | tail -n 25
  tail -n 15 $OUT/int8_layers.log | cut -c1-200
  pack
  exit 0
fi

if [ "$MODE" = splitk ]; then  # TESTS (pytest ids) on the GPU, then the split-K modes A/B
  prepare . /tmp/devdata
  since prepared
  export PYTHONPATH=/tmp/site:$PWD TX2_INFER_DEVDATA=/tmp/devdata
  timeout ${TEST_S:-240} python3 -m pytest -q -p no:cacheprovider -rfE \
    ${XDIST:+-n $XDIST --dist loadfile} ${TESTS:-test/cuda/test_conv_kernels.py} \
    > $OUT/test_cuda.log 2>&1
  since tests
  (cd bench && timeout ${BENCH_S:-200} python3 bench_splitk_modes.py --assets /tmp/tx2cache/assets \
    --out $OUT/splitk_modes_h200.json --deadline-s $(( ${BENCH_S:-200} - 40 )) \
    > $OUT/splitk_modes.log 2>&1)
  since bench
  grep -E "FAILED|ERROR|passed|failed" $OUT/test_cuda.log | cut -c1-220 | tail -n 25
  tail -n 8 $OUT/splitk_modes.log | cut -c1-250
  pack
  exit 0
fi

if [ "$MODE" = gpu ]; then  # every GPU test but the zoo models' (no pack here), then
  # bench_membound (old and new reduction kernels side by side)
  prepare . /tmp/devdata
  since prepared
  export PYTHONPATH=/tmp/site:$PWD TX2_INFER_DEVDATA=/tmp/devdata PIP_RETRIES=0 PIP_TIMEOUT=2
  timeout ${TEST_S:-330} python3 -m pytest -q -p no:cacheprovider -rfE \
    ${XDIST:+-n $XDIST --dist loadfile} --ignore=test/cuda/test_node_conformance_cuda.py \
    test/cuda > $OUT/test_cuda.log 2>&1
  since tests
  timeout ${BENCH_S:-60} python3 bench/bench_membound.py --out $OUT/membound_h200.json \
    > $OUT/membound.log 2>&1
  since membound
  grep -E "FAILED|ERROR|passed|failed" $OUT/test_cuda.log | grep -v "zoo\|madmom\|ddddocr\|slanet" \
    | cut -c1-220 | tail -n 30
  tail -n 12 $OUT/membound.log | cut -c1-200
  pack
  exit 0
fi

if [ "$MODE" = final ]; then  # every GPU test, then whole models FP16 vs INT8
  [ -n "${SKIP_TESTS:-}" ] && TEST_S=1
  prepare . /tmp/devdata
  PYTHONPATH=/tmp/site:$PWD python3 test/cuda/test_pipeline_batch.py prepare /tmp/devdata \
    > $OUT/prepare_batch.log 2>&1 || echo "batch prepare failed"
  since prepared
  export PYTHONPATH=/tmp/site:$PWD TX2_INFER_DEVDATA=/tmp/devdata
  timeout ${TEST_S:-330} python3 -m pytest -q -p no:cacheprovider -rf test/cuda \
    > $OUT/test_cuda.log 2>&1
  since tests
  (cd bench && timeout ${BENCH_S:-220} python3 bench_int8_models.py \
    --calibration-images $ROOT/.devdata/photos --out $OUT/int8_models_h200.json > $OUT/int8_models.log 2>&1)
  since int8_models
  grep -E "FAILED|ERROR|passed|failed" $OUT/test_cuda.log | cut -c1-220 | tail -n 25
  tail -n 6 $OUT/int8_models.log | cut -c1-250
  pack
  exit 0
fi

if [ "$MODE" = all ]; then  # every GPU test (zoo tests on .devdata/zoo), the CUDA node-test
  # conformance table, and bench_zoo on .devdata/zoo (python bench/zoo_data.py pack-names)
  prepare . /tmp/devdata
  since prepared
  export PYTHONPATH=/tmp/site:$PWD TX2_INFER_DEVDATA=/tmp/devdata TX2_INFER_ZOO_PACKED=$ROOT/.devdata/zoo
  # XDIST=N: N pytest workers, a file each at a time (the kernel cache is written atomically)
  timeout ${TEST_S:-330} python3 -m pytest -q -p no:cacheprovider -rfE \
    ${XDIST:+-n $XDIST --dist loadfile} --ignore=test/cuda/test_node_conformance_cuda.py \
    test/cuda > $OUT/test_cuda.log 2>&1
  since tests
  timeout ${CONF_S:-90} python3 test/cuda/test_node_conformance_cuda.py \
    $OUT/cuda_node_conformance_h200.json > $OUT/cuda_node_conformance_h200.log 2>&1
  since conformance
  [ -d .devdata/zoo ] && timeout ${ZOO_S:-120} python3 bench/bench_zoo.py --packed .devdata/zoo \
    --backend cuda --out-dir $OUT --tag h200_${ZOO_TAG:-small} --deadline-s $(( ${ZOO_S:-120} - 15 )) \
    > $OUT/zoo.log 2>&1
  since zoo
  grep -E "FAILED|ERROR|passed|failed" $OUT/test_cuda.log | cut -c1-200 | tail -n 25
  tail -n 8 $OUT/cuda_node_conformance_h200.log | cut -c1-200
  tail -n 8 $OUT/zoo.log | cut -c1-250
  pack
  exit 0
fi

if [ "$MODE" = tests ]; then
  prepare . /tmp/devdata
  since prepared
  export PYTHONPATH=/tmp/site:$PWD TX2_INFER_DEVDATA=/tmp/devdata
  timeout ${TEST_S:-330} python3 -m pytest -q -p no:cacheprovider -rA test/cuda \
    > $OUT/test_cuda.log 2>&1
  since tests
  timeout 150 python3 bench/cuda_accuracy.py run /tmp/devdata $OUT/cuda_accuracy.json \
    > $OUT/cuda_accuracy.log 2>&1
  since accuracy
  timeout 90 python3 bench/bench_pointwise.py --out $OUT/pointwise_h200.json \
    > $OUT/pointwise.log 2>&1
  since pointwise
  grep -E "FAILED|ERROR|passed|failed" $OUT/test_cuda.log | cut -c1-200 | tail -n 25
  tail -n 6 $OUT/cuda_accuracy.log | cut -c1-200
  tail -n 12 $OUT/pointwise.log | cut -c1-200
  pack
  exit 0
fi

# bench: the same benchmarks for the old tree (.old) and this one, alternating, same machine.
# MODE=bench runs the frame pipeline and bench_cuda's 'ours' phase; MODE=cuda the latter only.
if [ "$MODE" = bench ]; then
prepare .old /tmp/data_old &
prepare . /tmp/data_new &
wait
since prepared
fi
for round in $([ "$MODE" = bench ] && echo 1 2); do
  for tree in old new; do
    dir=$([ $tree = old ] && echo .old || echo .)
    (cd $dir && PYTHONPATH=/tmp/site:$PWD timeout 120 python3 bench/bench_pipeline.py \
      /tmp/data_$tree $OUT/pipeline_${tree}_$round.json > $OUT/pipeline_${tree}_$round.log 2>&1)
    since "pipeline $tree $round"
  done
done
for tree in old new; do
  dir=$([ $tree = old ] && echo .old || echo .)
  mkdir -p $OUT/cuda_$tree
  (cd $dir && PYTHONPATH=/tmp/site:$PWD timeout ${OURS_S:-150} python3 bench/bench_cuda.py \
    --phases ours --data $ROOT/.devdata --out-dir $OUT/cuda_$tree --tag h200 \
    --runs 200 --deadline-s ${OURS_S:-150} > $OUT/cuda_$tree.log 2>&1)
  since "bench_cuda $tree"
done
tail -n 4 $OUT/pipeline_*_2.log 2>/dev/null | cut -c1-200
tail -n 12 $OUT/cuda_*/*.md 2>/dev/null | cut -c1-200
pack
