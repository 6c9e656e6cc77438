"""Procedural RGB-D scenes with exact ground truth: the embedded default data of the book.

Scenes are ray cast in torch, all pixels and all objects of a frame at once:

- ``indoor``: a room (floor, walls, ceiling) with yaw-rotated furniture boxes, a bookcase, wall shelves,
  spheres and capped cylinders; NYU-like camera (fx 518.9, fy 519.5, cx 325.6, cy 253.7 at 640x480, scaled
  per axis with the resolution) held at 1.0-1.7 m and pitched down; depth in 0.5-10 m. Version 2 (the
  default since issue 9; ``version=1`` renders the first rooms byte for byte) draws NYU-like rooms, furniture
  against the walls, clutter, wall panels, a floor colour of its own, camera randomisation (exposure, white
  balance, contrast, noise) and a Kinect's depth noise and holes: see :func:`_indoor_nyu`. It changed the
  default indoor bytes (the golden hash of ``tests/test_data_synth.py``) once; outdoor scenes are unchanged.
- ``outdoor``: a street (ground, box buildings on both sides, cars, poles, trees) seen from 1.65 m like KITTI
  (fx = fy = 721.5 * W / 1242, KITTI's horizontal field of view, square pixels); sky and everything beyond
  80 m are invalid (depth 0, mask False).

Monocular cues are real: perspective projection, occlusion (z-buffer of exact intersections), texture
gradients (wood, tiles, stripes and value-noise textures fixed to surfaces), Lambertian shading from point
lights (indoor) or the sun (outdoor) with cast shadows (shadow rays traced at 1/``shadow_stride`` resolution
and linearly upsampled, hence soft).

Depth is the camera z (not the ray length), float32 metres.

Speed: camera rays are grouped in 16x16 tiles and each object is intersected only on the tiles its
projected bounding box touches (a batched pair list, merged with an exact integer ``amin``); shading runs
once per pixel on the nearest hit. ``render_batch`` draws the parameters and tile lists of all its frames in one
batched pass, renders the pixels of one or two frames per thread (few, large ops: the threads share the GIL
between ops), and raises glibc's malloc thresholds once per process (see ``_tune_allocator``;
``DEPTHLIB_NO_MALLOPT=1`` disables it).

Determinism: scene parameters come from a ``torch.Generator`` seeded with a hash of ``(seed, index)``; pixel
math uses only IEEE-exact float32 operations (+, -, *, /, sqrt, min, max, floor) and integer hashing, with no
BLAS, no transcendental function on pixels and no order-dependent reduction, so the same seed and index give
the same bytes on one machine, and for version 1 and outdoor scenes on every machine seen so far. Version 2's
indoor frames differ between an Intel and an AMD (Zen 4) machine this project ran on (each reproducible;
``tests/test_data_synth.py`` keeps both hashes, and statistics that hold on any machine). The RGB image is
quantised to 8 bits (k / 255), like a camera's.
"""

from __future__ import annotations

import ctypes
import hashlib
import numbers
import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ._common import DepthDataset

__all__ = ["SynthDataset", "render_batch", "scene_intrinsics", "SCENES"]

SCENES = ("indoor", "outdoor")
NYU_REF = (480, 640, 518.8579, 519.4696, 325.5824, 253.7362)
KITTI_REF = (375, 1242, 721.5377, 609.5593, 172.854)
INDOOR_DEPTH = (0.5, 10.0)
OUTDOOR_MAX_DEPTH = 80.0
# Object slots per scene (fixed so that frames batch); a disabled object is moved far below the floor.
_SLOTS = {"indoor": (7, 2, 2), "outdoor": (9, 3, 3), "indoor2": (11, 2, 2)}  # boxes, spheres, cylinders
#: Generator versions: 1 the first rooms (deep, bright, one colour for walls and floor, exact depth); 2 (the
#: default) NYU-like rooms with a Kinect's noise and holes, see :func:`_indoor_nyu`. Outdoor scenes are the
#: same in both.
VERSIONS = (1, 2)
_BIG = 1e30
_MISS_BITS = 0x7F000000  # OR-ed into a float32's bits: larger than any finite hit distance
_TYPE_BOX, _TYPE_SPHERE, _TYPE_CYL, _TYPE_INSIDE = 0, 1, 2, 3


def scene_intrinsics(scene: str, size: tuple[int, int]) -> torch.Tensor:
    """Camera of a generated frame of ``size = (H, W)``: ``(4,)`` float32 ``[fx, fy, cx, cy]`` in pixels."""
    h, w = size
    if scene == "indoor":
        rh, rw, fx, fy, cx, cy = NYU_REF
        return torch.tensor([fx * w / rw, fy * h / rh, cx * w / rw, cy * h / rh], dtype=torch.float32)
    if scene == "outdoor":
        rh, rw, f, cx, cy = KITTI_REF
        return torch.tensor([f * w / rw, f * w / rw, cx * w / rw, cy * h / rh], dtype=torch.float32)
    raise ValueError(f"scene={scene!r} is not one of {SCENES}")


