"""Streaming: camera images arriving on a schedule, driven by MLPerf LoadGen inside the worker.

One LoadGen sample is one camera image of the workload (all its tiles through the model at the case's
batch size, detections on the host). ``settings`` says what a run asks of LoadGen, ``runner`` is the
system under test in the worker, ``session`` drives it from the parent (memory sampled as for timing),
``summary`` reads LoadGen's summary log, ``line`` turns the paper's line into a rate and a deadline and
finds the peak rate a device holds, ``record`` is what a stream run saves.
"""
