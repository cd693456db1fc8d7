# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Procedural renderer of the synthetic world (NumPy + OpenCV, deterministic from a seed).

Objects are drawn in the normalised coordinates of their placement rectangle (u, v in [0, 1]),
so an object rendered straight into a square crop (``render_object_crop``, the fast path for
training data) looks like the same object cropped from a scene and resized to a square, which is
what the evaluator's box crops do. Silhouettes, patterns and material textures all scale with the
object, so attributes stay visible at 64 px.

Shading is a small Blinn-Phong model on pseudo-3D normals (cylinders for the lathe-like objects,
a sphere for the ball, three flat faces for the box); each material changes the albedo texture,
the diffuse/ambient balance and the specular term. Transparency is a real alpha blend with what
lies behind the object (glass also refracts: it shows the background mirrored).
"""

from dataclasses import dataclass, field

import cv2
import numpy as np

from .vocab import COLORS, ObjectSpec, random_spec

# Width / height of each category's placement rectangle in scenes.
ASPECT: dict[str, float] = {
    "mug": 1.15, "bottle": 0.5, "bowl": 1.7, "box": 1.1, "ball": 1.0, "can": 0.62, "cup": 0.75, "vase": 0.6,
}
ALPHA: dict[str, float] = {"opaque": 1.0, "translucent": 0.55, "transparent": 0.25}
# Silhouette edges of see-through objects stay fairly visible, as real glass edges do.
EDGE_ALPHA = 0.7

_VIEW = np.array([0.0, 0.0, 1.0], np.float32)


@dataclass
class SceneObject:
    spec: ObjectSpec
    box: tuple[float, float, float, float]  # xyxy pixels, tight around the drawn silhouette


@dataclass
class Scene:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    objects: list[SceneObject] = field(default_factory=list)
    seed: int = 0


@dataclass
class _Shape:
    mask: np.ndarray  # (h, w) bool
    nx: np.ndarray  # (h, w) float32 surface normal x (right)
    ny: np.ndarray  # (h, w) float32 surface normal y (down)
    shade: np.ndarray  # (h, w) float32 brightness factor (dark openings, bright lids)


# ---------------------------------------------------------------------------------------------
# Silhouettes
# ---------------------------------------------------------------------------------------------


def _grid(h: int, w: int, rows: tuple[int, int], cols: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Normalised coordinates of the pixel centres in rows/cols (a window of the h x w rect)."""
    u = ((np.arange(*cols, dtype=np.float32) + 0.5) / w)[None, :]
    v = ((np.arange(*rows, dtype=np.float32) + 0.5) / h)[:, None]
    return u, v


def _lathe(u, v, vs, rs, centre=0.5, cap=0.06, top="open") -> _Shape:
    """A body of revolution seen slightly from above: profile radius r(v), elliptic top and bottom."""
    r = np.interp(v, vs, rs).astype(np.float32)  # (h, 1)
    du = u - centre
    body = (np.abs(du) <= r) & (v >= cap) & (v <= 1 - cap)
    r_top = float(np.interp(cap, vs, rs))
    r_bot = float(np.interp(1 - cap, vs, rs))
    top_e = (du / r_top) ** 2 + ((v - cap) / cap) ** 2
    bottom = (du / r_bot) ** 2 + ((v - 1 + cap) / cap) ** 2 <= 1
    top_cap = (top_e <= 1) & (v <= cap)
    mask = body | bottom | (top_e <= 1)
    nx = np.clip(du / np.maximum(r, 1e-3), -1, 1)
    # A slight vertical curvature so highlights become spots rather than full-height stripes.
    ny = np.broadcast_to(np.clip(0.9 * (v - 0.45), -0.5, 0.5), mask.shape).copy()
    shade = np.ones(mask.shape, np.float32)
    if top == "open":
        inner = (du / (0.86 * r_top)) ** 2 + ((v - cap) / (0.72 * cap)) ** 2 <= 1
        shade[inner] = 0.42
        nx[inner] = -nx[inner]  # the inner wall is lit from the other side
    elif top == "lid":
        ny[top_cap] = -0.85
        nx[top_cap] *= 0.4
        shade[top_cap] = 1.1
    return _Shape(mask, nx.astype(np.float32), ny.astype(np.float32), shade)


