"""COCO mAP of each selected model on the tiled workload, untimed: may be spread over processes (-n).

Under xdist each record reaches the controller through ``record_property`` (xdist carries a report's
user properties), and the controller writes them into the --benchmark-json file.
"""

import pytest

from odperf.suite.judging import check_run
from odperf.engine.client import measure
from odperf.results import ACCURACY
from odperf.plugin.session import RECORD_PROPERTY
from odperf.zoo.registry import ModelMissing

pytestmark = pytest.mark.accuracy


def test_accuracy(odperf_accuracy_case, odperf_suite, record_property):
    suite, case = odperf_suite, odperf_accuracy_case
    try:
        suite.locate(case)
    except ModelMissing as missing:
        pytest.skip(str(missing))
    request = suite.request(case, timed=False)
    record = suite.record(suite.run_record(case, measure(request, suite.session(case, request)), kind=ACCURACY))
    record_property(RECORD_PROPERTY, suite.saved_form(record))
    if record.map is not None:
        print(f"{case.accuracy_id}: COCO mAP@[.5:.95] {record.map:.3f}")
    failures = check_run(record, suite.expectation(case).accuracy_only(), suite.images_per_car)
    assert not failures, "\n".join(failures)
