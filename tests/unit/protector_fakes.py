"""What the webhook's ProtectorIndex answers, faked over a plain collection of PodProtectors:
the decision tests and the drain planner's agreement test share it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime

from protectors.model import PodProtector


class IndexLookups:
    """``matching`` and ``admitted_at`` as the index gives them; a subclass supplies
    ``listed`` (the protectors, in the order ``matching`` returns them) and ``get``."""

    def listed(self) -> Iterable[PodProtector]:
        raise NotImplementedError

    def get(self, namespace: str, name: str) -> PodProtector | None:
        raise NotImplementedError

    def matching(self, namespace: str, labels: dict[str, str]) -> list[PodProtector]:
        # As the index does: the status stays out of it (``get`` has it).
        return [
            dataclasses.replace(p, status=None)
            for p in self.listed()
            if p.spec.label_selector.matches(labels)
        ]

    def admitted_at(self, namespace: str, name: str, cell_id: str, pod_uid: str) -> datetime | None:
        protector = self.get(namespace, name)
        cell = protector.status.cell(cell_id) if protector and protector.status else None
        starts = [b.start_time for b in cell.buckets if b.pod_uid == pod_uid] if cell else []
        return max(starts, default=None)