def _mug(u, v) -> _Shape:
    s = _lathe(u, v, [0, 1], [0.36, 0.36], centre=0.38, cap=0.07, top="open")
    hu, hv = (u - 0.76) / 0.24, (v - 0.5) / 0.27
    outer = hu**2 + hv**2 <= 1
    inner = ((u - 0.76) / 0.12) ** 2 + ((v - 0.5) / 0.15) ** 2 <= 1
    handle = outer & ~inner & (u > 0.72) & ~s.mask
    s.mask |= handle
    s.nx[handle] = np.broadcast_to(np.clip(hu, -1, 1), handle.shape)[handle]
    s.ny[handle] = np.broadcast_to(np.clip(hv, -1, 1), handle.shape)[handle] * 0.8
    return s


def _bottle(u, v) -> _Shape:
    vs = [0.0, 0.27, 0.33, 0.40, 0.46, 1.0]
    rs = [0.13, 0.13, 0.3, 0.43, 0.47, 0.47]
    s = _lathe(u, v, vs, rs, cap=0.04, top="lid")
    s.shade[(v < 0.09) & s.mask] *= 0.7  # the cap
    return s


def _bowl(u, v) -> _Shape:
    vs = np.linspace(0.15, 0.9, 16)
    rs = 0.5 * np.sqrt(np.clip(1 - ((vs - 0.15) / 0.8) ** 2, 0, 1))
    rs = np.maximum(rs, 0.2)
    s = _lathe(u, v, np.r_[0.0, vs, 1.0], np.r_[0.5, rs, 0.2], cap=0.15, top="open")
    s.ny += 0.5 * np.clip((v - 0.3), 0, None)  # the underside turns away from the light
    return s


def _ball(u, v) -> _Shape:
    nx = np.broadcast_to((u - 0.5) / 0.5, (v.shape[0], u.shape[1])).astype(np.float32)
    ny = np.broadcast_to((v - 0.5) / 0.5, nx.shape).astype(np.float32)
    mask = nx**2 + ny**2 <= 1
    return _Shape(mask, nx.copy(), ny.copy(), np.ones(mask.shape, np.float32))


def _can(u, v) -> _Shape:
    s = _lathe(u, v, [0, 1], [0.5, 0.5], cap=0.07, top="lid")
    ridge = (np.abs(v - 0.13) < 0.012) | (np.abs(v - 0.87) < 0.012)
    s.shade[np.broadcast_to(ridge, s.mask.shape) & s.mask] *= 0.75
    return s


def _cup(u, v) -> _Shape:
    return _lathe(u, v, [0, 1], [0.5, 0.34], cap=0.07, top="open")


def _vase(u, v) -> _Shape:
    vs = [0.0, 0.06, 0.2, 0.42, 0.64, 0.86, 1.0]
    rs = [0.27, 0.24, 0.15, 0.36, 0.5, 0.4, 0.3]
    return _lathe(u, v, vs, rs, cap=0.05, top="open")


def _box(u, v) -> _Shape:
    d = 0.3  # depth of the oblique projection
    h, w = v.shape[0], u.shape[1]
    front = (u <= 1 - d) & (v >= d)
    top = (v < d) & (u >= d - v) & (u <= 1 - v)
    side = (u > 1 - d) & (v >= 1 - u) & (v <= 2 - d - u)
    mask = front | top | side
    nx = np.zeros((h, w), np.float32)
    ny = np.zeros((h, w), np.float32)
    nx[side] = 0.8
    ny[top] = -0.85
    # Faces are flat; a faint gradient keeps speculars from being all-or-nothing.
    nx += np.broadcast_to(0.25 * (u - 0.5), (h, w))
    ny += np.broadcast_to(0.25 * (v - 0.5), (h, w))
    return _Shape(mask, nx, ny, np.ones((h, w), np.float32))


_SHAPES = {
    "mug": _mug, "bottle": _bottle, "bowl": _bowl, "box": _box, "ball": _ball, "can": _can, "cup": _cup,
    "vase": _vase,
}


