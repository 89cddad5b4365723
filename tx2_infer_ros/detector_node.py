"""``detector_node``: a lifecycle node that turns camera images into vision_msgs detections.

configure: validate parameters, load the plan or build (and cache) the engine, warm it up;
activate: per camera (``cameras``: image topics; default the one topic ``image``), subscribe
to its topic (or ``<topic>/compressed``) and publish ``detections`` (Detection2DArray) and
``annotated_image`` in its topic's namespace (``cameras.py``); publish ``~/frame_timing``;
deactivate: destroy them; cleanup: release the engine. Diagnostics go to ``/diagnostics`` at
1 Hz from configure to cleanup (the node, then one status per camera while active); with
``publish_timing`` each frame's stage times also go to ``~/frame_timing`` (DiagnosticArray
carrying the image's header, to match it with the detections). With ``track`` (default on)
each camera has a ByteTrack-class tracker (``tx2_infer_core/tracking.py``) whose track IDs go
in ``Detection2D.id``; the trackers are dropped on cleanup. With ``depth_topic`` the first
camera also publishes 3D positions on ``detections_3d`` (``depth_output.py``). A pose model's
detections carry their keypoints as extra 'keypoint/<index>' hypotheses (``cdr.py``, README).
Frames go through a keep-last-1 slot per camera to one worker thread (round-robin among the
cameras with a frame waiting), so inference always runs on a camera's newest frame; the rest
are counted as dropped. A malformed frame is refused by its header as it arrives and counted
under its cause (``intake.py``). One engine serves every camera; with ``batch`` > 1 the engine
is built for that many images and the worker runs the waiting frames of up to ``batch`` cameras
as one batch (``_process_batch``; ``batch_wait_ms`` waits for the other cameras).
"""
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rcl_interfaces.msg import SetParametersResult
from sensor_msgs.msg import Image

from tx2_infer_core import detect
from tx2_infer_core.detect_params import DetectParams
from tx2_infer_core.draw_pose import draw_detection_keypoints
from tx2_infer_core.tracking import ByteTracker, TrackParams
from tx2_infer_ros import cdr, conversions, depth_output, executors, params
from tx2_infer_ros.heap import build_memory_mapped, reuse_freed_memory
from tx2_infer_ros.pipeline import load_detector
from tx2_infer_ros.cameras import Camera
from tx2_infer_ros.cpu_latency import request_wake_latency
from tx2_infer_ros.intake import FrameIntake, diagnostic_array, header_of
from tx2_infer_ros.stats import STAGES, NodeStats, frame_timing_status, since_stamp

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
LIVE = ('conf_threshold', 'iou_threshold', 'max_detections', 'classes', 'publish_annotated',
        'publish_timing', 'track', 'track_buffer', 'track_high_threshold', 'track_match_iou',
        'keypoint_threshold')


