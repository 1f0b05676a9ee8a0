"""The aggregator: one per cell, counting the cell's pods into each PodProtector's status.

Modules, one concept each:
- ``reconcile``: the pure reconcile decision for one protector in one cell;
- ``synctime``: how far the cell's pod stream is known to be current (``clock``/``status``);
- ``pool``: the next-event pool of protectors waiting for the stream to move past a bucket;
- ``index``: finding the protectors whose aggregation selector matches a pod, and a pod's
  candidates for a protector, without scanning;
- ``update_trigger``: the dummy pod that keeps quiet cells producing events;
- ``observer``: the component's logs and metrics;
- ``controller``: the runtime-facing ``AggregatorController`` wiring them together.
"""
