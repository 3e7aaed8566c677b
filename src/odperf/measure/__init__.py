"""Measuring what a run costs and yields: devices and profiles, memory probes and samplers, accuracy."""
