"""The engine's pieces that need no worker: the pipe protocol, outcome classification, the record."""

from __future__ import annotations

import os
import re
import signal
import threading
import traceback

import pytest

from odperf.engine.measurement import Deployment, Measurement
from odperf.engine.outcomes import classify_error, classify_exit, describe_exit, reason_from_message, reason_in_log
from odperf.engine.protocol import Channel, ChannelClosed, ChannelTimeout
from odperf.engine.request import MeasureRequest
from odperf.errors import WorkloadError
from odperf.measure.memory import MemoryStats, ProbeStats


@pytest.fixture
def pair():
    a_r, b_w = os.pipe()
    b_r, a_w = os.pipe()
    a, b = Channel(a_r, a_w), Channel(b_r, b_w)
    yield a, b
    a.close()
    b.close()


def test_messages_cross_whole_and_in_order(pair):
    a, b = pair
    big = {"cmd": "run", "payload": "x" * 200_000}  # larger than a pipe buffer: written in pieces
    sender = threading.Thread(target=lambda: [a.send(big), a.send({"n": 2})])
    sender.start()
    assert b.receive(timeout=10) == big
    assert b.receive(timeout=10) == {"n": 2}
    sender.join()


def test_receive_times_out_then_sees_the_other_end_close(pair):
    a, b = pair
    with pytest.raises(ChannelTimeout):
        b.receive(timeout=0.05)
    os.close(a.write_fd)
    a.write_fd = -1  # closed here: the fixture's a.close() must not close it again
    with pytest.raises(ChannelClosed):
        b.receive(timeout=1)
    os.close(a.read_fd)
    a.read_fd = -1
    with pytest.raises(ChannelClosed):
        b.send({"to": "nobody"})


def test_closing_a_channel_twice_leaves_a_file_that_took_its_number_open(tmp_path):
    """The second close (a session and its owner both cleaning up) must not close whatever file the kernel
    has since given one of the channel's old numbers: that file belongs to someone else."""
    r, w = os.pipe()
    channel = Channel(r, w)
    channel.close()
    other = os.open(str(tmp_path / "other"), os.O_CREAT | os.O_RDWR)  # the lowest free number: one of the two
    try:
        assert other in (r, w)
        channel.close()
        os.write(other, b"still open")
    finally:
        os.close(other)


def test_outcomes():
    assert classify_error("ResourceExhaustedError", "OOM when allocating tensor") == "oom"
    assert classify_error("MemoryError", "") == "oom"
    assert classify_error("InternalError", "CUDNN_STATUS_ALLOC_FAILED") == "oom"
    assert classify_error("ValueError", "bad shape") == "crash"
    # oneDNN's allocation failure under a memory cap (seen at batch 64 on a 400 MB emulated device)
    onednn = "Status: 1, message: could not create a primitive, in file tensorflow/core/kernels/mkl/mkl_conv_ops.cc"
    assert classify_error("AbortedError", onednn, capped=True) == "oom"
    assert classify_error("AbortedError", onednn) == "crash"
    assert classify_exit(-signal.SIGSEGV, "Fatal Python error", capped=False) == "crash"
    assert classify_exit(-signal.SIGKILL, "", capped=True) == "oom"  # the kernel's answer to a cap
    assert classify_exit(-signal.SIGABRT, "terminate called after throwing std::bad_alloc", capped=False) == "oom"
    assert classify_exit(1, "Traceback ...", capped=True) == "crash"
    assert describe_exit(-9) == "killed by signal SIGKILL (9)" and describe_exit(3) == "exited with code 3"


TF_OOM = """Graph execution error:

Detected at node Fill defined at (most recent call last):
<stack traces unavailable>
OOM when allocating tensor with shape[125000000] and type float on /job:localhost/replica:0/task:0/device:CPU:0 by allocator cpu
\t [[{{node Fill}}]]
Hint: If you want to see a list of allocated tensors when OOM happens, add report_tensor_allocations_upon_oom.
 [Op:__inference_signature_wrapper___call___89]"""


