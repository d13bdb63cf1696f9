"""The fitted forecast state in ConfigMaps: one set per shard, one ConfigMap per part.

Why: a restarted controller (an upgrade, a crash, a leader change) should not spend hours
refitting what it had fitted (:mod:`autoscaler.forecasting.fit_state`). PHPA keeps the same kind of
state in a ConfigMap; so does this store, with the parts of one shard named
``<prefix>-0``, ``<prefix>-1``, ... up to `MAX_PARTS` (the prefix derives from the shard's
Lease, so shards never share a set). Each part is gzip-compressed JSON under 1 MiB, the
object limit, held in ``binaryData``. The parts are read, replaced and deleted by name
only, never listed: the Role then names exactly the objects it may touch
(``deploy/rbac.yaml``), as it does for the Lease, and the controller cannot list the
other ConfigMaps of its namespace. Every call goes through :meth:`KubeApi.call`, so a failure is one
of our error kinds; the controller logs it and carries on (a save is retried on the next
interval, a failed load means the targets fit from their history as after a first start).

The controller hands the store its whole set on every save, but changes one part per
save (it encodes one group of targets per cycle, :mod:`autoscaler.runtime.save_rounds`):
the store remembers a digest of what it last wrote under each name and writes only the
parts that differ, so a save at 1,000 targets is one write of ~150 KB, not eight.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence

from autoscaler.errors import NotFound
from autoscaler.kube.client import KubeApi

#: The data key of a part in ``binaryData``.
PART_KEY = "state.json.gz"
#: Label naming the set a part belongs to (its prefix); lists select on it.
SET_LABEL = "gpu-autoscaler.io/fit-state"
#: Label holding a part's index.
PART_LABEL = "gpu-autoscaler.io/fit-state-part"


#: Most parts a set holds (the names ``<prefix>-0`` .. ``<prefix>-7`` in the Role): 8 parts
#: of at most 700 KiB compressed hold the state of several thousand targets. The targets
#: of parts past it are not saved, and refit from their history after a restart.
MAX_PARTS = 8


class ConfigMapFitStore:
    """:class:`~autoscaler.ports.FitStateStore` over the ConfigMaps ``<prefix>-<i>`` in one namespace."""

    def __init__(self, api: KubeApi, *, namespace: str, prefix: str) -> None:
        """Configure the store (nothing is read or written yet).

        Args:
            api: The API client.
            namespace: The controller's own namespace.
            prefix: Name prefix of the parts, e.g. ``<lease name>-fit-state``; at most 50
                characters of a DNS-1123 label, so that ``-<index>`` still fits.
        """
        if not 0 < len(prefix) <= 50:
            raise ValueError(f"fit-state prefix must have 1-50 characters, got {prefix!r}")
        self.api = api
        self.namespace = namespace
        self.prefix = prefix
        #: Index -> digest of the part this store last wrote there (what a save may skip).
        self._written: dict[int, bytes] = {}

    def _name(self, index: int) -> str:
        return f"{self.prefix}-{index}"

    def load(self) -> list[bytes]:
        """The saved parts in index order (empty when none were saved).

        Reads ``<prefix>-0``, ``<prefix>-1``, ... until one is missing. A part that holds
        no readable data is skipped (the targets it held are refitted). Raises the
        translated API error when a read fails otherwise.
        """
        parts: list[bytes] = []
        for index in range(MAX_PARTS):
            name = self._name(index)
            try:
                answer = self.api.call(
                    self.api.core.read_namespaced_config_map,
                    name,
                    self.namespace,
                    what=f"read fit-state configmap {self.namespace}/{name}",
                )
            except NotFound:
                break
            item = self.api.api_client.sanitize_for_serialization(answer)
            data = (item.get("binaryData") or {}).get(PART_KEY)
            if not isinstance(data, str):
                continue
            try:
                parts.append(base64.b64decode(data, validate=True))
            except (ValueError, TypeError, binascii.Error):
                continue
        return parts

    def save(self, parts: Sequence[bytes]) -> None:
        """Write ``parts`` as ``<prefix>-0..n-1`` (replace or create), then delete the later names.

        At most `MAX_PARTS` are written. A part identical to the one this store last
        wrote under its name is not written again. The later names are always deleted
        (one call answering 404 when there are none): another replica that led before
        may have left more parts. A crash between writes leaves a mix of old and
        new parts; each part is a whole document of its own targets, so a load reads a
        consistent state per target.
        """
        kept = list(parts)[:MAX_PARTS]
        for index, data in enumerate(kept):
            digest = hashlib.sha256(data).digest()
            if self._written.get(index) == digest:
                continue
            self._written.pop(index, None)
            self._write(index, data)
            self._written[index] = digest
        self._delete_from(len(kept))
        for index in [i for i in self._written if i >= len(kept)]:
            del self._written[index]

    def _write(self, index: int, data: bytes) -> None:
        name = self._name(index)
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {SET_LABEL: self.prefix, PART_LABEL: str(index)},
            },
            "binaryData": {PART_KEY: base64.b64encode(data).decode("ascii")},
        }
        what = f"replace configmap {self.namespace}/{name}"
        try:
            self.api.call(self.api.core.replace_namespaced_config_map, name, self.namespace, body, what=what)
        except NotFound:
            self.api.call(
                self.api.core.create_namespaced_config_map,
                self.namespace,
                body,
                what=f"create configmap {self.namespace}/{name}",
            )

    def _delete_from(self, first: int) -> None:
        for index in range(first, MAX_PARTS):
            name = self._name(index)
            try:
                what = f"delete configmap {self.namespace}/{name}"
                self.api.call(self.api.core.delete_namespaced_config_map, name, self.namespace, what=what)
            except NotFound:
                break  # parts are written from 0 up, so nothing later exists either


def fit_store_prefix(lease_name: str) -> str:
    """The part-name prefix of the shard whose Lease is ``lease_name`` (at most 50 characters)."""
    return f"{lease_name[:40].rstrip('-.')}-fit-state"