# ---------------------------------------------------------------------------------------------
# Albedo, patterns, materials
# ---------------------------------------------------------------------------------------------


def _pattern_color(rgb: np.ndarray) -> np.ndarray:
    """Light colours get a dark shade of themselves, dark ones near-white: always high contrast."""
    luminance = float(rgb @ np.array([0.299, 0.587, 0.114], np.float32))
    if luminance > 0.55:
        return rgb * 0.35
    return rgb * 0.2 + 0.8


def _pattern_mask(pattern: str, u, v, rng: np.random.Generator) -> np.ndarray | None:
    pu, pv = rng.uniform(0, 1, 2).astype(np.float32)
    if pattern == "striped":
        return np.broadcast_to(((v * 5.5 + pv) % 1.0) < 0.45, (v.shape[0], u.shape[1]))
    if pattern == "dotted":
        fu, fv = (u * 4.5 + pu) % 1.0 - 0.5, (v * 4.5 + pv) % 1.0 - 0.5
        return fu**2 + fv**2 < 0.27**2
    if pattern == "checkered":
        return ((np.floor(u * 4 + pu) + np.floor(v * 4 + pv)) % 2) == 1
    return None


def _shade(material: str, albedo, shape: _Shape, u, v, rng, light) -> tuple[np.ndarray, np.ndarray]:
    """Return (diffuse colour (h,w,3), additive white specular (h,w)) in [0, 1] units."""
    nx, ny = shape.nx, shape.ny
    nz = np.sqrt(np.clip(1 - nx**2 - ny**2, 0.02, 1))
    half = light + _VIEW
    half /= np.linalg.norm(half)
    ndl = np.clip(nx * light[0] + ny * light[1] + nz * light[2], 0, 1)
    ndh = np.clip(nx * half[0] + ny * half[1] + nz * half[2], 0, 1)
    shade = shape.shade[..., None]
    if material == "metal":
        # Sharp environment bands across the surface plus a bright streak: brushed metal.
        env = 0.5 + 0.5 * np.cos(3.4 * nx + 0.5)
        colour = albedo * (0.18 + 0.95 * env * (0.35 + 0.65 * ndl))[..., None] * shade
        streak = np.exp(-(((nx + 0.35) / 0.09) ** 2))
        spec = 0.85 * ndh**40 + 0.55 * streak
    elif material == "wood":
        phase = rng.uniform(0, 2 * np.pi)
        warp = 0.3 * np.sin(2 * np.pi * v * 1.2 + phase) + 0.08 * np.sin(v * 31)
        grain = np.sin(2 * np.pi * (u * 8.0 + warp))
        lines = np.clip((grain - 0.35) / 0.65, 0, 1)
        albedo = albedo * (1 - 0.45 * lines)[..., None]
        colour = albedo * (0.45 + 0.6 * ndl)[..., None] * shade
        spec = np.zeros_like(ndl)
    elif material == "plastic":
        colour = albedo * (0.38 + 0.68 * ndl)[..., None] * shade
        spec = 0.3 * ndh**8
    elif material == "glass":
        albedo = albedo * 0.75 + 0.25
        colour = albedo * (0.6 + 0.35 * ndl)[..., None] * shade
        rim = np.clip((np.sqrt(nx**2 + ny**2) - 0.72) / 0.28, 0, 1) ** 1.5
        line = np.exp(-(((nx + 0.5) / 0.06) ** 2))
        spec = 0.75 * rim + 0.7 * line + 0.5 * ndh**80
    elif material == "ceramic":
        colour = albedo * (0.66 + 0.36 * ndl)[..., None] * shade
        spec = 1.1 * ndh**90
    elif material == "fabric":
        weave = np.sign(np.sin(2 * np.pi * 22 * u)) * np.sign(np.sin(2 * np.pi * 22 * v))
        noise = rng.standard_normal(ndl.shape).astype(np.float32) * 0.06
        albedo = albedo * (0.86 + 0.12 * weave + noise)[..., None]
        colour = albedo * (0.5 + 0.5 * ndl)[..., None] * shade
        spec = np.zeros_like(ndl)
    else:
        raise ValueError(f"unknown material {material!r}")
    return colour.astype(np.float32), spec.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Public drawing API
