"""A body's identity resolution, replayed in memory in body order.

The part of the identity graph a body can reach is read once (graph.load), under the body's
identity locks. Each event is then applied to that copy in the order it came, exactly as if the
events had arrived one request at a time: a track is placed by the graph as the events before it
left it, an identify links, merges and blocks identifiers, and moves the cold signals of the
visitor onto the lead. What changed is written back afterwards in a fixed number of statements
(graph.write), however many identifies the body holds.

Nothing here touches the store: every rule of placement and linking is in this file, once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from receiver.events import Placement

Key = tuple[str, str]  # (kind, value): ("anonymous_id", "a-1") or ("user_id", "u-1")
ANONYMOUS, USER = "anonymous_id", "user_id"


@dataclass(slots=True)
class Identifier:
    """An identifier as the graph knows it."""

    cluster: int
    lead_history: list[int]
    blocked: bool = False
    linked_by: int | None = None
    unlinked: frozenset[int] = frozenset()  # leads an admin unlinked it from: never again
    changed: bool = False  # to be written back
    blocked_now: bool = False  # blocked by this body (blocked_at is set on write)


@dataclass(frozen=True, slots=True)
class Rehydration:
    """Stored cold signals of these identifiers go onto the lead, linked by cause; the first
    rehydration of an identifier in body order is the one that finds them."""

    keys: tuple[Key, ...]
    lead_id: int
    cause: int


@dataclass
class Graph:
    """The reachable part of an account's identity graph, changed in place by replay."""

    identifiers: dict[Key, Identifier]
    cluster_leads: dict[int, int | None]  # cluster id -> its lead
    lead_clusters: dict[int, int]  # lead id -> its cluster
    max_leads: int
    new_clusters: dict[int, int | None] = field(default_factory=dict)  # temporary ids < 0
    removed_clusters: set[int] = field(default_factory=set)
    rehydrations: list[Rehydration] = field(default_factory=list)
    blocked: list[Key] = field(default_factory=list)
    _next_temporary: int = -1  # ids of new clusters until they are written

    def known(self, key: Key) -> Identifier | None:
        return self.identifiers.get(key)

    def lead_of_cluster(self, cluster: int) -> int | None:
        return self.cluster_leads.get(cluster)

    def linkable(self, keys: Iterable[Key]) -> list[Key]:
        return [k for k in keys if not ((i := self.known(k)) is not None and i.blocked)]

    def lead_of(self, keys: Iterable[Key]) -> int | None:
        """The lead of the first identifier (userId before anonymousId) that has one."""
        for key in keys:
            entry = self.known(key)
            if entry is not None and not entry.blocked:
                lead = self.lead_of_cluster(entry.cluster)
                if lead is not None:
                    return lead
        return None

    def place(self, keys: Sequence[Key]) -> Placement:
        usable = self.linkable(keys)
        lead_id = self.lead_of(usable)
        return Placement(lead_id, lead_id is None and bool(usable))

    def members(self, cluster: int) -> list[Key]:
        return [key for key, entry in self.identifiers.items() if entry.cluster == cluster]

    def link(
        self, keys: Sequence[Key], lead_id: int | None, cause: int
    ) -> tuple[int, int | None] | None:
        """Join keys into one cluster, resolved to lead_id if given (else to the lead one of
        them already has); returns (cluster, lead) or None when nothing could be linked. A key
        already on another lead moves alone (a shared device keeps its past with the earlier
        lead); a key that would reach more than max_leads leads is blocked instead."""
        keys = self.linkable(keys)
        if not keys and lead_id is None:
            return None
        lead_id = lead_id if lead_id is not None else self.lead_of(keys)
        keys = [k for k in keys if not self.unlinked_from(k, lead_id)]
        target = self._target_cluster(keys, lead_id)
        for key in keys:
            entry = self.known(key)
            if entry is None:
                history = [lead_id] if lead_id is not None else []
                self.identifiers[key] = Identifier(target, history, linked_by=cause, changed=True)
            elif entry.cluster == target:
                continue
            elif self.lead_of_cluster(entry.cluster) is None:
                self._merge_cluster(entry.cluster, target, lead_id)
            else:
                self._move(key, entry, target, lead_id, cause)
        return target, lead_id

    def unlinked_from(self, key: Key, lead_id: int | None) -> bool:
        entry = self.known(key)
        return entry is not None and lead_id is not None and lead_id in entry.unlinked

    def _target_cluster(self, keys: Sequence[Key], lead_id: int | None) -> int:
        if lead_id is not None:
            cluster = self.lead_clusters.get(lead_id)
            return cluster if cluster is not None else self._new_cluster(lead_id)
        for key in keys:
            entry = self.known(key)
            if entry is not None:
                return entry.cluster
        return self._new_cluster(None)

    def _new_cluster(self, lead_id: int | None) -> int:
        cluster = self._next_temporary
        self._next_temporary -= 1
        self.new_clusters[cluster] = lead_id
        self.cluster_leads[cluster] = lead_id
        if lead_id is not None:
            self.lead_clusters[lead_id] = cluster
        return cluster

    def _merge_cluster(self, source: int, target: int, lead_id: int | None) -> None:
        """Every identifier of a cluster without a lead moves into target, but those unlinked
        from its lead, which stay behind."""
        stays = False
        for key, entry in self.identifiers.items():
            if entry.cluster != source:
                continue
            if self.unlinked_from(key, lead_id):
                stays = True
                continue
            entry.cluster, entry.changed = target, True
            if lead_id is not None and lead_id not in entry.lead_history:
                entry.lead_history = [*entry.lead_history, lead_id]
        if stays:
            return
        self.cluster_leads.pop(source, None)
        if source in self.new_clusters:
            del self.new_clusters[source]
        else:
            self.removed_clusters.add(source)

    def _move(
        self, key: Key, entry: Identifier, target: int, lead_id: int | None, cause: int
    ) -> None:
        history = list(entry.lead_history)
        if lead_id is not None and lead_id not in history:
            history.append(lead_id)
        entry.lead_history, entry.changed = history, True
        if len(history) > self.max_leads:
            entry.blocked = entry.blocked_now = True
            self.blocked.append(key)
            return
        entry.cluster, entry.linked_by = target, cause

    def rehydrate(self, cluster: int, lead_id: int, cause: int) -> Rehydration:
        keys = tuple(k for k in self.members(cluster) if not self.identifiers[k].blocked)
        rehydration = Rehydration(keys, lead_id, cause)
        self.rehydrations.append(rehydration)
        return rehydration


@dataclass
class BodySignal:
    """A new signal of this body, placed as the replay goes."""

    keys: tuple[Key, ...]
    placement: Placement
    occurred_at: datetime


def move_cold_signals(signals: Sequence[BodySignal], rehydration: Rehydration) -> None:
    """The body's own cold signals so far that the rehydration moves onto its lead."""
    keys = set(rehydration.keys)
    for signal in signals:
        if signal.placement.is_cold and keys.intersection(signal.keys):
            signal.placement = Placement(rehydration.lead_id, False, rehydration.cause)
