"""A zarr store wrapper that records the key of every chunk read, to show what a lazy reader touched."""

from __future__ import annotations

from zarr.storage import WrapperStore


class CountingStore(WrapperStore):
    """Wraps any zarr v3-API store; ``keys`` lists every key read, in order (its read-only views count into the
    same list)."""

    def __init__(self, store) -> None:
        super().__init__(store)
        self.keys: list[str] = []

    def _with_store(self, store):
        view = super()._with_store(store)
        view.keys = self.keys
        return view

    async def get(self, key, prototype, byte_range=None):
        self.keys.append(key)
        return await super().get(key, prototype, byte_range)
