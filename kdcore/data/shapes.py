"""`shapes` and `shapes_multilabel`: generated 32×32 RGB images of geometric shapes on noisy
backgrounds, each shape with its ground-truth pixel mask (so CAM localisation can be measured).

Eight kinds of shape with varied size, position and colour. The single-label variant draws one
shape per image; the multi-label variant draws 1 to 3 shapes of distinct kinds, each in its own
cell of a 2×2 grid so they never overlap. Everything is vectorised numpy from fixed seeds, so the
same images come back on every machine.
"""

from __future__ import annotations

import numpy as np
import torch

from kdcore.data.base import Dataset, SplitData

SHAPES = ("circle", "ring", "square", "frame", "triangle", "diamond", "plus", "cross")
SIZE = 32  # image height and width in pixels
NOISE_STD = 0.08  # per-pixel Gaussian noise added to every image
SPLIT_SIZES = {"train": 4000, "val": 500, "test": 1000}
SPLIT_SEEDS = {"train": 101, "val": 202, "test": 303}  # + 1000 for the multi-label variant


def _shape_masks(kind: np.ndarray, cx: np.ndarray, cy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Boolean masks [N, SIZE, SIZE] of shape kind[n] centred at (cx[n], cy[n]) with radius r[n]."""
    grid = np.arange(SIZE, dtype=np.float32) + 0.5
    dx = grid[None, None, :] - cx[:, None, None]  # [N, 1, W]
    dy = grid[None, :, None] - cy[:, None, None]  # [N, H, 1]
    dx, dy = np.broadcast_arrays(dx, dy)  # [N, H, W]
    r = r[:, None, None]
    adx, ady = np.abs(dx), np.abs(dy)
    d2 = dx * dx + dy * dy
    cheb = np.maximum(adx, ady)
    u, v = np.abs(dx - dy) / np.sqrt(2), np.abs(dx + dy) / np.sqrt(2)
    by_kind = {
        "circle": d2 <= r * r,
        "ring": (d2 <= r * r) & (d2 >= (0.55 * r) ** 2),
        "square": cheb <= 0.8 * r,
        "frame": (cheb <= 0.8 * r) & (cheb >= 0.4 * r),
        "triangle": (dy >= -0.8 * r) & (dy <= 0.8 * r) & (adx <= 0.6 * (dy + 0.8 * r)),
        "diamond": adx + ady <= r,
        "plus": ((adx <= 0.3 * r) & (ady <= r)) | ((ady <= 0.3 * r) & (adx <= r)),
        "cross": ((u <= 0.3 * r) & (v <= r)) | ((v <= 0.3 * r) & (u <= r)),
    }
    out = np.zeros(dx.shape, dtype=bool)
    for k, name in enumerate(SHAPES):
        sel = kind == k
        out[sel] = by_kind[name][sel]
    return out


def _render(
    rng: np.random.Generator, n: int, per_image: np.ndarray, num_slots: int, r_range: tuple[float, float], cells: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Images [n, 3, S, S] and class-indexed masks [n, C, S, S] with per_image[i] shapes each."""
    C = len(SHAPES)
    bg = rng.uniform(0.0, 1.0, size=(n, 3)).astype(np.float32)  # background colours
    images = np.broadcast_to(bg[:, :, None, None], (n, 3, SIZE, SIZE)).copy()
    masks = np.zeros((n, C, SIZE, SIZE), dtype=bool)
    kinds = np.argsort(rng.random((n, C)), axis=1)[:, :num_slots]  # distinct kinds per image
    slots = np.argsort(rng.random((n, 4)), axis=1)[:, :num_slots]  # distinct grid cells
    for s in range(num_slots):
        active = np.flatnonzero(per_image > s)
        m = len(active)
        r = rng.uniform(*r_range, size=m).astype(np.float32)
        if cells:  # 2×2 grid of 16×16 cells: the shape stays inside its cell
            half = SIZE // 2
            ox, oy = (slots[active, s] % 2) * half, (slots[active, s] // 2) * half
            cx = ox + r + rng.uniform(0, 1, m).astype(np.float32) * (half - 2 * r)
            cy = oy + r + rng.uniform(0, 1, m).astype(np.float32) * (half - 2 * r)
        else:
            cx = r + rng.uniform(0, 1, m).astype(np.float32) * (SIZE - 2 * r)
            cy = r + rng.uniform(0, 1, m).astype(np.float32) * (SIZE - 2 * r)
        k = kinds[active, s]
        shape = _shape_masks(k, cx, cy, r)  # [m, S, S]
        fg = _shape_colours(rng, bg[active])  # [m, 3]
        images[active] = np.where(shape[:, None], fg[:, :, None, None], images[active])
        masks[active, k] = shape
    images += NOISE_STD * rng.standard_normal(size=images.shape, dtype=np.float32)
    return np.clip(images, 0.0, 1.0, out=images), masks


def _shape_colours(rng: np.random.Generator, bg: np.ndarray) -> np.ndarray:
    """Shape colours [n, 3] in [0, 1], at least 0.5 (Euclidean) from the backgrounds bg [n, 3]."""
    fg = rng.uniform(0.0, 1.0, size=bg.shape).astype(np.float32)
    close = np.linalg.norm(fg - bg, axis=1) < 0.5
    fg[close] = 1.0 - bg[close]  # the complement is far unless bg is near mid-grey
    still = np.linalg.norm(fg - bg, axis=1) < 0.5
    fg[still] = np.where(bg[still] > 0.5, 0.0, 1.0)  # then snap each channel to black or white
    return fg


def _build(multilabel: bool) -> dict[str, SplitData]:
    out = {}
    for split, n in SPLIT_SIZES.items():
        rng = np.random.default_rng(SPLIT_SEEDS[split] + (1000 if multilabel else 0))
        if multilabel:
            per_image = rng.integers(1, 4, size=n)  # 1 to 3 shapes
            images, masks = _render(rng, n, per_image, 3, (3.5, 6.5), cells=True)
            targets = torch.from_numpy(masks.any(axis=(2, 3)).astype(np.float32))  # [N, C] multi-hot
        else:
            images, masks = _render(rng, n, np.ones(n, dtype=np.int64), 1, (5.0, 10.0), cells=False)
            targets = torch.from_numpy(masks.any(axis=(2, 3)).argmax(axis=1).astype(np.int64))  # [N]
        out[split] = SplitData(torch.from_numpy(images), targets, torch.from_numpy(masks))
    return out


def shapes() -> Dataset:
    """Single-label shapes: one shape per 32×32 image, 8 classes."""
    return _dataset(
        "shapes",
        multilabel=False,
        description="Generated 32×32 colour images of one geometric shape (8 kinds) on a noisy "
        "background, with each shape's pixel mask.",
    )


def shapes_multilabel() -> Dataset:
    """Multi-label shapes: 1 to 3 shapes of distinct kinds per 32×32 image, 8 classes."""
    return _dataset(
        "shapes_multilabel",
        multilabel=True,
        description="Generated 32×32 colour images holding 1 to 3 geometric shapes of distinct kinds "
        "(8 kinds) on a noisy background, with each shape's pixel mask.",
    )


def _dataset(name: str, *, multilabel: bool, description: str) -> Dataset:
    """A shapes Dataset over the 8 kinds: multi-label (1 to 3 per image) or single-label (one per image)."""
    return Dataset(
        name=name,
        task="multilabel" if multilabel else "classification",
        build=lambda: _build(multilabel),
        num_classes=len(SHAPES),
        class_names=list(SHAPES),
        description=description,
    )
