#!/bin/bash
# ROS 2 on the GPU machine (issue 10): one call, `bash bench/device_ros.sh`, carrying .rosgpu:
#   .rosgpu/whl/     the cp312 ros-* wheels (+ colcon, catkin_pkg, empy; see bench/README.md)
#                    and the pycuda wheels of ../shared/wheels (bench/rosgpu_pack.sh)
#   .rosgpu/         yolov3-tiny.cfg, yolov3-tiny.weights16.xz, coco.names, photos/
# Builds a venv (.rosvenv, over the image's torch venv) and the test-only vision_msgs (.rosws)
# there, then runs the node benchmarks named in $BENCH (default: overhead cuda, overhead cpu,
# cameras). Logs and JSON come back as $OUT/results.tgz.
set -u
ROOT=$PWD
V=$ROOT/.rosvenv
T0=$(date +%s)
since() { echo "[$1 $(( $(date +%s) - T0 )) s]"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/device.txt
if [ ! -x $V/bin/colcon ]; then
  python3 -m venv --without-pip $V || exit 1
  # the image's packages (numpy, torch, onnx, cv2) stay visible to the venv
  python3 -c "import site; print('\n'.join(site.getsitepackages()))" \
    > $V/lib/python3.12/site-packages/zz_image_site.pth
  python3 -m pip --python $V/bin/python install -q --no-index --no-deps --no-compile .rosgpu/whl/*.whl \
    > $OUT/pip.log 2>&1 || { tail -5 $OUT/pip.log; exit 1; }
  # the fastdds wheel travels with one copy of its library (bench/README.md)
  (cd $V/lib && ln -sf libfastdds.so.3.2 libfastdds.so && ln -sf libfastdds.so.3.2 libfastdds.so.3.2.2)
  bash tools/fix_ros_cmake_exports.sh $V $V/bin/python
  since venv
  bash tools/build_vision_msgs.sh $V $ROOT/.rosws > $OUT/vision_msgs_build.log 2>&1 \
    || { tail -30 $OUT/vision_msgs_build.log; exit 1; }
  since vision_msgs
fi
export TX2_INFER_ROS_WS=$ROOT/.rosws TX2_INFER_CACHE=/tmp/tx2cache PYTHONUNBUFFERED=1 PYTHONPATH=$ROOT
A=$TX2_INFER_CACHE/assets; mkdir -p $A
mkdir -p /tmp/packed && cp .rosgpu/yolov3-tiny.cfg .rosgpu/coco.names /tmp/packed/
xz -dc .rosgpu/yolov3-tiny.weights16.xz > /tmp/packed/yolov3-tiny.weights16
cp .rosgpu/photos/* $A/
(cd bench && $V/bin/python -c "import devdata; print(devdata.unpack_all('/tmp/packed', '$A'))") \
  || exit 1
$V/bin/python -c "import rclpy, pycuda, tx2_infer_ros; print('rclpy ok')" || exit 1
since assets
# A/B against another tree: carry .old/s12/main.tar.gz (`git archive BASE | gzip`); the
# *_old cases run the node (and its bench) from it, in the same call.
OLD=/tmp/oldtree
if [ -f .old/s12/main.tar.gz ]; then mkdir -p $OLD && tar xzf .old/s12/main.tar.gz -C $OLD; fi
for b in ${BENCH:-overhead_cuda overhead_cuda_pycam overhead_cpu cameras}; do
  case $b in
    overhead_cuda_old|overhead_cuda_old2) (cd $OLD && PYTHONPATH=$OLD timeout 200 $V/bin/python \
      bench/bench_node_overhead.py --backend cuda --frames 300 \
      --out $OUT/node_overhead_cuda_${b#overhead_cuda_}_h200.json > $OUT/$b.log 2>&1) ;;
    overhead_cuda_new2) timeout 200 $V/bin/python bench/bench_node_overhead.py --backend cuda \
      --frames 300 --out $OUT/node_overhead_cuda_new2_h200.json > $OUT/$b.log 2>&1 ;;
    overhead_cuda_wake0|overhead_cuda_wake0_2) timeout 200 $V/bin/python \
      bench/bench_node_overhead.py --backend cuda --frames 300 --param cpu_wake_latency_us:=0 \
      --out $OUT/node_overhead_cuda_${b#overhead_cuda_}_h200.json > $OUT/$b.log 2>&1 ;;
    overhead_cuda_notrack) timeout 200 $V/bin/python bench/bench_node_overhead.py \
      --backend cuda --frames 300 --param track:=false \
      --out $OUT/node_overhead_cuda_notrack_h200.json > $OUT/$b.log 2>&1 ;;
    tracking_cost) (cd bench && timeout 200 $V/bin/python bench_tracking_cost.py --calls 1000 \
      --idle-calls 300 --before-tree $OLD --before ${OLD_COMMIT:-main} \
      --out $OUT/tracking_cost_h200host.json > $OUT/$b.log 2>&1) ;;
    overhead_cuda) timeout 200 $V/bin/python bench/bench_node_overhead.py --backend cuda \
      --frames 300 --out $OUT/node_overhead_cuda_h200.json > $OUT/$b.log 2>&1 ;;
    overhead_cuda_block256k) TX2_INFER_FRAME_BLOCK=262144 timeout 200 $V/bin/python \
      bench/bench_node_overhead.py --backend cuda --frames 300 \
      --out $OUT/node_overhead_cuda_block256k_h200.json > $OUT/$b.log 2>&1 ;;
    overhead_cuda_peer_single) timeout 200 $V/bin/python bench/bench_node_overhead.py \
      --backend cuda --frames 300 --peer-executor single \
      --out $OUT/node_overhead_cuda_peer_single_h200.json > $OUT/$b.log 2>&1 ;;
    overhead_cuda_again) timeout 200 $V/bin/python bench/bench_node_overhead.py --backend cuda \
      --frames 300 --out $OUT/node_overhead_cuda_again_h200.json > $OUT/$b.log 2>&1 ;;
    overhead_cpu_heap32) TX2_INFER_FRAME_BLOCK=33554432 timeout 150 $V/bin/python \
      bench/bench_node_overhead.py --backend cpu --frames 150 \
      --out $OUT/node_overhead_cpu_heap32_h200host.json > $OUT/$b.log 2>&1 ;;
    overhead_cuda_single) TX2_INFER_EXECUTOR=single timeout 200 $V/bin/python \
      bench/bench_node_overhead.py --backend cuda --frames 300 \
      --out $OUT/node_overhead_cuda_single_h200.json > $OUT/$b.log 2>&1 ;;
    overhead_cuda_rmw_default) RMW_FASTRTPS_USE_QOS_FROM_XML=0 timeout 200 $V/bin/python \
      bench/bench_node_overhead.py --backend cuda --frames 300 \
      --out $OUT/node_overhead_cuda_rmw_default_h200.json > $OUT/$b.log 2>&1 ;;
    overhead_cuda_dynamic) sed 's/>DYNAMIC_REUSABLE</>DYNAMIC</' config/fastdds_large_images.xml \
      > config/fastdds_dynamic_probe.xml
      timeout 200 $V/bin/python bench/bench_node_overhead.py --backend cuda --frames 300 \
      --dds-profile fastdds_dynamic_probe.xml \
      --out $OUT/node_overhead_cuda_dynamic_h200.json > $OUT/$b.log 2>&1 ;;
    overhead_cuda_shm) timeout 150 $V/bin/python bench/bench_node_overhead.py --backend cuda \
      --dds-profile fastdds_shm_only.xml --frames 300 \
      --out $OUT/node_overhead_cuda_shm_h200.json > $OUT/$b.log 2>&1 ;;
    cameras_batch4) timeout 200 $V/bin/python bench/bench_cameras.py --backend cuda --batch 4 \
      --dds-profile fastdds_shm_only.xml --out $OUT/cameras_cuda_batch4_shm_h200.json \
      > $OUT/$b.log 2>&1 ;;
    cameras_shm) timeout 200 $V/bin/python bench/bench_cameras.py --backend cuda \
      --dds-profile fastdds_shm_only.xml --out $OUT/cameras_cuda_shm_h200.json > $OUT/$b.log 2>&1 ;;
    overhead_cuda_pycam) timeout 150 $V/bin/python bench/bench_node_overhead.py --backend cuda \
      --python-camera --frames 200 --out $OUT/node_overhead_cuda_pycam_h200.json > $OUT/$b.log 2>&1 ;;
    overhead_cpu) timeout 150 $V/bin/python bench/bench_node_overhead.py --backend cpu \
      --frames 150 --out $OUT/node_overhead_cpu_h200host.json > $OUT/$b.log 2>&1 ;;
    transport) timeout 200 $V/bin/python bench/bench_transport.py --frames 300 \
      --out $OUT/transport_h200host.json > $OUT/$b.log 2>&1 ;;
    transport_floor) timeout 120 $V/bin/python bench/bench_transport.py --frames 300 \
      --executor events --node-heap --profiles 'shm + udp' \
      --out $OUT/transport_floor_h200host.json > $OUT/$b.log 2>&1 ;;
    cameras) timeout 200 $V/bin/python bench/bench_cameras.py --backend cuda \
      --out $OUT/cameras_cuda_h200.json > $OUT/$b.log 2>&1 ;;
  esac
  echo "$b rc=$?"; tail -n 3 $OUT/$b.log | cut -c1-300
  since $b
done
(cd $OUT && tar czf /tmp/results.tgz . && rm -rf ./* && mv /tmp/results.tgz .)