# ---------------------------------------------------------------------------------------------


def draw_object(
    canvas: np.ndarray, spec: ObjectSpec, rect: tuple[int, int, int, int], rng: np.random.Generator
) -> tuple[float, float, float, float] | None:
    """Draw ``spec`` into ``rect`` = (x, y, w, h) of ``canvas`` (uint8 RGB, modified in place).

    The rect may extend past the canvas: only the visible part is drawn. Returns the tight xyxy
    box of the pixels drawn (pixel edges: x1 = last column + 1), or None when nothing visible was
    drawn. Only pixels inside that box are changed.
    """
    x, y, w, h = (int(a) for a in rect)
    if w < 2 or h < 2:
        raise ValueError(f"rect {rect} is smaller than 2 x 2 pixels")
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, canvas.shape[1]), min(y + h, canvas.shape[0])
    if x1 <= x0 or y1 <= y0:
        return None
    u, v = _grid(h, w, (y0 - y, y1 - y), (x0 - x, x1 - x))
    shape = _SHAPES[spec.category](u, v)
    if not shape.mask.any():
        return None
    light = np.array([-0.55 + rng.uniform(-0.15, 0.15), -0.25 + rng.uniform(-0.1, 0.1), 0.8], np.float32)
    light /= np.linalg.norm(light)

    base = np.asarray(COLORS[spec.color], np.float32) / 255.0
    base = np.clip(base * rng.uniform(0.94, 1.06) + rng.uniform(-0.03, 0.03, 3).astype(np.float32), 0, 1)
    albedo = np.broadcast_to(base, shape.mask.shape + (3,)).copy()
    pattern = _pattern_mask(spec.pattern, u, v, rng)
    if pattern is not None:
        albedo[pattern] = _pattern_color(base)
    colour, spec_light = _shade(spec.material, albedo, shape, u, v, rng, light)

    region = canvas[y0:y1, x0:x1]
    behind = region.astype(np.float32) / 255.0
    alpha = ALPHA[spec.transparency]
    if alpha < 1.0:
        if spec.material == "glass":
            # Refraction-ish: a glass body shows the background mirrored and slightly tinted.
            behind = behind[:, ::-1] * 0.85 + base * 0.15
        mask_u8 = shape.mask.astype(np.uint8)
        edge_px = max(1, round(min(w, h) / 40))
        edge = (mask_u8 - cv2.erode(mask_u8, np.ones((3, 3), np.uint8), iterations=edge_px)).astype(bool)
        alpha_map = np.full(shape.mask.shape, alpha, np.float32)
        alpha_map[edge] = max(alpha, EDGE_ALPHA)
        out = behind * (1 - alpha_map[..., None]) + colour * alpha_map[..., None]
        # Highlights sit on the surface: they stay visible on see-through objects.
        spec_light = spec_light * (0.5 + 0.5 * alpha_map)
    else:
        out = colour
    out = out + spec_light[..., None]
    out_u8 = (np.clip(out, 0, 1) * 255.0 + 0.5).astype(np.uint8)
    region[shape.mask] = out_u8[shape.mask]

    rows = np.flatnonzero(shape.mask.any(axis=1))
    cols = np.flatnonzero(shape.mask.any(axis=0))
    return (float(x0 + cols[0]), float(y0 + rows[0]), float(x0 + cols[-1] + 1), float(y0 + rows[-1] + 1))


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    c = rng.uniform(15, 240, 3).astype(np.float32)
    grey = c.mean()
    return grey + (c - grey) * np.float32(rng.uniform(0.15, 0.9))


