#!/bin/bash
# One closing GPU call: the zoo-model GPU tests of a small pack, the memory-bound kernels'
# A/B, bench_zoo on the pack, then the torch race in the time left (DEADLINE). Carry .devslim
# (photos/ and whl/ of .devdata) and a pack made by `python bench/zoo_data.py pack-names`
# (its folder name in ZOO_PACK). Everything comes back as $OUT/race.tgz.
set -u
T0=$(date +%s)
rm -rf .devdata .zoo && mv .devslim .devdata && mv ${ZOO_PACK:-.zoo_gp} .zoo
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .devdata/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TX2_INFER_CACHE=/tmp/tx2cache
export TX2_INFER_ZOO_PACKED=$PWD/.zoo PIP_RETRIES=0 PIP_TIMEOUT=2
timeout ${TEST_S:-170} python3 -m pytest -q -p no:cacheprovider -rfE ${TESTS} \
  > $OUT/tests.log 2>&1
grep -E "FAILED|ERROR|passed|failed" $OUT/tests.log | cut -c1-200 | tail -n 12
timeout 40 python3 bench/bench_membound.py --out $OUT/membound_h200.json > $OUT/membound.log 2>&1
tail -n 12 $OUT/membound.log | cut -c1-160
timeout ${ZOO_S:-120} python3 bench/bench_zoo.py --packed .zoo --backend cuda --out-dir $OUT \
  --tag h200_final --deadline-s $(( ${ZOO_S:-120} - 15 )) > $OUT/zoo.log 2>&1
tail -n 7 $OUT/zoo.log | cut -c1-240
LEFT=$(( ${BUDGET_S:-560} - $(date +%s) + T0 ))
echo "[$(( $(date +%s) - T0 )) s] race with ${LEFT} s"
if [ $LEFT -gt 150 ]; then
  DEADLINE=$(( LEFT - 30 )) bash bench/device_race.sh fast ${RACE_MODELS:-resnet50,yolov5s} \
    > /dev/null 2>&1
  tar xzf $OUT/race.tgz -O ./race.log 2>/dev/null | tail -n 14 | cut -c1-240
fi
ls $OUT
