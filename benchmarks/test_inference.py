"""Time per camera image against batch size, with memory, for every selected model and device.

One benchmark round is one camera image of the car (a different image each round): cutting it into
tiles and running all of its tiles through the model until the detections are on the host. The model
runs in a fresh worker process per case; warm-up and deployment happen before the rounds. The rounds
stop once the mean time per image is known tightly enough (odperf.measure.sampling), unless
``--odperf-images`` fixes their number.
"""

import pytest

from odperf.suite.judging import check_run
from odperf.engine.client import WorkerFailed
from odperf.measure.sampling import SamplingPlan, StopSampling
from odperf.zoo.registry import ModelMissing

pytestmark = [
    pytest.mark.timing,
    # a worker that ran out of memory or hung before the rounds leaves the fixture unused, by design
    pytest.mark.filterwarnings("ignore:Benchmark fixture was not used"),
]


def test_inference(odperf_case, odperf_suite, benchmark):
    suite, case = odperf_suite, odperf_case
    try:
        suite.locate(case)
    except ModelMissing as missing:
        pytest.skip(str(missing))
    request = suite.request(case)
    expect = suite.expectation(case)
    failed = None
    with suite.session(case, request, on_image=suite.progress.image_done) as worker:  # local, or a board's
        try:
            worker.start()
            images = iter(range(request.images))
            plan = suite.plan(case) or SamplingPlan.fixed(request.images)

            def setup():  # untimed: stop once the mean is tight, else build the round's image in the worker
                if plan.enough(worker.measurement.parent_times_s):
                    raise StopSampling
                return (worker.prepare(next(images)),), {}

            try:
                benchmark.pedantic(worker.run_image, setup=setup, rounds=request.images, iterations=1)
            except StopSampling:
                pass  # the rounds timed so far are pytest-benchmark's stats, as they are the record's
            measurement = worker.finish()
        except WorkerFailed as failure:
            failed = failure
    if failed is not None:
        # pytest-benchmark saves nothing for a benchmark that did not run: the record goes into the
        # JSON's "odperf" block instead, so reports still see the out-of-memory or crash.
        record = suite.record(suite.failure_record(case, failed))
        failures = check_run(record, expect, suite.images_per_car)
        if failures:
            pytest.fail("\n".join(failures), pytrace=False)
        return
    record = suite.record(suite.run_record(case, measurement))
    benchmark.extra_info.update(suite.saved_form(record))
    failures = check_run(record, expect, suite.images_per_car)
    assert not failures, "\n".join(failures)