def test_the_reason_is_the_line_that_says_why():
    # TensorFlow's message as the worker got it: the allocation, not the boilerplate above it.
    assert reason_from_message("ResourceExhaustedError", TF_OOM) == (
        "ResourceExhaustedError: OOM when allocating tensor with shape[125000000] and type float on "
        "/job:localhost/replica:0/task:0/device:CPU:0 by allocator cpu")
    bad_shape = TF_OOM.replace("OOM when allocating tensor", "Matrix size-incompatible: In[0]: [64,4]")
    assert reason_from_message("InvalidArgumentError", bad_shape).startswith(
        "InvalidArgumentError: Matrix size-incompatible: In[0]: [64,4]")
    assert reason_from_message("ValueError", "") == "ValueError"
    assert len(reason_from_message("ValueError", "x" * 5000)) == 300


def test_a_dead_workers_log_gives_its_reason():
    try:
        {}["missing"]
    except KeyError as exc:
        trace = "".join(traceback.format_exception(exc))
    log = "I tensorflow/core/...: oneDNN custom operations are on.\n" + trace + "\n"
    assert reason_in_log(log) == "KeyError: 'missing'"
    abort = "2025 W some warning\nterminate called after throwing an instance of 'std::bad_alloc'\n  what():  std::bad_alloc\n"
    assert reason_in_log(abort) == "terminate called after throwing an instance of 'std::bad_alloc'"
    segv = "Fatal Python error: Segmentation fault\n\nCurrent thread 0x00007f (most recent call first):\n  File \"x.py\", line 3 in f\n"
    assert reason_in_log(segv) == "Fatal Python error: Segmentation fault"
    check = ("F0000 00:00:1700000000.1   123 gpu_device.cc:99] Check failed: status.ok() cuInit failed\n"
             "Fatal Python error: Aborted\n\nCurrent thread 0x00007f (most recent call first):\n")
    assert reason_in_log(check).endswith("Check failed: status.ok() cuInit failed")
    assert reason_in_log("W0000 a warning only\nI0000 and some info\n") is None
    assert reason_in_log("") is None and reason_in_log(None) is None


def test_request_is_checked_and_round_trips():
    r = MeasureRequest(model="m", batch_size=4, images=2, device="gpu:1", grid=[3, 2, 100])
    assert r.grid == (3, 2, 100) and r.gpu_index == 1 and r.tiles_per_image == 7
    assert MeasureRequest.from_dict(r.to_dict()) == r
    assert MeasureRequest(model="m", batch_size=64, images=1, seed=2**40).seed == 2**40
    for bad, says in (
        (dict(batch_size=0), "batch size"), (dict(images=0), "images"), (dict(device="tpu"), "device"),
        (dict(device="gpu:x"), "device"), (dict(memory_limit_mb=0), "memory_limit_mb"),
        (dict(timeout_s=0), "timeout_s"), (dict(start_timeout_s=0), "start_timeout_s"), (dict(grid=(1, 2)), "grid"),
        # A negative seed used to reach the worker and end as a crash of the model.
        (dict(seed=-1), "seed must be an integer >= 0, got -1"), (dict(seed=1.5), "seed"), (dict(seed=True), "seed"),
        (dict(batch_size=65), "batch size 65 is more than the 64 tiles"), (dict(batch_size=8.0), "batch size"),
        (dict(warmup_images=-1), "warmup_images"), (dict(timeout_s=float("nan")), "timeout_s"),
        (dict(sample_period_ms=-10), "sample_period_ms"), (dict(model=""), "model"),
        (dict(dataset_split=""), "dataset_split"), (dict(batch_policy="fast"), "batch_policy"),
        (dict(grid=(9, 0, 300)), "grid"), (dict(grid="abc"), "grid"),
        (dict(scorer="cocoapi"), "scorer must be one of faster-coco-eval, pycocotools, got 'cocoapi'"),
    ):
        with pytest.raises(WorkloadError, match=re.escape(says)):
            MeasureRequest(**{"model": "m", "batch_size": 8, "images": 2, **bad})


