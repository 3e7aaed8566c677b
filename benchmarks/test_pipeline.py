"""Each case as the paper's system: cameras publish through a local Redis to detector instances of the
case's model, batch size and device; the collector joins detections back and scores mAP.

Runs when asked for (this file named, or ``-m pipeline``): a pass takes the line's car interval per car.
``--odperf-pipeline KEY=VALUE,...`` sets the pass (odperf.pipeline.settings: instances, cameras, cars,
car_interval_s, ...); the line's interval and deadline default to the case's, as the streaming pass's.
One benchmark round is one pass; its record (kind ``pipeline``) goes into ``extra_info`` and the saved JSON.
"""

import pytest

from odperf.pipeline.figures import summarize
from odperf.pipeline.record import fill_record, measured_instance, settings_from_text
from odperf.pipeline.run import run_pipeline
from odperf.stream.cases import line_for
from odperf.zoo.registry import ModelMissing

pytestmark = [pytest.mark.pipeline, pytest.mark.filterwarnings("ignore:Benchmark fixture was not used")]


def test_pipeline(odperf_pipeline_case, odperf_suite, benchmark, request):
    suite, case = odperf_suite, odperf_pipeline_case
    try:
        suite.locate(case)
    except ModelMissing as missing:
        pytest.skip(str(missing))
    expect = suite.expectation(case)
    interval = suite.expectations.profiles.get(case.target.expectations_profile, {}).get("car_interval_s")
    line = line_for(expect, interval)
    req = suite.request(case)
    base = dict(model=req.model, batch_size=req.batch_size, backend=req.backend, device=req.device,
                model_dir=req.model_dir, dataset_root=req.dataset_root, memory_limit_mb=req.memory_limit_mb,
                seed=req.seed, grid=req.grid)
    if line is not None:
        base.update(car_interval_s=line.car_interval_s, deadline_s=line.deadline_s)
    settings = settings_from_text(request.config.getoption("odperf_pipeline"), **base)
    run = None

    def go():
        nonlocal run
        run = run_pipeline(settings)

    benchmark.pedantic(go, rounds=1, iterations=1)
    summary = summarize(run)
    record = fill_record(suite.run_record(case, measured_instance(run)), run, summary)
    suite.record(record)
    benchmark.extra_info.update(suite.saved_form(record))
    assert summary.lost == 0, f"{summary.lost} of {summary.published} images lost: {summary.lost_reasons}"