def _frame_seed(seed: int, index: int, scene: str) -> int:
    digest = hashlib.sha256(f"depthlib.synth:{scene}:{int(seed)}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class _Draw:
    """Hands out consecutive columns of a ``(B, N)`` uniform [0, 1) table as named random variables."""

    def __init__(self, u: torch.Tensor) -> None:
        self.u, self.pos = u, 0

    def __call__(self, n: int = 1, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
        out = self.u[:, self.pos:self.pos + n]
        if out.shape[1] != n:
            raise RuntimeError("synth: random table too short")  # a programming error, caught by the tests
        self.pos += n
        return lo + (hi - lo) * out


_N_RANDOM = 256


@dataclass
class _Scene:
    """Per-frame parameters, batched: every tensor has a leading ``B``."""

    cam_pos: torch.Tensor  # (B, 3)
    cam_rot: torch.Tensor  # (B, 3, 3) world-from-camera, camera axes x right, y down, z forward
    table: torch.Tensor  # (B, F, K) object attributes, see _FIELDS
    n_box: int
    n_sph: int
    n_cyl: int
    lights: torch.Tensor  # (B, L, 4): position xyz + intensity (indoor) ; sun direction + intensity (outdoor)
    ambient: torch.Tensor  # (B, 1)
    outdoor: bool
    noise_seed: torch.Tensor  # (B, 1) int32
    post: torch.Tensor | None = None  # (B, 8) camera and sensor randomisation of version 2, see _indoor_nyu


# Rows of _Scene.table (one column per object; object 0 is the room, or the ground outdoors). "dr", "dg", "db"
# are the pattern colour minus the base colour (c2 - c1), subtracted once per object rather than per pixel.
# "box" is +1 for
# a box seen from outside, -1 for the room seen from inside (its normals point inwards), 0 otherwise; "sph"
# and "cyl" are 1 for spheres and cylinders: float flags, so shading selects per pixel with products.
_FIELDS = ("cx", "cy", "cz", "hx", "hy", "hz", "cos", "sin", "box", "sph", "cyl",
           "r1", "g1", "b1", "dr", "dg", "db", "freq", "k_grid", "k_wood", "k_noise", "grid_v",
           "fr", "fg", "fb", "k_floor")  # floor colour of the room (object 0), used where k_floor = 1 (version 2)
_F = {name: i for i, name in enumerate(_FIELDS)}


def _palette(draw: _Draw, n: int, base: Sequence[float], spread: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Two related colours per object: a base tint and a darker/lighter partner for the pattern."""
    b = torch.tensor(base, dtype=torch.float32)
    c1 = (b + draw(3 * n, -spread, spread).reshape(-1, n, 3)).clamp(0.05, 0.95)
    c2 = (c1 * draw(n, 0.55, 0.85).unsqueeze(-1)).clamp(0.02, 0.95)
    return c1, c2


def _materials(draw: _Draw, n: int) -> torch.Tensor:
    """``(B, n, 5)``: texture frequency and weights of grid lines, wood rings, noise, and whether the grid
    also has horizontal lines (tiles) or not (stripes). A random choice among plain, wood, tiles, stripes,
    noise per object, encoded as weights so that one formula shades every material."""
    kind = (draw(n) * 5).floor()  # 0 plain, 1 wood, 2 tiles, 3 stripes, 4 noise
    freq = draw(n, 1.5, 6.0)
    k_grid = ((kind == 2) | (kind == 3)).float() * 0.8
    k_wood = (kind == 1).float() * 0.8
    k_noise = torch.where(kind == 4, 0.9, 0.25)
    grid_v = (kind == 2).float()
    return torch.stack([freq, k_grid, k_wood, k_noise, grid_v], dim=-1)


def _rot_yaw_pitch_roll(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """World-from-camera rotation ``(B, 3, 3)``; trig on per-frame scalars in float64, rounded to float32."""
    yaw, pitch, roll = yaw.double(), pitch.double(), roll.double()
    cy_, sy_ = torch.cos(yaw), torch.sin(yaw)
    cp, sp = torch.cos(pitch), torch.sin(pitch)
    cr, sr = torch.cos(roll), torch.sin(roll)
    one, zero = torch.ones_like(yaw), torch.zeros_like(yaw)
    ry = torch.stack([cy_, zero, sy_, zero, one, zero, -sy_, zero, cy_], -1).reshape(-1, 3, 3)
    rx = torch.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).reshape(-1, 3, 3)
    rz = torch.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], -1).reshape(-1, 3, 3)
    flip = torch.diag(torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))  # camera y points down
    return (ry @ rx @ rz @ flip).float()


def _indoor(u: torch.Tensor) -> _Scene:
    draw = _Draw(u)
    b = u.shape[0]
    nb, ns, nc = _SLOTS["indoor"]
    room_w, room_h, room_d = draw(1, 3.0, 6.5), draw(1, 2.5, 3.2), draw(1, 4.0, 8.0)
    half = torch.cat([room_w / 2, room_h / 2, room_d / 2], 1)  # (B, 3)
    # Camera near the back wall (z = -D/2), facing +z into the room like a hand-held Kinect.
    cam = torch.cat([draw(1, -0.35, 0.35) * room_w, draw(1, 1.0, 1.7), -room_d / 2 + draw(1, 0.3, 0.9)], 1)
    rot = _rot_yaw_pitch_roll(draw(1, -0.45, 0.45)[:, 0], draw(1, 0.0, 0.35)[:, 0], draw(1, -0.05, 0.05)[:, 0])

    # Furniture boxes 0-3 on the floor, 4 a bookcase against a side wall, 5-6 shelves on walls.
    bx = torch.empty(b, nb, 3)
    bh = torch.empty(b, nb, 3)
    fh = torch.cat([draw(4, 0.2, 0.9).unsqueeze(-1), draw(4, 0.2, 0.6).unsqueeze(-1), draw(4, 0.2, 0.7).unsqueeze(-1)], -1)
    bh[:, :4] = fh
    bx[:, :4, 0] = draw(4, -0.5, 0.5) * (room_w - 2 * fh[..., 0])
    bx[:, :4, 1] = fh[..., 1]
    bx[:, :4, 2] = draw(4, -0.25, 0.5) * room_d
    side = (draw(1) < 0.5).float() * 2 - 1  # which side wall the bookcase leans on
    bh[:, 4] = torch.cat([draw(1, 0.15, 0.2), draw(1, 0.8, 1.1), draw(1, 0.3, 0.6)], 1)
    bx[:, 4] = torch.cat([side * (room_w / 2 - bh[:, 4, :1]), bh[:, 4, 1:2], draw(1, -0.1, 0.4) * room_d], 1)
    bh[:, 5:7] = torch.stack([draw(2, 0.3, 0.6), draw(2, 0.015, 0.03), draw(2, 0.09, 0.13)], -1)
    bx[:, 5:7, 0] = draw(2, -0.3, 0.3) * room_w
    bx[:, 5:7, 1] = draw(2, 1.1, 2.0)
    bx[:, 5:7, 2] = room_d / 2 - bh[:, 5:7, 2]  # against the far wall
    yaw = torch.cat([draw(4, -0.8, 0.8) * (draw(4) < 0.6).float(), torch.zeros(b, 3)], 1)

    # Keep furniture clear of the camera (at least 0.8 m in the floor plane) so depth stays above 0.5 m.
    dxz = bx[:, :, [0, 2]] - cam[:, None, [0, 2]]
    dist = dxz.norm(dim=-1, keepdim=True).clamp_min(1e-3)
    need = (0.8 + bh[:, :, [0, 2]].norm(dim=-1, keepdim=True)) - dist
    bx[:, :, [0, 2]] += dxz / dist * need.clamp_min(0)
    bx[:, :, 2] = torch.minimum(bx[:, :, 2], room_d / 2 - bh[:, :, 2])
    present = torch.cat([draw(4) < 0.85, draw(1) < 0.7, draw(2) < 0.6], 1)
    bx[:, :, 1] = torch.where(present, bx[:, :, 1], -100.0)

    # Spheres sit on furniture 0-1 or on the floor; cylinders stand on the floor.
    sr = draw(ns, 0.08, 0.3)
    on_box = draw(ns) < 0.6
    sx = torch.stack([torch.where(on_box, bx[:, :ns, 0], draw(ns, -0.4, 0.4) * room_w[:, :1]),
                      torch.where(on_box, bx[:, :ns, 1] + bh[:, :ns, 1], 0.0) + sr,
                      torch.where(on_box, bx[:, :ns, 2], draw(ns, 0.0, 0.45) * room_d[:, :1])], -1)
    cr, ch = draw(nc, 0.08, 0.3), draw(nc, 0.2, 0.9)
    cxz = torch.stack([draw(nc, -0.45, 0.45) * (room_w - 0.6), draw(nc, -0.1, 0.45) * (room_d - 0.6)], -1)
    cx = torch.stack([cxz[..., 0], ch, cxz[..., 1]], -1)
    sx[..., 1] = torch.where(draw(ns) < 0.85, sx[..., 1], -100.0)
    cx[..., 1] = torch.where(draw(nc) < 0.8, cx[..., 1], -100.0)

    centers = torch.cat([torch.cat([torch.zeros(b, 1), room_h / 2, torch.zeros(b, 1)], 1)[:, None], bx, sx, cx], 1)
    halves = torch.cat([half[:, None], bh, sr.unsqueeze(-1).expand(-1, -1, 3),
                        torch.stack([cr, ch, cr], -1)], 1)
    yaws = torch.cat([torch.zeros(b, 1), yaw, draw(ns, 0, 3.14), draw(nc, 0, 3.14)], 1)
    types = torch.tensor([_TYPE_INSIDE] + [_TYPE_BOX] * nb + [_TYPE_SPHERE] * ns + [_TYPE_CYL] * nc,
                         dtype=torch.float32).expand(b, -1)
    k = types.shape[1]
    c1, c2 = _palette(draw, k, (0.62, 0.55, 0.48), 0.3)
    mat = _materials(draw, k)
    # Lights hang under the ceiling; the first one casts the traced shadows.
    n_light = 2
    lights = torch.stack([draw(n_light, -0.35, 0.35) * room_w, room_h - 0.15 + torch.zeros(b, n_light),
                          draw(n_light, -0.3, 0.35) * room_d, draw(n_light, 0.8, 1.6)], -1)
    return _assemble(b, centers, halves, yaws, types, c1, c2, mat, nb, ns, nc, cam, rot, lights,
                     draw(1, 0.18, 0.3), draw, outdoor=False)


def _against_wall(draw: _Draw, n: int, room_w: torch.Tensor, room_d: torch.Tensor, hl: torch.Tensor,
                  hd: torch.Tensor, far_only: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Place ``n`` boxes per frame with their back against a wall (left, right or far), long side along it.

    ``hl, hd (B, n)``: half length along the wall and half depth away from it. Returns world ``x, z`` centres
    and half extents ``hx, hz``, each ``(B, n)``."""
    wall = torch.full_like(hl, 2.0) if far_only else (draw(n) * 3).floor()  # 0 left, 1 right, 2 far
    along = draw(n, -1.0, 1.0)
    side = wall < 2
    hx, hz = torch.where(side, hd, hl), torch.where(side, hl, hd)
    x = torch.where(wall == 0, -room_w / 2 + hx, torch.where(wall == 1, room_w / 2 - hx, along * (room_w / 2 - hx)))
    z = torch.where(side, along * (room_d / 2 - hz), room_d / 2 - hz)
    return x, z, hx, hz


def _indoor_nyu(u: torch.Tensor) -> _Scene:
    """Version 2 rooms, drawn to look like NYU Depth v2's to a network.

    - Rooms of bedrooms, offices and living rooms: 2.6-5.5 m wide, 3.0-7.0 m deep, 2.4-2.9 m high (NYU's test
      depths: median 2.5 m, 10-90% 1.4-5.1 m); walls, floor and ceiling in different colours (floor: wood,
      carpet or tiles).
    - A hand-held Kinect: anywhere in the back half of the room, 1.0-1.6 m high, pitched 6-26 degrees down,
      turned up to 46 degrees left or right (towards corners and side walls), rolled up to 3.4 degrees.
    - Furniture against the walls (a bed, sofa or table; up to three cabinets, desks or dressers; a bookcase
      or wardrobe), a free-standing table, clutter on their tops (small boxes, balls), bins or lamps on the
      floor and flat panels on the walls (pictures, windows, doors): textured by random materials.
    - Domain randomisation of the camera: exposure, white balance, contrast and sensor noise per frame.
    - A Kinect's depth: noise growing with the square of the distance (Nguyen et al. 2012: sigma = 1.2 mm +
      1.9 mm (z - 0.4 m)^2), holes in the projector's shadow beside depth edges and on dark surfaces.
    """
    draw = _Draw(u)
    b = u.shape[0]
    nb, ns, nc = _SLOTS["indoor2"]
    room_w, room_h, room_d = draw(1, 2.6, 5.5), draw(1, 2.4, 2.9), draw(1, 3.0, 7.0)
    half = torch.cat([room_w / 2, room_h / 2, room_d / 2], 1)
    cam = torch.cat([draw(1, -0.3, 0.3) * room_w, draw(1, 1.0, 1.6), -room_d / 2 + 0.3 + draw(1, 0.0, 0.25) * room_d], 1)
    rot = _rot_yaw_pitch_roll(draw(1, -0.8, 0.8)[:, 0], draw(1, 0.1, 0.45)[:, 0], draw(1, -0.06, 0.06)[:, 0])

    bx = torch.zeros(b, nb, 3)
    bh = torch.zeros(b, nb, 3)
    yaw = torch.zeros(b, nb)
    # 0: bed / sofa / big table; 1-3: cabinets, desks, dressers; 4: bookcase or wardrobe (all against walls)
    hl = torch.cat([draw(1, 0.5, 1.0), draw(3, 0.25, 0.7), draw(1, 0.3, 0.6)], 1)
    hh = torch.cat([draw(1, 0.2, 0.45), draw(3, 0.2, 0.6), draw(1, 0.7, 1.1)], 1)
    hd = torch.cat([draw(1, 0.4, 0.9), draw(3, 0.2, 0.35), draw(1, 0.15, 0.3)], 1)
    x, z, hx, hz = _against_wall(draw, 5, room_w, room_d, hl, hd)
    bx[:, :5] = torch.stack([x, hh, z], -1)
    bh[:, :5] = torch.stack([hx, hh, hz], -1)
    # 5: a free-standing table, turned a little
    bh[:, 5] = torch.cat([draw(1, 0.3, 0.7), draw(1, 0.2, 0.4), draw(1, 0.3, 0.6)], 1)
    bx[:, 5] = torch.cat([draw(1, -0.3, 0.3) * room_w, bh[:, 5, 1:2], draw(1, 0.0, 0.35) * room_d], 1)
    yaw[:, 5] = draw(1, -0.5, 0.5)[:, 0]
    # 6-8: clutter on the top of furniture 0-3 or 5
    parents = torch.tensor([0, 1, 2, 3, 5])
    parent = parents[(draw(3) * 5).floor().long().clamp_max(4)]  # (B, 3)
    ch_ = torch.stack([draw(3, 0.05, 0.25), draw(3, 0.04, 0.18), draw(3, 0.05, 0.2)], -1)
    pc = torch.gather(bx, 1, parent.unsqueeze(-1).expand(-1, -1, 3))
    ph = torch.gather(bh, 1, parent.unsqueeze(-1).expand(-1, -1, 3))
    off = torch.stack([draw(3, -0.7, 0.7), torch.zeros(b, 3), draw(3, -0.7, 0.7)], -1) * ph
    bx[:, 6:9] = pc + off + torch.stack([torch.zeros(b, 3), ph[..., 1] + ch_[..., 1], torch.zeros(b, 3)], -1)
    bh[:, 6:9] = ch_
    yaw[:, 6:9] = draw(3, -0.8, 0.8)
    # 9-10: pictures and windows on the walls, or a door standing on the floor
    ph_l, ph_h = draw(2, 0.2, 0.7), draw(2, 0.2, 0.6)
    door = draw(2) < 0.25
    ph_l = torch.where(door, draw(2, 0.4, 0.5), ph_l)
    ph_h = torch.where(door, draw(2, 0.95, 1.05), ph_h)
    x, z, hx, hz = _against_wall(draw, 2, room_w, room_d, ph_l, torch.full_like(ph_l, 0.02))
    y = torch.where(door, ph_h, draw(2, 1.1, 1.8))
    bx[:, 9:11] = torch.stack([x, y, z], -1)
    bh[:, 9:11] = torch.stack([hx, ph_h, hz], -1)

    # Spheres: balls, lamp shades on furniture; cylinders: bins, lamps, plant pots on the floor.
    sr = draw(ns, 0.06, 0.2)
    sp = parents[(draw(ns) * 5).floor().long().clamp_max(4)]
    spc = torch.gather(bx, 1, sp.unsqueeze(-1).expand(-1, -1, 3))
    sph = torch.gather(bh, 1, sp.unsqueeze(-1).expand(-1, -1, 3))
    sx = torch.stack([spc[..., 0] + draw(ns, -0.6, 0.6) * sph[..., 0], spc[..., 1] + sph[..., 1] + sr,
                      spc[..., 2] + draw(ns, -0.6, 0.6) * sph[..., 2]], -1)
    cr, chh = draw(nc, 0.08, 0.25), draw(nc, 0.1, 0.5)
    cx = torch.stack([draw(nc, -0.45, 0.45) * room_w, chh, draw(nc, -0.1, 0.45) * room_d], -1)

    # Nothing within reach of the camera (depth stays above 0.5 m): such an object is left out.
    present = torch.cat([draw(1) < 0.9, draw(3) < 0.75, draw(1) < 0.6, draw(1) < 0.6, draw(3) < 0.7,
                         draw(2) < 0.7], 1)
    reach = 0.55 + bh[:, :, [0, 2]].norm(dim=-1)
    present &= (bx[:, :, [0, 2]] - cam[:, None, [0, 2]]).norm(dim=-1) > reach
    bx[:, :, 1] = torch.where(present, bx[:, :, 1], -100.0)
    s_ok = (draw(ns) < 0.6) & ((sx[..., [0, 2]] - cam[:, None, [0, 2]]).norm(dim=-1) > 0.55 + sr)
    c_ok = (draw(nc) < 0.6) & ((cx[..., [0, 2]] - cam[:, None, [0, 2]]).norm(dim=-1) > 0.55 + cr)
    sx[..., 1] = torch.where(s_ok, sx[..., 1], -100.0)
    cx[..., 1] = torch.where(c_ok, cx[..., 1], -100.0)

    centers = torch.cat([torch.cat([torch.zeros(b, 1), room_h / 2, torch.zeros(b, 1)], 1)[:, None], bx, sx, cx], 1)
    halves = torch.cat([half[:, None], bh, sr.unsqueeze(-1).expand(-1, -1, 3), torch.stack([cr, chh, cr], -1)], 1)
    yaws = torch.cat([torch.zeros(b, 1), yaw, draw(ns, 0, 3.14), draw(nc, 0, 3.14)], 1)
    types = torch.tensor([_TYPE_INSIDE] + [_TYPE_BOX] * nb + [_TYPE_SPHERE] * ns + [_TYPE_CYL] * nc,
                         dtype=torch.float32).expand(b, -1)
    k = types.shape[1]
    # Colours by role: light walls, furniture in wood / white / dark tones, saturated clutter.
    walls = _palette(draw, 1, (0.78, 0.74, 0.68), 0.15)
    furn = _palette(draw, 6, (0.5, 0.4, 0.32), 0.3)
    clut = _palette(draw, 3, (0.5, 0.45, 0.42), 0.45)
    panel = _palette(draw, 2, (0.55, 0.55, 0.6), 0.35)
    rest = _palette(draw, ns + nc, (0.5, 0.45, 0.4), 0.4)
    c1 = torch.cat([walls[0], furn[0][:, :5], furn[0][:, 5:], clut[0], panel[0], rest[0]], 1)
    c2 = torch.cat([walls[1], furn[1][:, :5], furn[1][:, 5:], clut[1], panel[1], rest[1]], 1)
    floor = (torch.tensor([0.45, 0.35, 0.27]) + draw(3, -0.2, 0.2)).clamp(0.05, 0.9)
    mat = _materials(draw, k)
    n_light = 2
    lights = torch.stack([draw(n_light, -0.35, 0.35) * room_w, room_h - 0.15 + torch.zeros(b, n_light),
                          draw(n_light, -0.3, 0.35) * room_d, draw(n_light, 0.5, 1.5)], -1)
    # Camera and sensor: exposure, white balance (r, b), contrast, RGB noise, Kinect hole rate on dark surfaces.
    post = torch.cat([draw(1, 0.5, 1.05), draw(1, 0.95, 1.12), draw(1, 0.8, 1.0), draw(1, 0.0, 0.6),
                      draw(1, 0.0, 0.03), draw(1, 0.2, 0.8), draw(1, 0.0, 1.0), draw(1, 0.0, 1.0)], 1)
    return _assemble(b, centers, halves, yaws, types, c1, c2, mat, nb, ns, nc, cam, rot, lights,
                     draw(1, 0.12, 0.35), draw, outdoor=False, floor=floor, post=post)


def _outdoor(u: torch.Tensor) -> _Scene:
    draw = _Draw(u)
    b = u.shape[0]
    nb, ns, nc = _SLOTS["outdoor"]
    street = draw(1, 4.0, 7.0)  # half width of the street between building fronts
    cam = torch.cat([draw(1, -1.5, 1.5), torch.full((b, 1), 1.65), torch.zeros(b, 1)], 1)
    rot = _rot_yaw_pitch_roll(draw(1, -0.12, 0.12)[:, 0], draw(1, -0.03, 0.04)[:, 0], draw(1, -0.02, 0.02)[:, 0])
    n_bld, n_car = 6, 3
    bh = torch.empty(b, nb, 3)
    bx = torch.empty(b, nb, 3)
    # Buildings alternate sides, one after another along the street.
    side = torch.tensor([-1.0, 1.0] * (n_bld // 2))
    depth_half = draw(n_bld, 4.0, 8.0)
    length_half = draw(n_bld, 4.0, 10.0)
    height_half = draw(n_bld, 3.0, 12.0)
    bh[:, :n_bld] = torch.stack([depth_half, height_half, length_half], -1)
    along = torch.cumsum(2 * length_half + draw(n_bld, 0.5, 6.0), 1) - length_half + draw(1, -8.0, 2.0)
    bx[:, :n_bld] = torch.stack([side * (street + depth_half + draw(n_bld, 0.0, 2.0)), height_half, along], -1)
    # Cars: parked or driving, 2 m long each way.
    car_half = torch.stack([draw(n_car, 0.8, 0.95), draw(n_car, 0.7, 0.85), draw(n_car, 1.9, 2.4)], -1)
    lane = torch.where(draw(n_car) < 0.5, -1.0, 1.0) * (street - draw(n_car, 1.2, 3.0))
    bh[:, n_bld:] = car_half
    bx[:, n_bld:] = torch.stack([lane, car_half[..., 1] + 0.15, draw(n_car, 6.0, 45.0)], -1)
    yaw = torch.cat([torch.zeros(b, n_bld), draw(n_car, -0.15, 0.15)], 1)
    present = torch.cat([draw(n_bld) < 0.9, draw(n_car) < 0.8], 1)
    bx[:, :, 1] = torch.where(present, bx[:, :, 1], -1000.0)
    # Trees: trunk cylinder + crown sphere on the sidewalks; poles are the remaining cylinders.
    tz = draw(ns, 4.0, 50.0)
    tside = torch.where(draw(ns) < 0.5, -1.0, 1.0) * (street - draw(ns, 0.3, 0.8))
    crown = draw(ns, 1.2, 2.5)
    trunk_h = draw(ns, 1.2, 2.0)
    sx = torch.stack([tside, 2 * trunk_h + crown * 0.8, tz], -1)
    cr = torch.cat([draw(ns, 0.12, 0.25), draw(nc - ns, 0.06, 0.12)], 1) if nc > ns else draw(ns, 0.12, 0.25)
    ch = torch.cat([trunk_h, draw(nc - ns, 1.5, 3.5)], 1) if nc > ns else trunk_h
    pz = draw(nc - ns, 3.0, 40.0) if nc > ns else torch.zeros(b, 0)
    pside = (torch.where(draw(nc - ns) < 0.5, -1.0, 1.0) * (street - 0.3)) if nc > ns else torch.zeros(b, 0)
    cx = torch.stack([torch.cat([tside, pside], 1), ch, torch.cat([tz, pz], 1)], -1)
    tree = draw(ns) < 0.75
    sx[..., 1] = torch.where(tree, sx[..., 1], -1000.0)
    cx[:, :ns, 1] = torch.where(tree, cx[:, :ns, 1], -1000.0)
    ground = torch.tensor([0.0, -1.0, 0.0]).expand(b, 1, 3)
    centers = torch.cat([ground, bx, sx, cx], 1)
    halves = torch.cat([torch.tensor([1e4, 1.0, 1e4]).expand(b, 1, 3), bh,
                        crown.unsqueeze(-1).expand(-1, -1, 3), torch.stack([cr, ch, cr], -1)], 1)
    yaws = torch.cat([torch.zeros(b, 1), yaw, torch.zeros(b, ns), torch.zeros(b, nc)], 1)
    types = torch.tensor([_TYPE_BOX] + [_TYPE_BOX] * nb + [_TYPE_SPHERE] * ns + [_TYPE_CYL] * nc,
                         dtype=torch.float32).expand(b, -1)
    k = types.shape[1]
    c1, c2 = _palette(draw, k, (0.55, 0.52, 0.5), 0.25)
    # Asphalt ground, green crowns, brown trunks.
    c1[:, 0] = torch.tensor([0.32, 0.32, 0.33])
    c2[:, 0] = torch.tensor([0.9, 0.9, 0.85])
    c1[:, 1 + nb:1 + nb + ns] = torch.tensor([0.2, 0.45, 0.15])
    mat = _materials(draw, k)
    # Buildings get windows (tiles), the road stripes along the street.
    mat[:, 1:1 + n_bld] = torch.tensor([0.35, 0.8, 0.0, 0.25, 1.0])
    mat[:, 0] = torch.tensor([0.25, 0.6, 0.0, 0.5, 0.0])
    elev, azim = draw(1, 0.5, 1.1)[:, 0].double(), draw(1, -1.2, 1.2)[:, 0].double()
    sun = torch.stack([torch.cos(elev) * torch.sin(azim), torch.sin(elev), -torch.cos(elev) * torch.cos(azim)],
                      -1).float()
    lights = torch.cat([sun, draw(1, 0.9, 1.3)], 1).unsqueeze(1)
    return _assemble(b, centers, halves, yaws, types, c1, c2, mat, nb, ns, nc, cam, rot, lights,
                     draw(1, 0.25, 0.4), draw, outdoor=True)


def _assemble(b, centers, halves, yaws, types, c1, c2, mat, nb, ns, nc, cam, rot, lights, ambient, draw,
              outdoor, floor: torch.Tensor | None = None, post: torch.Tensor | None = None) -> _Scene:
    yaws = yaws.double()
    cos, sin = torch.cos(yaws).float(), torch.sin(yaws).float()
    flags = torch.stack([(types == _TYPE_BOX).float() - (types == _TYPE_INSIDE).float(),
                         (types == _TYPE_SPHERE).float(), (types == _TYPE_CYL).float()], -1)
    k = types.shape[1]
    fl = torch.zeros(b, k, 4)
    if floor is not None:  # (B, 3): the room's floor colour
        fl[:, 0, :3] = floor
        fl[:, 0, 3] = 1.0
    table = torch.cat([centers, halves, cos.unsqueeze(-1), sin.unsqueeze(-1), flags, c1, c2 - c1, mat, fl], -1)
    noise_seed = (draw(1) * 65535).to(torch.int32) * 1664525
    return _Scene(cam, rot, table.transpose(1, 2).contiguous(), nb, ns, nc, lights, ambient, outdoor, noise_seed,
                  post)


def _keys(t: torch.Tensor, hit: torch.Tensor) -> torch.Tensor:
    """float32 distances -> int32 keys that order like the distances, misses above every hit.

    The sign bit is cleared and the 4 low mantissa bits are left free for the object index (relative error
    < 2e-6), so the z-buffer is an integer ``amin`` that returns distance and object at once.
    """
    return (t.view(torch.int32) & 0x7FFFFFF0) | (~hit).to(torch.int32) * _MISS_BITS


def _col(prm: torch.Tensor, name: str) -> torch.Tensor:
    """One attribute of ``prm (N, F, 1)`` (one object per ray row) or ``(B, F, k, 1)`` (k objects per frame):
    ``(N, 1)`` or ``(B, k, 1)``, which broadcasts against rays ``o[:, 0]`` of ``(N, P)`` or ``(B, 1, P)``."""
    return prm[:, _F[name]]


def _box_keys(o: torch.Tensor, d: torch.Tensor, prm: torch.Tensor, eps: float) -> torch.Tensor:
    """Rays ``o (N, 3, 1|P)``, ``d (N, 3, P)`` against one yaw-rotated box per row ``prm (N, F, 1)``: slab test
    in the box frame. Returns ``(N, P)`` keys (or ``(B, k, P)``, see :func:`_col`)."""
    co, si = _col(prm, "cos"), _col(prm, "sin")
    hx, hy, hz = _col(prm, "hx"), _col(prm, "hy"), _col(prm, "hz")
    rx, ry, rz = o[:, 0] - _col(prm, "cx"), o[:, 1] - _col(prm, "cy"), o[:, 2] - _col(prm, "cz")
    olx, olz = co * rx + si * rz, co * rz - si * rx
    dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
    inv = 1.0 / (co * dx + si * dz)
    t1, t2 = (-hx - olx) * inv, (hx - olx) * inv
    near, far = torch.minimum(t1, t2), torch.maximum(t1, t2)
    inv = 1.0 / dy
    t1, t2 = (-hy - ry) * inv, (hy - ry) * inv
    near = torch.maximum(near, torch.minimum(t1, t2))
    far = torch.minimum(far, torch.maximum(t1, t2))
    inv = 1.0 / (co * dz - si * dx)
    t1, t2 = (-hz - olz) * inv, (hz - olz) * inv
    near = torch.maximum(near, torch.minimum(t1, t2))
    far = torch.minimum(far, torch.maximum(t1, t2))
    return _keys(near, (near < far) & (near > eps))


def _sphere_keys(o: torch.Tensor, d: torch.Tensor, prm: torch.Tensor, eps: float) -> torch.Tensor:
    """Rays against one sphere (centre, radius ``hx``) per row: the nearer root. ``(N, P)`` keys."""
    ocx, ocy, ocz = o[:, 0] - _col(prm, "cx"), o[:, 1] - _col(prm, "cy"), o[:, 2] - _col(prm, "cz")
    r = _col(prm, "hx")
    dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
    a = dx * dx + dy * dy + dz * dz
    b = dx * ocx + dy * ocy + dz * ocz
    disc = b * b - a * (ocx * ocx + ocy * ocy + ocz * ocz - r * r)
    t = (-b - disc.clamp_min(0).sqrt()) / a
    return _keys(t, (disc >= 0) & (t > eps))


def _cylinder_keys(o: torch.Tensor, d: torch.Tensor, prm: torch.Tensor, eps: float) -> torch.Tensor:
    """Rays against one vertical capped cylinder (radius ``hx``, half height ``hy``) per row: the side,
    then the cap facing the ray origin. ``(N, P)`` keys."""
    ocx, ocy, ocz = o[:, 0] - _col(prm, "cx"), o[:, 1] - _col(prm, "cy"), o[:, 2] - _col(prm, "cz")
    r, hh = _col(prm, "hx"), _col(prm, "hy")
    dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
    a2 = dx * dx + dz * dz
    b = dx * ocx + dz * ocz
    disc = b * b - a2 * (ocx * ocx + ocz * ocz - r * r)
    t_side = (-b - disc.clamp_min(0).sqrt()) / a2
    y_side = ocy + t_side * dy
    side = _keys(t_side, (disc >= 0) & (t_side > eps) & (y_side.abs() <= hh))
    t_cap = (torch.where(ocy > 0, hh, -hh) - ocy) / dy
    px, pz = ocx + t_cap * dx, ocz + t_cap * dz
    cap = _keys(t_cap, (px * px + pz * pz <= r * r) & (t_cap > eps))
    return torch.minimum(side, cap)


def _enclosure_keys(o: torch.Tensor, d: torch.Tensor, sc: _Scene, eps: float, repeat: int = 1) -> torch.Tensor:
    """Object 0 for every ray ``(B * repeat, 3, P)`` (``repeat`` consecutive rows per frame): the room box
    seen from inside (the exit distance of its slabs), or the ground plane y = 0 seen from above outdoors.
    ``(B * repeat, P)`` keys."""
    if sc.outdoor:
        t = -o[:, 1] / d[:, 1]
        return _keys(t, t > eps)
    c = sc.table[:, 0:3, 0].repeat_interleave(repeat, 0)  # (B * repeat, 3)
    h = sc.table[:, 3:6, 0].repeat_interleave(repeat, 0)
    t = None
    for ax in range(3):
        inv = 1.0 / d[:, ax]
        lo = (c[:, ax:ax + 1] - h[:, ax:ax + 1] - o[:, ax]) * inv
        hi = (c[:, ax:ax + 1] + h[:, ax:ax + 1] - o[:, ax]) * inv
        far = torch.maximum(lo, hi)
        t = far if t is None else torch.minimum(t, far)
    return _keys(t, t > eps)


_KIND_FUNCS = ((_TYPE_BOX, _box_keys), (_TYPE_SPHERE, _sphere_keys), (_TYPE_CYL, _cylinder_keys))


def _object_ranges(sc: _Scene) -> list[tuple[int, int, Callable]]:
    s0 = 1
    out = []
    for n, (_, fn) in zip((sc.n_box, sc.n_sph, sc.n_cyl), _KIND_FUNCS):
        out.append((s0, s0 + n, fn))
        s0 += n
    return out


def _trace_all(o: torch.Tensor, d: torch.Tensor, sc: _Scene, eps: float) -> torch.Tensor:
    """Every ray against every object except object 0 (shadow rays). ``o, d: (B, 3, P)`` -> ``(B, P)`` keys
    of the nearest hit, object index in the low bits."""
    b, _, p = d.shape
    best = None
    for s0, e, fn in _object_ranges(sc):
        k = e - s0
        if k == 0:
            continue
        # Rays (B, 3, 1, P) against objects (B, F, k, 1) by broadcasting: the k objects of a kind share each
        # frame's rays without copying them k times, and per-ray terms (1 / dy, ...) are computed once.
        prm = sc.table[:, :, s0:e].unsqueeze(-1)
        keys = fn(o.unsqueeze(2), d.unsqueeze(2), prm, eps).expand(b, k, p)
        keys = keys | torch.arange(s0, e, dtype=torch.int32).view(1, k, 1)
        keys = keys.amin(1)
        best = keys if best is None else torch.minimum(best, keys)
    return best


def _screen_bounds(sc: _Scene, intr: Sequence[float], h: int, w: int) -> torch.Tensor:
    """Conservative pixel bounds ``(B, K, 4)`` = ``[v0, v1, u0, u1]`` (float) of every object's bounding box;
    the full frame when a corner is behind the camera, empty for disabled objects."""
    fx, fy, cx, cy = intr
    tab = sc.table  # (B, F, K)
    signs = torch.tensor([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)],
                         dtype=torch.float32)  # (8, 3)
    lx = signs[:, 0].view(1, 1, 8) * tab[:, 3].unsqueeze(-1)
    ly = signs[:, 1].view(1, 1, 8) * tab[:, 4].unsqueeze(-1)
    lz = signs[:, 2].view(1, 1, 8) * tab[:, 5].unsqueeze(-1)
    co, si = tab[:, 6].unsqueeze(-1), tab[:, 7].unsqueeze(-1)
    # local -> world (inverse yaw), relative to the camera.
    wx = tab[:, 0].unsqueeze(-1) + co * lx - si * lz - sc.cam_pos[:, 0].view(-1, 1, 1)
    wy = tab[:, 1].unsqueeze(-1) + ly - sc.cam_pos[:, 1].view(-1, 1, 1)
    wz = tab[:, 2].unsqueeze(-1) + si * lx + co * lz - sc.cam_pos[:, 2].view(-1, 1, 1)
    r = sc.cam_rot  # camera = R^T world
    xc = r[:, 0, 0].view(-1, 1, 1) * wx + r[:, 1, 0].view(-1, 1, 1) * wy + r[:, 2, 0].view(-1, 1, 1) * wz
    yc = r[:, 0, 1].view(-1, 1, 1) * wx + r[:, 1, 1].view(-1, 1, 1) * wy + r[:, 2, 1].view(-1, 1, 1) * wz
    zc = r[:, 0, 2].view(-1, 1, 1) * wx + r[:, 1, 2].view(-1, 1, 1) * wy + r[:, 2, 2].view(-1, 1, 1) * wz
    behind = (zc <= 1e-3).any(-1)
    zc = zc.clamp_min(1e-3)
    u, v = fx * xc / zc + cx, fy * yc / zc + cy
    bounds = torch.stack([v.amin(-1) - 1, v.amax(-1) + 2, u.amin(-1) - 1, u.amax(-1) + 2], -1)
    full = torch.tensor([0.0, h, 0.0, w])
    bounds = torch.where(behind.unsqueeze(-1), full, bounds)
    disabled = (tab[:, 1] < -50).unsqueeze(-1)
    return torch.where(disabled, torch.tensor([0.0, 0.0, 0.0, 0.0]), bounds)


_TILE = 16


def _tile_pairs(sc: _Scene, bounds: torch.Tensor, n_ty: int, n_tx: int) -> list[tuple]:
    """The (frame, object, tile) triples of the primary pass: each object is tested only on the 16x16 tiles
    its screen ``bounds`` (``(B, K, 4)`` from :func:`_screen_bounds`) touch.

    Returns per object kind ``(fn, frame (M,), tile (M,) within its frame, object (M, 1) int32, parameters
    (M, F, 1))``, sorted by frame (see :func:`_group_pairs`)."""
    b = bounds.shape[0]
    ty = torch.arange(n_ty, dtype=torch.float32) * _TILE
    tx = torch.arange(n_tx, dtype=torch.float32) * _TILE
    table = sc.table.transpose(1, 2)  # (B, K, F)
    k_total = table.shape[1]
    out = []
    for s0, e, fn in _object_ranges(sc):
        if e == s0:
            continue
        bd = bounds[:, s0:e]  # (B, k, 4)
        rows = (bd[..., 0:1] < ty + _TILE) & (bd[..., 1:2] > ty)  # (B, k, n_ty)
        cols = (bd[..., 2:3] < tx + _TILE) & (bd[..., 3:4] > tx)  # (B, k, n_tx)
        pairs = (rows.unsqueeze(-1) & cols.unsqueeze(-2)).nonzero()  # (M, 4): frame, object, tile row, col
        fb, fk = pairs[:, 0], pairs[:, 1] + s0
        prm = table.reshape(b * k_total, -1).index_select(0, fb * k_total + fk).unsqueeze(-1)
        out.append((fn, fb, pairs[:, 2] * n_tx + pairs[:, 3], fk.to(torch.int32).unsqueeze(1), prm))
    return out


def _group_pairs(pairs: list[tuple], i: int, j: int, n_tiles: int) -> list[tuple]:
    """The pairs of :func:`_tile_pairs` on frames ``i:j``, as ``(fn, frame, tile, object, parameters)`` with
    frame and tile numbered within the group."""
    out = []
    for fn, fb, tile, fk, prm in pairs:
        lo, hi = torch.searchsorted(fb, torch.tensor([i, j])).tolist()  # nonzero() lists frames in order
        if lo < hi:
            f = fb[lo:hi] - i
            out.append((fn, f, f * n_tiles + tile[lo:hi], fk[lo:hi], prm[lo:hi]))
    return out


def _trace_primary(sc: _Scene, d_tiles: torch.Tensor, o: torch.Tensor, pairs: list[tuple], n_tiles: int,
                   eps: float) -> torch.Tensor:
    """Camera rays, culled by tiles: each object is tested only on the tiles of its ``pairs``.

    Args:
        d_tiles: ``(B * n_tiles, 3, 256)`` ray directions grouped by tile. o: ``(B, 3, 1)``.
        pairs: from :func:`_group_pairs`.
    Returns:
        ``(B * n_tiles, 256)`` keys of the nearest hit, object index in the low bits.
    """
    zbuf = _enclosure_keys(o.repeat_interleave(n_tiles, 0), d_tiles, sc, eps, repeat=n_tiles)
    for fn, fb, tile, fk, prm in pairs:
        keys = fn(o.index_select(0, fb), d_tiles.index_select(0, tile), prm, eps) | fk
        with warnings.catch_warnings():  # "index_reduce is in beta": its amin is exact, hence deterministic
            warnings.simplefilter("ignore", UserWarning)
            zbuf.index_reduce_(0, tile, keys, "amin")
    return zbuf


def _hash2(hx: torch.Tensor, hy: torch.Tensor) -> torch.Tensor:
    """Lattice hash of pre-multiplied int32 coordinates -> float32 in [0, 1]. int32 products wrap around
    (two's complement), the same on every machine."""
    h = hx ^ hy
    h = (h ^ (h >> 13)) * 1274126177
    return ((h >> 16) & 0xFFFF).to(torch.float32) * (1.0 / 65535.0)


def _value_noise(u: torch.Tensor, v: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """Smooth value noise in [0, 1] at continuous lattice coordinates ``u, v`` (same shape); ``seed`` int32
    broadcastable to them."""
    fu, fv = u.floor(), v.floor()
    su, sv = u - fu, v - fv
    su = su * su * (3.0 - 2.0 * su)
    sv = sv * sv * (3.0 - 2.0 * sv)
    hx0 = fu.to(torch.int32) * 374761393 + seed
    hy0 = fv.to(torch.int32) * 668265263
    hx1, hy1 = hx0 + 374761393, hy0 + 668265263
    n00, n10 = _hash2(hx0, hy0), _hash2(hx1, hy0)
    n01, n11 = _hash2(hx0, hy1), _hash2(hx1, hy1)
    top = n00 + (n10 - n00) * su
    bottom = n01 + (n11 - n01) * su
    return top + (bottom - top) * sv


def _upsample(x: torch.Tensor, stride: int, h: int, w: int) -> torch.Tensor:
    """Linear upsampling of ``(B, h', w')`` samples taken at ``[::stride, ::stride]`` back to ``(B, h, w)``,
    written with index_select and elementwise ops so it is bit-identical on every machine."""

    def axis(n_out: int, n_in: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pos = torch.arange(n_out)
        i0 = torch.div(pos, stride, rounding_mode="floor").clamp_max(n_in - 1)
        i1 = (i0 + 1).clamp_max(n_in - 1)
        wgt = (pos - i0 * stride).clamp(0, stride).to(torch.float32) / stride
        return i0, i1, wgt

    i0, i1, wy = axis(h, x.shape[1])
    a0, a1 = x.index_select(1, i0), x.index_select(1, i1)
    x = a0 + (a1 - a0) * wy.view(1, -1, 1)
    i0, i1, wx = axis(w, x.shape[2])
    a0, a1 = x.index_select(2, i0), x.index_select(2, i1)
    return a0 + (a1 - a0) * wx.view(1, 1, -1)


_ALLOCATOR_TUNED = False


def _tune_allocator() -> None:
    """Keep freed pixel-sized temporaries in the heap instead of returning them to the kernel.

    glibc hands every block above its mmap threshold (128 KiB, adaptively a little more) back to the kernel
    on free, so each of the few hundred 76800-pixel temporaries of a frame page-faults afresh: about half
    of the render time at 240x320. Raising the thresholds (what ``MALLOC_MMAP_THRESHOLD_`` /
    ``MALLOC_TRIM_THRESHOLD_`` do, and the reason PyTorch's CPU tuning guide suggests jemalloc) halves it.
    Process-wide, glibc only, done once; set ``DEPTHLIB_NO_MALLOPT=1`` to leave the allocator alone.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return
    _ALLOCATOR_TUNED = True
    if os.environ.get("DEPTHLIB_NO_MALLOPT") or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        libc.mallopt(m_mmap_threshold, 64 << 20)
        libc.mallopt(m_trim_threshold, 256 << 20)
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        pass


def render_batch(seed: int, indices: Sequence[int], size: tuple[int, int] = (240, 320), scene: str = "indoor",
                 *, shadow_stride: int = 4, workers: int | None = None, version: int = 2) -> dict[str, torch.Tensor]:
    """Render frames ``indices`` of the procedural sequence ``seed``.

    Args:
        seed: sequence seed. indices: frame numbers (each frame depends only on ``(seed, index, scene)``).
        size: ``(H, W)`` of the frames.
        scene: ``"indoor"`` or ``"outdoor"``.
        shadow_stride: shadow rays are traced every ``shadow_stride`` pixels and linearly upsampled.
        workers: frames rendered concurrently by threads of this process (torch releases the GIL inside
            its kernels); default: the number of CPU cores, capped by the number of frames.
        version: the generator version (see :data:`VERSIONS`): 2 (default) NYU-like indoor rooms with
            Kinect noise and holes, 1 the first generator's rooms (for comparisons). Outdoor is the same.

    Returns:
        dict with ``image (B, 3, H, W)`` float32 in [0, 1] (multiples of 1/255), ``depth (B, 1, H, W)``
        float32 z-depth in metres (0 = invalid), ``mask (B, 1, H, W)`` bool, ``intrinsics (B, 4)``.
    """
    if scene not in SCENES:
        raise ValueError(f"synth: scene={scene!r} is not one of {SCENES}")
    h, w = (int(v) for v in size)
    if h < 4 or w < 4:
        raise ValueError(f"synth: size={size!r} must be at least 4x4")
    if shadow_stride < 1:
        raise ValueError(f"synth: shadow_stride={shadow_stride!r} must be >= 1")
    if version not in VERSIONS:
        raise ValueError(f"synth: version={version!r} is not one of {VERSIONS}")
    indices = [int(i) for i in indices]
    if not indices:
        raise ValueError("synth: indices is empty")
    _tune_allocator()
    # A frame (or two, see below) at a time on one thread: its tensors fit the caches, and OpenMP's fork/join on
    # ~76800-element ops costs more than it saves (on a shared 2-core CPU, 2 threads measured 100x slower).
    # Every operation is per pixel, so the bytes do not depend on threads or grouping.
    threads = torch.get_num_threads()
    if threads != 1:
        torch.set_num_threads(1)
    try:
        if workers is None:
            # inside a DataLoader worker the loader already spreads frames over the cores
            in_loader = torch.utils.data.get_worker_info() is not None
            workers = 1 if in_loader else (os.cpu_count() or 1)
        # The per-frame parameters are a few hundred tiny ops: done once for all frames here, not per frame
        # in the threads, where each op would hand the GIL back and forth (with 2 threads on 2 cores such
        # tiny ops ran 2x slower than on one). Every op is per frame (row), so batching keeps the bytes.
        with torch.inference_mode():
            sc = _make_scenes(seed, indices, scene, version)
            bounds = _screen_bounds(sc, scene_intrinsics(scene, (h, w)).tolist(), h, w)
            n_ty, n_tx = -(-h // _TILE), -(-w // _TILE)
            pairs = _tile_pairs(sc, bounds, n_ty, n_tx)
        n = len(indices)
        # With several threads, frames go in pairs: half the ops per frame, hence half the GIL hand-offs, for
        # tensors (2 x 76800 pixels at 240x320) that still mostly fit a core's L2 (measured on 2 cores: pairs
        # ~5% faster than single frames, groups of 4 or 8 slower). Alone, one frame at a time is fastest.
        group = 2 if min(n, workers) > 1 and n >= 2 * workers else 1
        groups = [(i, min(n, i + group)) for i in range(0, n, group)]
        workers = min(len(groups), workers)
        with torch.inference_mode():
            jobs = [(_frames(sc, i, j), _group_pairs(pairs, i, j, n_ty * n_tx)) for i, j in groups]

        def render(job: tuple[_Scene, list[tuple]]) -> dict[str, torch.Tensor]:
            return _render(job[0], job[1], (h, w), scene, shadow_stride)

        if workers > 1:
            # Frames are independent: one per thread uses every core while each op stays single-threaded.
            with ThreadPoolExecutor(max_workers=workers) as pool:
                frames = list(pool.map(render, jobs))
        else:
            frames = [render(job) for job in jobs]
        return {key: torch.cat([f[key] for f in frames]) for key in frames[0]}
    finally:
        if threads != 1:
            torch.set_num_threads(threads)


def _make_scenes(seed: int, indices: Sequence[int], scene: str, version: int = 2) -> _Scene:
    """Parameters of frames ``indices``, batched (each row depends only on ``(seed, index, scene, version)``)."""
    nyu = scene == "indoor" and version >= 2
    n_random = 2 * _N_RANDOM if nyu else _N_RANDOM
    u = torch.empty(len(indices), n_random)
    for row, index in enumerate(indices):
        g = torch.Generator().manual_seed(_frame_seed(seed, index, scene + (":v2" if nyu else "")))
        u[row] = torch.rand(n_random, generator=g)
    if scene == "outdoor":
        return _outdoor(u)
    return _indoor_nyu(u) if nyu else _indoor(u)


def _frames(sc: _Scene, i: int, j: int) -> _Scene:
    """Frames ``i:j`` of a batched :class:`_Scene` (views)."""
    return _Scene(sc.cam_pos[i:j], sc.cam_rot[i:j], sc.table[i:j], sc.n_box, sc.n_sph, sc.n_cyl, sc.lights[i:j],
                  sc.ambient[i:j], sc.outdoor, sc.noise_seed[i:j], None if sc.post is None else sc.post[i:j])


def _render(sc: _Scene, pairs: list[tuple], size: tuple[int, int], scene: str,
            shadow_stride: int) -> dict[str, torch.Tensor]:
    """Pixels of the frames of ``sc`` (tile ``pairs`` from :func:`_group_pairs`) for :func:`render_batch`."""
    h, w = size
    b, p = sc.table.shape[0], h * w
    with torch.inference_mode():
        intr = scene_intrinsics(scene, (h, w)).tolist()
        fx, fy, cx, cy = intr
        n_ty, n_tx = -(-h // _TILE), -(-w // _TILE)
        hp, wp = n_ty * _TILE, n_tx * _TILE  # padded to whole tiles; the padding is cropped below
        xs = (torch.arange(wp, dtype=torch.float32) - cx) / fx
        ys = (torch.arange(hp, dtype=torch.float32) - cy) / fy
        m = sc.cam_rot  # (B, 3, 3)
        # d = M @ (x, y, 1): per component an outer sum of a row and a column (no BLAS: exact everywhere).
        d_pad = (m[:, :, 0:1, None] * xs.view(1, 1, 1, wp) + m[:, :, 1:2, None] * ys.view(1, 1, hp, 1)
                 + m[:, :, 2:3, None])  # (B, 3, hp, wp)
        d_tiles = (d_pad.view(b, 3, n_ty, _TILE, n_tx, _TILE).permute(0, 2, 4, 1, 3, 5)
                   .reshape(b * n_ty * n_tx, 3, _TILE * _TILE))
        o = sc.cam_pos.unsqueeze(-1)
        zbuf = _trace_primary(sc, d_tiles, o, pairs, n_ty * n_tx, eps=1e-4)
        keys = (zbuf.view(b, n_ty, n_tx, _TILE, _TILE).permute(0, 1, 3, 2, 4).reshape(b, hp, wp)[:, :h, :w]
                .reshape(b, p))
        d = d_pad[:, :, :h, :w].reshape(b, 3, p)
        hit = keys < _MISS_BITS
        keys = keys * hit  # misses (sky) -> key 0: object 0 at distance 0, never NaN garbage
        idx = (keys & 15).long()
        t = (keys & 0x7FFFFFF0).view(torch.float32)  # z depth
        # Per-pixel object attributes: one index_select on a (F, B*K) table, laid out (F, B, P).
        k_total = sc.table.shape[2]
        flat = sc.table.permute(1, 0, 2).reshape(len(_FIELDS), b * k_total)
        rows = idx + torch.arange(b).view(b, 1) * k_total
        attr = flat.index_select(1, rows.reshape(-1)).view(len(_FIELDS), b, 1, p)

        def at(name: str) -> torch.Tensor:
            return attr[_F[name]]  # (B, 1, P)

        pw = o + t.unsqueeze(1) * d  # world hit points (B, 3, P)
        rx, ry, rz = pw[:, 0:1] - at("cx"), pw[:, 1:2] - at("cy"), pw[:, 2:3] - at("cz")
        co, si = at("cos"), at("sin")
        qx, qy, qz = co * rx + si * rz, ry, co * rz - si * rx  # object-local hit point
        nx, ny, nz = qx / at("hx"), qy / at("hy"), qz / at("hz")
        ax, ay, az = nx.abs(), ny.abs(), nz.abs()
        # Box: the dominant axis of the scaled point (sign flipped for the room); sphere: the scaled point
        # itself; cylinder: radial on the side, the axis on the caps.
        fbox, fsph, fcyl = at("box"), at("sph"), at("cyl")
        amax = torch.maximum(ax, torch.maximum(ay, az))
        cap = fcyl * (ay >= 0.999)
        side = fcyl - cap
        radial = fsph + side / (nx * nx + nz * nz).sqrt().clamp_min(1e-6)  # sphere: 1, cylinder side: 1/rho
        lnx = fbox * (ax >= amax) * torch.sign(nx) + radial * nx
        lny = fbox * (ay >= amax) * torch.sign(ny) + fsph * ny + cap * torch.sign(ny)
        lnz = fbox * (az >= amax) * torch.sign(nz) + radial * nz
        # Back to world: inverse yaw.
        wnx, wnz = co * lnx - si * lnz, si * lnx + co * lnz
        wny = lny
        # Texture coordinates on the surface, in object-local metres: drop the dominant normal axis.
        anx, any_ = lnx.abs(), lny.abs()
        tu = qx * (1.0 - anx) + qz * anx
        tv = qy * (1.0 - any_) + qz * any_
        freq = at("freq")
        su, sv = tu * freq, tv * freq
        noise = _value_noise(su * 2.0, sv * 2.0, sc.noise_seed.view(b, 1, 1))
        grid_u = (su - su.floor()) < 0.08
        grid_v = ((sv - sv.floor()) < 0.08) & (at("grid_v") > 0.5)
        grid = (grid_u | grid_v).float()
        ring = su * 0.7 + noise * 1.5 + sv * 0.05
        wood = ((ring - ring.floor()) < 0.35).float()
        pattern = (at("k_grid") * grid + at("k_wood") * wood + at("k_noise") * (noise - 0.5)).clamp(0.0, 1.0)
        c1 = attr[_F["r1"]:_F["b1"] + 1, :, 0].transpose(0, 1)  # (B, 3, P)
        dc = attr[_F["dr"]:_F["db"] + 1, :, 0].transpose(0, 1)
        albedo = c1 + dc * pattern
        if sc.post is not None:  # version 2: the room's floor in its own colour (k_floor is 1 on the room only)
            floor = at("k_floor") * (lny > 0.5)
            fcol = attr[_F["fr"]:_F["fb"] + 1, :, 0].transpose(0, 1)
            albedo = albedo + floor * (fcol * (0.8 + 0.4 * pattern) - albedo)

        # Lambertian shading.
        shade = sc.ambient.view(b, 1, 1)  # + each light's diffuse term (broadcasts to (B, 1, P))
        hs, ws = (h + shadow_stride - 1) // shadow_stride, (w + shadow_stride - 1) // shadow_stride

        def coarse(x: torch.Tensor) -> torch.Tensor:  # the shadow-ray grid of (B, c, P) pixels
            return x.view(b, x.shape[1], h, w)[:, :, ::shadow_stride, ::shadow_stride].reshape(b, x.shape[1], -1)

        sub = coarse(pw)
        nsub = torch.cat([coarse(wnx), coarse(wny), coarse(wnz)], 1)
        for li in range(sc.lights.shape[1]):
            lp, inten = sc.lights[:, li, :3].view(b, 3, 1), sc.lights[:, li, 3].view(b, 1, 1)
            if sc.outdoor:
                ndl = (wnx * lp[:, 0:1] + wny * lp[:, 1:2] + wnz * lp[:, 2:3]).clamp_min(0)
                diffuse = ndl * inten
                to_light_sub, tmax = lp.expand(b, 3, sub.shape[2]), _BIG
            else:
                lv = lp - pw
                d2 = lv[:, 0:1] * lv[:, 0:1] + lv[:, 1:2] * lv[:, 1:2] + lv[:, 2:3] * lv[:, 2:3]
                ndl = (wnx * lv[:, 0:1] + wny * lv[:, 1:2] + wnz * lv[:, 2:3]).clamp_min(0) / d2.sqrt()
                diffuse = ndl * inten * (4.0 / (1.0 + d2))
                to_light_sub, tmax = lp - sub, 1.0
            if li == 0:  # cast shadows of the main light, traced on a coarse grid
                origin = sub + nsub * 2e-3
                sk = _trace_all(origin, to_light_sub, sc, eps=1e-3)
                ts = (sk & 0x7FFFFFF0).view(torch.float32)
                lit = ((sk >= _MISS_BITS) | (ts >= tmax)).float().view(b, hs, ws)
                diffuse = diffuse * _upsample(lit, shadow_stride, h, w).view(b, 1, p)
            shade = shade + diffuse
        rgb = (albedo * shade).clamp_(0.0, 1.0).sqrt_()  # gamma 2 (in place: fewer pixel-sized buffers)
        holes = None
        if sc.post is not None:
            rgb, t, holes = _sensor(rgb, t, sc.post, sc.noise_seed, h, w)
        if sc.outdoor:  # sky gradient where nothing was hit
            up = (d[:, 1:2] / (d[:, 0:1] * d[:, 0:1] + d[:, 1:2] * d[:, 1:2] + d[:, 2:3] * d[:, 2:3]).sqrt()).clamp(0.0, 1.0)
            sky = torch.tensor([0.75, 0.85, 0.95]).view(1, 3, 1) - up * torch.tensor([0.35, 0.25, 0.1]).view(1, 3, 1)
            hf = hit.unsqueeze(1).float()
            rgb = rgb * hf + sky * (1.0 - hf)
        image = rgb.mul_(255.0).add_(0.5).floor_().div_(255.0).view(b, 3, h, w)
        depth = t.view(b, 1, h, w)
        lo, hi = (INDOOR_DEPTH if not sc.outdoor else (1e-3, OUTDOOR_MAX_DEPTH))
        mask = hit.view(b, 1, h, w) & (depth >= lo) & (depth <= hi)
        if holes is not None:
            mask &= ~holes.view(b, 1, h, w)
        depth = depth * mask
        intr = scene_intrinsics(scene, (h, w)).expand(b, 4).clone()
    return {"image": image.clone(), "depth": depth.clone(), "mask": mask.clone(), "intrinsics": intr}


def _sensor(rgb: torch.Tensor, t: torch.Tensor, post: torch.Tensor, seed: torch.Tensor, h: int,
            w: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Version 2's camera and Kinect: ``rgb (B, 3, P)`` in [0, 1], z-depth ``t (B, P)``, ``post (B, 8)`` from
    :func:`_indoor_nyu` -> ``(rgb, t, holes (B, P) bool)``.

    RGB: exposure x white balance, a contrast curve ``x + c (x^2 - x)`` (NYU's frames are darker than a
    plain render), uniform per-pixel noise. Depth: the Kinect's axial noise, sigma = 1.2 mm + 1.9 mm
    (z - 0.4)^2 (Nguyen et al. 2012), from a triangular (sum of two uniforms) variable of that deviation;
    holes where the projector's pattern is shadowed (a surface more than 7% + 5 cm farther than one within
    ``W / 80`` pixels to its right) and on dark surfaces (with the frame's rate). Only exact float32 ops and
    integer hashes (whether the bytes agree across machines: see the module docstring).
    """
    b, _, p = rgb.shape
    gain, wr, wb, contrast, sigma, dark_rate = (post[:, i].view(b, 1, 1) for i in range(6))
    wbal = torch.cat([wr, torch.ones_like(wr), wb], 1)  # (B, 3, 1)
    rgb = rgb * (gain * wbal)
    rgb = (rgb + contrast * (rgb * rgb - rgb)).clamp_(0.0, 1.0)
    pix = torch.arange(p, dtype=torch.int32).view(1, 1, p) * 374761393 + seed.view(b, 1, 1)
    chan = torch.arange(1, 4, dtype=torch.int32).view(1, 3, 1) * 668265263
    rgb = (rgb + sigma * 2.0 * (_hash2(pix, chan) - 0.5)).clamp_(0.0, 1.0)
    n1 = _hash2(pix, torch.tensor(1013904223, dtype=torch.int32))[:, 0]
    n2 = _hash2(pix, torch.tensor(-1640531535, dtype=torch.int32))[:, 0]
    dz = t - 0.4
    t = t + (0.0012 + 0.0019 * dz * dz) * (n1 + n2 - 1.0) * 2.4494897
    tz = t.view(b, h, w)
    shadow = torch.zeros(b, h, w, dtype=torch.bool)
    for s in range(1, max(1, w // 80) + 1):
        shadow[:, :, :-s] |= tz[:, :, s:] < tz[:, :, :-s] * 0.93 - 0.05
    n3 = _hash2(pix, torch.tensor(362437, dtype=torch.int32))[:, 0]
    dark = (rgb.sum(1) < 0.3) & (n3 < dark_rate.view(b, 1))
    return rgb, t, shadow.view(b, p) | dark


class SynthDataset(DepthDataset):
    """The procedural generator as a Dataset: ``open_dataset("synth", n=..., size=(H, W), seed=..., scene=...)``.

    Sample ``i`` is frame ``i`` of sequence ``seed`` (``path = "synth:<scene>:<seed>:<i>"``), rendered on the
    fly. Splits are disjoint streams of the same generator (``"train"`` uses ``seed``, ``"val"``/``"test"``
    use derived seeds), so a validation set never repeats a training frame.

    Options:
        n: number of frames (default 1000). size: ``(H, W)`` (default ``(240, 320)``).
        seed: sequence seed (default 0). scene: ``"indoor"`` (default) or ``"outdoor"``.
        pairs: if > 0, also return DIW-style ``pairs (K, 4)`` and ``relation (K,)`` from the exact depth.
        shadow_stride: see :func:`render_batch`.
        version: generator version, see :func:`render_batch` (default 2, NYU-like rooms).

    Speed: a DataLoader fetches a whole batch through ``__getitems__``, rendered in one batched pass; reading
    ``dataset[i]`` in order (``i`` right after the previous index) renders the next ``read_ahead`` frames in
    one pass and serves them from memory, so a per-sample loop runs at the batched rate. Random single reads
    render one frame.
    """

    read_ahead = 16

    kind = "synth"
    _SPLIT_OFFSET = {"train": 0, "val": 1_000_003, "test": 2_000_003}

    def __init__(self, split: str = "train", transform: Callable | None = None, *, n: int = 1000,
                 size: tuple[int, int] = (240, 320), seed: int = 0, scene: str = "indoor", pairs: int = 0,
                 shadow_stride: int = 4, version: int = 2) -> None:
        super().__init__(transform)
        if split not in self._SPLIT_OFFSET:
            raise ValueError(f"open_dataset('synth'): split={split!r} is not one of {list(self._SPLIT_OFFSET)}")
        if scene not in SCENES:
            raise ValueError(f"open_dataset('synth'): scene={scene!r} is not one of {SCENES}")
        # int(2.7) would silently give 2 frames: every count must already be an int.
        for name, value, low in (("n", n, 1), ("seed", seed, None), ("pairs", pairs, 0), ("shadow_stride", shadow_stride, 1)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or (low is not None and value < low):
                raise ValueError(f"open_dataset('synth'): {name}={value!r} must be an int"
                                 + (f" >= {low}" if low is not None else ""))
        if (not isinstance(size, (tuple, list)) or len(size) != 2
                or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 4 for v in size)):
            raise ValueError(f"open_dataset('synth'): size={size!r} must be (H, W) with integers H, W >= 4")
        self.n, self.size, self.scene = int(n), (int(size[0]), int(size[1])), scene
        self.seed = int(seed) + self._SPLIT_OFFSET[split]
        self.pairs, self.shadow_stride = int(pairs), int(shadow_stride)
        if version not in VERSIONS:
            raise ValueError(f"open_dataset('synth'): version={version!r} is not one of {VERSIONS}")
        self.version = int(version)
        self._ahead: dict[int, dict[str, Any]] = {}
        self._last = -2

    def __len__(self) -> int:
        return self.n

    def load(self, index: int) -> dict[str, Any]:
        sequential, self._last = index == self._last + 1, index
        if index not in self._ahead:
            block = range(index, min(self.n, index + self.read_ahead)) if sequential else [index]
            self._ahead = dict(zip(block, self.load_batch(block)))
        return self._ahead.pop(index)

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """A batch of samples rendered in one pass (what a DataLoader's fetcher calls); transformed."""
        for i in indices:
            if not -self.n <= i < self.n:
                raise IndexError(f"{type(self).__name__}: index {i} out of range for {self.n} samples")
        samples = self.load_batch([i % self.n for i in indices])
        return [self.transform(s) for s in samples] if self.transform is not None else samples

    def load_batch(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Render several frames in one batched pass (untransformed samples)."""
        from depthlib.metrics import sample_ordinal_pairs  # the library's one pair sampler (and sign convention)

        out = render_batch(self.seed, indices, self.size, self.scene, shadow_stride=self.shadow_stride,
                           version=self.version)
        samples = []
        for row, index in enumerate(indices):
            s = {"image": out["image"][row], "depth": out["depth"][row], "mask": out["mask"][row],
                 "path": f"synth:{self.scene}:{self.seed}:{index}", "intrinsics": out["intrinsics"][row]}
            if self.pairs:
                g = torch.Generator().manual_seed(_frame_seed(self.seed, index, self.scene + ":pairs"))
                pairs, relation = sample_ordinal_pairs(s["depth"][None], s["mask"][None], n_pairs=self.pairs,
                                                       threshold=0.02, generator=g)
                s["pairs"], s["relation"] = pairs[0], relation[0]
            samples.append(s)
        return samples
