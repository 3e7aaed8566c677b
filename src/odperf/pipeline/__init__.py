"""The paper's system end to end: camera producers -> a broker -> detector instances -> a collector.

``broker`` is the small interface every broker implements (Redis Streams with consumer groups by default,
``redis_broker``; NATS JetStream, ``nats_broker``; Kafka, ``kafka_broker``, configured but untested here).
``instance`` is a detector instance: today's worker process (``odperf.engine``: same runtimes, timing and
memory sampling) consuming camera images from the broker and publishing detections. ``producer`` publishes
the line's camera images at its rate, ``collector`` joins detections to their images and scores mAP,
``run`` drives one pass (faults included), ``figures`` turns it into latency parts, car completions and
backlog, ``search`` finds the cameras a deployment holds and measures instances per device.
"""
