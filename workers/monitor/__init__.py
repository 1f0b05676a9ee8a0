"""The monitor: global gauges over every PodProtector of the core cluster (design.md §4 "Monitor").

- ``gauges``: the pure computation over raw PodProtector objects;
- ``observer``: the component's logs and metrics;
- ``controller``: the runtime-facing ``MonitorController``.
"""