def random_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A varied background: solid, gradient, smooth noise, tiles or planks, with sensor noise."""
    kind = rng.choice(["solid", "gradient", "noise", "tiles", "planks"], p=[0.2, 0.25, 0.25, 0.15, 0.15])
    c1, c2 = _random_colour(rng), _random_colour(rng)
    if kind == "solid":
        img = np.broadcast_to(c1, (height, width, 3)).astype(np.float32)
    elif kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        xx = np.arange(width, dtype=np.float32)[None, :]
        yy = np.arange(height, dtype=np.float32)[:, None]
        t = xx * np.float32(np.cos(angle)) + yy * np.float32(np.sin(angle))
        t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
        img = c1 + (c2 - c1) * t[..., None]
    elif kind == "noise":
        small = rng.uniform(0, 1, (int(rng.integers(2, 6)), int(rng.integers(2, 6)))).astype(np.float32)
        t = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
        img = c1 + (c2 - c1) * np.clip(t, 0, 1)[..., None]
    elif kind == "tiles":
        img = np.broadcast_to(c1, (height, width, 3)).astype(np.float32).copy()
        step = max(4, int(min(height, width) / rng.uniform(3, 8)))
        thick = max(1, step // 12)
        ox, oy = rng.integers(0, step, 2)
        for x0 in range(int(ox) % step, width, step):
            img[:, x0 : x0 + thick] *= 0.7
        for y0 in range(int(oy) % step, height, step):
            img[y0 : y0 + thick, :] *= 0.7
    else:  # planks
        step = max(3, int(min(height, width) / rng.uniform(3, 9)))
        bands = (np.arange(height) // step) % 2
        img = np.broadcast_to(c1, (height, width, 3)).astype(np.float32) * (1 - 0.12 * bands)[:, None, None]
    img = img + rng.standard_normal((height, width, 3), dtype=np.float32) * 3.0
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def render_background(seed: int, width: int = 320, height: int = 240) -> np.ndarray:
    """The background ``render_scene(seed, width, height)`` draws its objects on."""
    return random_background(np.random.default_rng([seed, 0]), height, width)


def render_scene(
    seed: int,
    width: int = 320,
    height: int = 240,
    n_objects: tuple[int, int] = (2, 5),
    specs: list[ObjectSpec] | None = None,
) -> Scene:
    """Several non-overlapping objects on a random background, deterministic from ``seed``.

    ``n_objects`` is an inclusive range; ``specs`` (optional) fixes the objects to draw. Objects
    that do not fit after a few placement tries are left out (``Scene.objects`` lists those drawn).
    """
    image = render_background(seed, width, height)
    rng = np.random.default_rng([seed, 1])
    if specs is None:
        count = int(rng.integers(n_objects[0], n_objects[1] + 1))
        specs = [random_spec(rng) for _ in range(count)]
    placed: list[tuple[int, int, int, int]] = []
    objects: list[SceneObject] = []
    gap = 3
    for spec in specs:
        for _ in range(40):
            h = int(rng.uniform(0.22, 0.55) * height)
            w = int(h * ASPECT[spec.category] * rng.uniform(0.9, 1.1))
            w = min(w, int(0.6 * width))
            h = max(h, 8)
            w = max(w, 8)
            if w >= width or h >= height:
                continue
            x = int(rng.integers(0, width - w + 1))
            y = int(rng.integers(0, height - h + 1))
            if all(x + w + gap <= px or px + pw + gap <= x or y + h + gap <= py or py + ph + gap <= y
                   for px, py, pw, ph in placed):
                box = draw_object(image, spec, (x, y, w, h), rng)
                if box is not None:
                    placed.append((x, y, w, h))
                    objects.append(SceneObject(spec, box))
                break
    return Scene(image=image, objects=objects, seed=seed)


def render_object_crop(spec: ObjectSpec, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """One object on a random background, framed as the evaluator frames a scene object (uint8 RGB).

    The evaluator crops an object's tight box the way open_clip preprocesses an image: short side
    resized to ``size``, centre square kept. So the object's short side spans the crop (minus a
    small random margin) and its long side is cut at the crop edges. The fast path for training data.
    """
    image = random_background(rng, size, size)
    aspect = ASPECT[spec.category] * rng.uniform(0.9, 1.1)
    near, far = rng.uniform(0, 0.06, 2) * size
    short = size - near - far
    jitter = rng.uniform(-0.03, 0.03) * size
    if aspect >= 1:
        w, h = short * aspect, short
        x, y = (size - w) / 2 + jitter, near
    else:
        w, h = short, short / aspect
        x, y = near, (size - h) / 2 + jitter
    draw_object(image, spec, (round(x), round(y), max(2, round(w)), max(2, round(h))), rng)
    return image