def memory(peak: float) -> MemoryStats:
    return MemoryStats(
        probe="host_rss", peak_mb=peak, mean_mb=peak / 2, samples=50, requested_period_ms=10.0,
        period_mean_ms=10.2, period_p99_ms=12.0, duration_s=0.5, sampler_cpu_fraction=0.004,
        probes={"host_rss": ProbeStats("host_rss", "process", peak, peak / 2, None, 50)},
        timeline=[[0.0, 1.0], [0.5, peak]],
    )


def test_record_maps_every_figure():
    r = MeasureRequest(model="ssd", batch_size=32, images=3)
    m = Measurement(
        request=r,
        deploy=Deployment(spawn_s=0.1, import_s=2.0, load_s=0.5, first_inference_s=0.9, warmup_s=0.9,
                          total_s=3.5, pid=1, batch_mode="tile_by_tile"),
        worker_times_s=[1.0, 2.0, 3.0], parent_times_s=[1.1, 2.1, 3.3],
        memory=memory(800.0), allocator={"current_mb": 10.0, "peak_mb": 700.0, "reserved_peak_mb": 760.0},
        device_info={"profile": "cpu", "name": "Some CPU"}, accuracy={"AP": 0.25, "AP50": 0.5},
    )
    rec = m.to_record(meta_arch="ssd")
    assert rec.time_per_image_s["mean"] == pytest.approx(6.5 / 3) and rec.images_timed == 3
    assert rec.car_time_s == pytest.approx(6.5 / 3 * 95) and rec.tiles_per_second == pytest.approx(64 / (6.5 / 3))
    assert rec.batch_mode == "tile_by_tile" and rec.meta_arch == "ssd" and rec.device_name == "Some CPU"
    assert rec.deploy_s == {"spawn": 0.1, "import": 2.0, "load": 0.5, "warmup": 0.9, "total": 3.5,
                            "first_inference": 0.9}
    assert (rec.peak_memory_mb, rec.memory_probe, rec.host_rss_peak_mb, rec.allocator_peak_mb,
            rec.allocator_reserved_peak_mb) == (800.0, "host_rss", 800.0, 700.0, 760.0)
    assert rec.sample_period_ms == {"requested": 10.0, "mean": 10.2, "p99": 12.0}
    assert rec.map == 0.25 and rec.memory_timeline[-1] == [0.5, 800.0]
    # The harness's own cost: paired image by image (parent minus worker clock), with its spread.
    assert rec.protocol_overhead_s == pytest.approx(0.1)
    assert rec.protocol_overhead_iqr_s == pytest.approx([0.1, 0.2])
    assert not hasattr(rec, "harness_efficiency")  # the bare loop's ratio is gone: it was noise
    # A harness's own times replace the parent's.
    rec2 = m.to_record(harness_times_s=[2.0, 2.0])
    assert rec2.time_per_image_s["mean"] == 2.0
    with pytest.raises(TypeError):
        m.to_record(no_such_field=1)
    import json

    json.dumps(rec.to_extra_info())  # JSON-plain


def test_a_boards_channel_owns_its_descriptors_and_the_popens_files_close_nothing_later(tmp_path):
    """A board's worker speaks over its process's stdin and stdout. The channel keeps copies it alone closes:
    once it is closed and the Popen's files are collected, a file that took one of those numbers stays open."""
    import gc
    import subprocess
    import sys

    from odperf.engine.remote import own_channel

    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.readline())"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    channel = own_channel(proc)
    channel.send({"echo": 1})
    assert channel.receive(timeout=30) == {"echo": 1}
    numbers = {channel.read_fd, channel.write_fd}
    channel.close()
    proc.wait(timeout=30)
    others = [os.open(str(tmp_path / f"other{k}"), os.O_CREAT | os.O_RDWR) for k in range(4)]
    try:
        assert numbers & set(others)  # the kernel gave the freed numbers out again
        del proc
        gc.collect()  # the Popen's file objects, if they still owned a number, would close it now
        for fd in others:
            os.write(fd, b"still open")
    finally:
        for fd in others:
            os.close(fd)
