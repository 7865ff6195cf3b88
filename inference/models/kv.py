"""A pool of KV-cache slots: one row per running sequence, kept compact so a batch is always rows ``0 .. B-1``.

Keys and values of layer ``l`` live in ``k[l]`` / ``v[l]`` of shape ``[slots, n_kv_heads, length, head_dim]``. The
pool grows on demand (slots and length) and can be released when the engine is idle. A finished sequence's row is
refilled by moving the last row into it, so the running rows stay contiguous and attention reads a view, not a copy.
"""

from __future__ import annotations

import torch


def _round_up(n: int, to: int) -> int:
    return -(-n // to) * to


class SlotKV:
    """Per-layer key/value tensors indexed by slot and position."""

    def __init__(self, n_layers: int, n_kv_heads: int, head_dim: int, dtype: torch.dtype, device: torch.device):
        self.n_layers, self.n_kv_heads, self.head_dim = n_layers, n_kv_heads, head_dim
        self.dtype, self.device = dtype, device
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []
        self.slots = 0
        self.length = 0

    @property
    def nbytes(self) -> int:
        """Bytes the pool holds."""
        return sum(t.numel() * t.element_size() for t in self.k + self.v)

    def _alloc(self, slots: int, length: int) -> torch.Tensor:
        shape = (slots, self.n_kv_heads, length, self.head_dim)
        return torch.zeros(shape, dtype=self.dtype, device=self.device)

    def reserve(self, slots: int, length: int) -> None:
        """Make room for ``slots`` rows of ``length`` positions, keeping what is stored."""
        if slots <= self.slots and length <= self.length:
            return
        new_slots = max(self.slots, 1 << max(slots - 1, 0).bit_length())
        new_len = max(self.length, _round_up(length, 64))
        for store in (self.k, self.v):
            old = list(store)
            store.clear()
            for i in range(self.n_layers):
                fresh = self._alloc(new_slots, new_len)
                if old:
                    fresh[: self.slots, :, : self.length] = old[i]
                    old[i] = fresh  # drop the old tensor as soon as it is copied
                store.append(fresh)
        self.slots, self.length = new_slots, new_len

    def release(self) -> None:
        """Drop every tensor (the next ``reserve`` allocates afresh)."""
        self.k, self.v = [], []
        self.slots = self.length = 0

    def write(self, layer: int, rows: torch.Tensor, positions: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store k/v [B, H, T, D] at ``(rows[b, t], positions[b, t])``."""
        self.k[layer][rows, :, positions] = k.transpose(1, 2).to(self.dtype)
        self.v[layer][rows, :, positions] = v.transpose(1, 2).to(self.dtype)

    def view(self, layer: int, start: int, n: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of rows ``start .. start + n - 1``, first ``length`` positions (views, no copy)."""
        return self.k[layer][start : start + n, :, :length], self.v[layer][start : start + n, :, :length]

    def move(self, src: int, dst: int, length: int) -> None:
        """Copy row ``src`` (first ``length`` positions) into row ``dst``."""
        for store in (self.k, self.v):
            for t in store:
                t[dst, :, :length] = t[src, :, :length]

    def export(self, slot: int, length: int) -> torch.Tensor:
        """A compact copy of one row: [n_layers, 2, n_kv_heads, length, head_dim]."""
        out = torch.empty(
            (self.n_layers, 2, self.n_kv_heads, length, self.head_dim), dtype=self.dtype, device=self.device
        )
        for i in range(self.n_layers):
            out[i, 0] = self.k[i][slot, :, :length]
            out[i, 1] = self.v[i][slot, :, :length]
        return out

    def load(self, slot: int, snapshot: torch.Tensor, length: int) -> None:
        """Copy the first ``length`` positions of an exported row into ``slot``."""
        for i in range(self.n_layers):
            self.k[i][slot, :, :length] = snapshot[i, 0, :, :length]
            self.v[i][slot, :, :length] = snapshot[i, 1, :, :length]
