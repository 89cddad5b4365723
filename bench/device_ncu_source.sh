#!/bin/bash
# One call: Nsight Compute's full set and per-SASS-instruction samples of chosen kernels of a
# model (ours, from the graph): NCU_KERNELS (regex), NCU_COUNT (launches), NCU_EXTRA (more ncu
# flags), MODEL (bench_torch export name).
# Carry .devslim (bench/device_verify.sh). Results: $OUT/results.tgz.
set -u
source bench/device_env.sh
M=${MODEL:-bert_tiny} WORK=/tmp/tx2
python3 bench/bench_torch.py export --dir $WORK/onnx --models $M > $OUT/export.log 2>&1
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu | head -1)
timeout ${NCU_S:-200} $NCU --clock-control none --profile-from-start off --set full \
  --import-source no -k "regex:${NCU_KERNELS:-conv_mma_64x64$}" -c ${NCU_COUNT:-2} \
  ${NCU_EXTRA:-} -o $OUT/kernels python3 bench/ncu_launches.py ours --onnx $WORK/onnx/$M.onnx --passes 1 \
  > $OUT/ncu.log 2>&1
$NCU -i $OUT/kernels.ncu-rep --page raw --csv > $OUT/raw.csv 2>&1
$NCU -i $OUT/kernels.ncu-rep --page source --print-source sass --csv > $OUT/sass.csv 2>&1
$NCU -i $OUT/kernels.ncu-rep --page details --csv > $OUT/details.csv 2>&1
ls -la $OUT; tail -n 5 $OUT/ncu.log
rm -f $OUT/kernels.ncu-rep  # the CSVs hold what is read; the report is large
(cd $OUT && tar czf /tmp/results.tgz . && rm -rf ./* && mv /tmp/results.tgz .)
