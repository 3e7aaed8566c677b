"""Streams of camera images through each model, as MLPerf LoadGen's scenarios, with the line's verdict.

One LoadGen sample is one camera image of the workload (all its tiles through the model at the case's
batch size, detections on the host). LoadGen runs inside the case's worker; the scenarios of a case share
that worker. One benchmark round is one scenario's LoadGen run (the peak: its whole search); LoadGen's
summary goes into ``extra_info`` and the odperf record (kind ``stream``), its logs beside the saved JSON.
"""

from pathlib import Path

import pytest

from odperf.plugin.files import json_target
from odperf.suite.judging import check_run
from odperf.results import STREAM
from odperf.stream.cases import StreamRunner, line_for
from odperf.stream.options import check_logs
from odperf.stream.record import check_stream, fill_record
from odperf.zoo.registry import ModelMissing

pytestmark = [pytest.mark.stream, pytest.mark.filterwarnings("ignore:Benchmark fixture was not used")]


@pytest.fixture(scope="module")
def stream_runner(odperf_stream_plan):
    check_logs(odperf_stream_plan)
    with StreamRunner(odperf_stream_plan) as runner:
        yield runner


def test_stream(odperf_stream_case, odperf_suite, odperf_stream_plan, stream_runner, benchmark, request):
    suite, (case, scenario) = odperf_suite, odperf_stream_case
    try:
        suite.locate(case)
    except ModelMissing as missing:
        pytest.skip(str(missing))
    expect = suite.expectation(case)
    interval = suite.expectations.profiles.get(case.target.expectations_profile, {}).get("car_interval_s")
    line = line_for(expect, interval)
    name = f"{case.id}-{scenario}"
    result = None

    def run():
        nonlocal result
        result = stream_runner.run(case.id, suite.request(case), scenario, line, name)

    # setup (untimed): the case's worker is started and warmed once, for all its scenarios
    benchmark.pedantic(run, setup=lambda: stream_runner.warm(case.id, suite.request(case)), rounds=1, iterations=1)
    if result.skipped:
        pytest.skip(result.skipped)
    measured = result.failure.measurement if result.failure else stream_runner.session.measurement
    record = suite.run_record(case, measured, kind=STREAM)
    json_path = json_target(request.config.getoption("benchmark_json", None))
    fill_record(record, result, Path(json_path).parent if json_path else None)
    suite.record(record)
    benchmark.extra_info.update(suite.saved_form(record))
    # the few images timed one by one only calibrate the stream: the per-image deadlines are test_inference's
    failures = check_run(record, expect.accuracy_only(), suite.images_per_car) + check_stream(record, expect)
    assert not failures, "\n".join(failures)
