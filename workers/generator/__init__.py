"""The generator: turns protected workloads into PodProtectors in the core cluster (design.md §4).

Modules, one concept each:
- ``plugins``: what the generator knows about one workload kind (Deployment, StatefulSet);
- ``protector``: the PodProtector it renders for a workload (labels, finalizer, owner);
- ``decide``: the pure reconcile decision (workload, protector, options → actions);
- ``executor``: carries the actions out through the fenced core client;
- ``cell_removal``: ``remove-cell-once`` on any PodProtector, generated or not;
- ``expectations``: the generator's own writes its caches have not shown yet;
- ``observer``: every log line and metric of the component;
- ``controller``: informers, work queue and worker threads (the ``Controller`` the runtime runs).
"""