class DetectorNode(LifecycleNode):
    """The detector lifecycle node (see the module docstring)."""

    def __init__(self, node_name='tx2_infer_detector', **kwargs):
        super().__init__(node_name, **kwargs)
        self._bad_overrides = self._declare_parameters()
        self._state = 'unconfigured'
        self.detector, self.info = None, {}
        self.stats, self.intake, self.cameras = NodeStats(), None, []
        self._timing_pub = self._diag_pub = self._diag_timer = self._qos_timer = None
        self._live = {}
        self.trackers = {}  # camera topic -> ByteTracker; kept until cleanup
        self.depth = None  # the first camera's DepthOutput while active, if depth_topic
        self._wake = None  # the CPU wake-up latency request while active, if asked for
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _declare_parameters(self) -> dict:
        """Declare every parameter; an invalid override is kept as an error for configure."""
        bad = {}
        for name in params.SPECS:
            try:
                self.declare_parameter(name, params.initial_value(name),
                                       params.descriptor(name))
            except (InvalidParameterValueException, InvalidParameterTypeException) as exc:
                bad[name] = f'invalid value given for {name}: {exc}'
                self.declare_parameter(name, params.initial_value(name), params.descriptor(name),
                                       ignore_override=True)
            if self.get_parameter_or(name).type_ == Parameter.Type.NOT_SET:
                self.set_parameters([params.typed_default(name)])
        return bad

    def _param(self, name):
        return self.get_parameter(name).value

    # ---- lifecycle -------------------------------------------------------------------------
    def on_configure(self, state):
        """Validate parameters and load the engine; FAILURE (with the reason logged) if not."""
        try:
            self._configure()
        except Exception as exc:  # noqa: BLE001 - any failure must leave a clean node
            self.get_logger().error(f'configure failed: {exc}')
            self._release_engine()
            return FAILURE
        self._state = 'inactive'
        self.get_logger().info(f'configured: {self.info}')
        return SUCCESS

    def _configure(self):
        errors = list(self._bad_overrides.values())
        errors += [e for e in (params.validate(n, self._param(n)) for n in params.SPECS) if e]
        if errors:
            raise ValueError('; '.join(errors))
        with build_memory_mapped():
            self.detector, self.info = load_detector(
                self._param('model_path'), self._param('labels_path'),
                self._param('input_size'), self._param('backend'), self._param('precision'),
                log=self.get_logger().info,
                int8_options={'calibration_images': self._param('calibration_images') or None,
                              'accuracy_budget': self._param('accuracy_budget')},
                batch=self._param('batch'), range_images=self._param('range_images'))
        self._live = self._live_params({n: self._param(n) for n in LIVE})
        self.stats = NodeStats()
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._diag_timer = self.create_timer(1.0, self._publish_diagnostics)

    def on_activate(self, state):
        """Create the cameras (publishers, then subscriptions) and the worker."""
        self._timing_pub = self.create_publisher(DiagnosticArray, '~/frame_timing', 10)
        compressed = self._param('input_type') == 'compressed'
        self.cameras = [Camera(self, topic, compressed, self._param('qos_depth'))
                        for topic in params.camera_topics(self._param('cameras'))]
        # GPU frames (~1 ms) run in the executor's thread when the worker is idle
        self.intake = FrameIntake(self.cameras, self.stats, self._process,
                                  self.get_logger().warn, inline=self.detector.path == 'gpu',
                                  batch=self.detector.batch, handle_many=self._process_batch,
                                  batch_wait=self._param('batch_wait_ms') / 1000.0)
        self.intake.start()
        self._wake = request_wake_latency(self._param('cpu_wake_latency_us'),
                                          self.get_logger().warn)
        self.depth = depth_output.from_params(self, self.cameras[0].topic)
        reliability = self._param('qos_reliability')
        for camera in self.cameras:
            camera.subscribe(self.intake.on_message, 'best_effort' if reliability == 'auto'
                             else reliability)
        if reliability == 'auto':
            self._match_publishers()
            self._qos_timer = self.create_timer(1.0, self._match_publishers)
        self._state = 'active'
        topics = ', '.join(c.sub.topic_name for c in self.cameras)
        self.get_logger().info(f'active: subscribed to {topics}')
        return super().on_activate(state)

    def _match_publishers(self):
        """qos_reliability auto: each camera follows its topic's publishers (at activate, then
        every second, so a new publisher is matched)."""
        for camera in self.cameras:
            camera.match_publishers()

    def on_deactivate(self, state):
        """Destroy the subscription, finish the frame in progress, destroy the publishers."""
        self._stop_io()
        self._state = 'inactive'
        return super().on_deactivate(state)

    def on_cleanup(self, state):
        """Release the engine and the diagnostics."""
        self._release_engine()
        self._state = 'unconfigured'
        return SUCCESS

    def on_shutdown(self, state):
        """Release everything, whatever the state."""
        self._stop_io()
        self._release_engine()
        self._state = 'finalized'
        return SUCCESS

    def on_error(self, state):
        """Release everything; the node goes back to unconfigured."""
        return self.on_shutdown(state)

    def _stop_io(self):
        """Unsubscribe, finish the frame in progress, count the frames left waiting, destroy
        the publishers."""
        if self._qos_timer is not None:
            self.destroy_timer(self._qos_timer)
        for camera in self.cameras:
            camera.unsubscribe()
        if self.intake is not None:
            self.intake.stop()
        for camera in self.cameras:
            camera.close()
        if self.depth is not None:
            self.depth = self.depth.close()
        if self._timing_pub is not None:
            self.destroy_publisher(self._timing_pub)
        if self._wake is not None:
            self._wake.close()
        self._timing_pub = self._qos_timer = self.intake = self._wake = None
        self.cameras = []

    def _release_engine(self):
        self.trackers = {}
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
        if self.detector is not None:
            self.detector.engine.close()
        self.detector = self._diag_pub = self._diag_timer = None

    # ---- parameters ------------------------------------------------------------------------
    def _live_params(self, values) -> dict:
        """Run-time settings for the worker (``detect``: the frame's ``DetectParams``);
        raises ValueError for an unknown class."""
        labels = self.detector.labels if self.detector else None
        out = dict(values)
        out['detect'] = DetectParams(values['conf_threshold'], values['iou_threshold'],
                                     values['max_detections'],
                                     params.resolve_classes(values['classes'], labels))
        # Every detection the detector reports (>= conf_threshold) may extend a track.
        out['track_params'] = TrackParams(
            high_threshold=values['track_high_threshold'], low_threshold=0.0,
            match_iou=values['track_match_iou'], buffer=values['track_buffer'])
        return out

    def _on_set_parameters(self, changes):
        live = dict(self._live)
        for p in changes:
            reason = params.validate(p.name, p.value)
            if reason is None and self._state == 'active' and p.name in params.REBUILD:
                reason = (f'{p.name} needs a new engine: deactivate and cleanup the node, '
                          'set it, then configure again')
            if reason is None and self._state == 'active' and p.name in params.RESUBSCRIBE:
                reason = f'{p.name} changes the subscription: deactivate, set it, then activate'
            if reason is None and p.name in LIVE and self.detector is not None:
                live[p.name] = p.value
                try:
                    live = self._live_params(live)
                except ValueError as exc:
                    reason = str(exc)
            if reason is not None:
                self.get_logger().warn(f'rejected {p.name}={p.value!r}: {reason}')
                return SetParametersResult(successful=False, reason=reason)
        for p in changes:
            self._bad_overrides.pop(p.name, None)
        if self.detector is not None:
            self._live = live  # the worker reads it at the start of the next frame
        return SetParametersResult(successful=True)

    # ---- frames ----------------------------------------------------------------------------
    def _process(self, camera, msg, arrival):
        """Worker: convert, detect, publish and time one frame of ``camera``; count it (for
        the node and the camera) if dropped."""
        got = self._decode(camera, msg, arrival)
        if got is not None:
            self._answer(camera, msg, arrival, *got, self._live)

    def _process_batch(self, frames):
        """Worker (batch > 1): decode the cameras' frames [(camera, msg, arrival)], detect them
        as one batch, then publish and count each as ``_process`` does."""
        live = self._live
        ready = [(c, m, a) + got for c, m, a in frames
                 for got in [self._decode(c, m, a)] if got is not None]
        if not ready:
            return
        batch_times = {}
        trackers = [self._tracker(r[0], live) for r in ready] if live['track'] else []
        try:
            found = self.detector.detect_batch([r[4] for r in ready], live['detect'],
                                               batch_times, overlap=_predict_all(trackers))
        except Exception as exc:  # noqa: BLE001 - one bad batch must not stop the node
            for camera, *_ in ready:
                self.intake.drop(camera, 'error', f'{type(exc).__name__}: {exc}')
            return
        for (camera, msg, arrival, times, image), dets in zip(ready, found):
            times.update(batch_times)
            self._answer(camera, msg, arrival, times, image, live, dets)

    def _decode(self, camera, msg, arrival):
        """(times so far, HxWx3 image) of a frame, or None when dropped (counted)."""
        t0 = time.perf_counter()
        waited = time.monotonic() - arrival
        times = {'wait': waited,
                 'receive': self._since_stamp(msg, arrival) - waited}
        image = self.intake.decode(camera, msg)
        if image is None:
            return None
        times['decode'] = time.perf_counter() - t0
        return times, image

    def _answer(self, camera, msg, arrival, times, image, live, dets=None):
        """Detect (unless ``dets`` are given), publish, count and time one frame."""
        try:
            dets = self._detect_and_publish(camera, msg, arrival, image, live, times, dets)
        except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the node
            self.intake.drop(camera, 'error', f'{type(exc).__name__}: {exc}')
            return
        self.stats.record({s: times[s] for s in STAGES}, times['latency'])
        camera.stats.record({}, times['latency'])
        if live['publish_timing']:
            timing = DiagnosticArray(header=header_of(msg), status=[
                frame_timing_status(self.get_name(), times, len(dets))])
            self._timing_pub.publish(timing)

    def _detect_and_publish(self, camera, msg, arrival, image, live, times, dets=None):
        """Detect (unless ``dets`` are given), publish the camera's Detection2DArray (and
        annotated image); adds the stage times and 'latency' (image stamp -> detections
        published) to ``times``."""
        tracker = self._tracker(camera, live) if live['track'] else None
        if dets is None:  # the tracker predicts while the GPU runs the frame
            dets = self.detector.detect(image, live['detect'], times,
                                        overlap=None if tracker is None else tracker.predict)
        t0 = time.perf_counter()
        track_ids = None if tracker is None else tracker.update(
            [(d.x1, d.y1, d.x2, d.y2) for d in dets], [d.score for d in dets],
            [d.class_id for d in dets])
        t1 = time.perf_counter()
        camera.detections.publish(cdr.detection_array_bytes(
            msg.sec, msg.nanosec, msg.frame_id, dets, track_ids, live['keypoint_threshold']))
        times['track'], times['publish'] = t1 - t0, time.perf_counter() - t1
        times['latency'] = self._since_stamp(msg, arrival)
        distances = None if self.depth is None else self.depth.add_frame(
            camera.topic, header_of(msg), image.shape, dets, track_ids)
        if live['publish_annotated']:
            drawn = detect.draw_detections(image, dets, track_ids, distances)
            draw_detection_keypoints(drawn, dets, live['keypoint_threshold'], track_ids)
            annotated = conversions.fill_image(Image(), drawn)
            annotated.header = header_of(msg)
            camera.annotated.publish(annotated)
        return dets

    def _tracker(self, camera, live):
        """The camera's tracker (made on its first frame) with the live settings."""
        tracker = self.trackers.get(camera.topic)
        if tracker is None:
            tracker = self.trackers[camera.topic] = ByteTracker(live['track_params'])
        tracker.params = live['track_params']
        return tracker

    def _since_stamp(self, view, arrival) -> float:
        """Seconds from a received image's stamp (``view.sec``, ``view.nanosec``) to now."""
        return since_stamp(view, self.get_clock().now().nanoseconds, arrival)

    def _publish_diagnostics(self):
        """The node's status, then one per camera (``intake.diagnostic_array``)."""
        info = dict(self.info, **self.depth.snapshot()) if self.depth else self.info
        if self.detector is not None and self.detector.batch > 1:
            info = dict(info, batches=str(self.detector.batches),
                        padded_slots=str(self.detector.padded))
        array = diagnostic_array(self.get_name(), self.stats, self.intake, info,
                                 self._state == 'active', self.trackers)
        array.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(array)


def _predict_all(trackers):
    """A callable that runs ``predict`` of each of ``trackers``; None for none."""
    if not trackers:
        return None

    def predict():
        for tracker in trackers:
            tracker.predict()
    return predict


def main(args=None):
    """Entry point of ``ros2 run tx2_infer_ros detector_node``."""
    reused = reuse_freed_memory()  # before the first big allocation
    rclpy.init(args=args)
    node = DetectorNode()
    if not reused:
        node.get_logger().info('mallopt unavailable: freed frame buffers go back to the OS')
    try:
        executors.spin(node)  # $TX2_INFER_EXECUTOR: events when rclpy has it (executors.py)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.on_shutdown(None)
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
