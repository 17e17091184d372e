"""Procedural CT phantoms: seeded, reproducible 2D axial slices in Hounsfield units.

A phantom "patient" is a set of random anatomy parameters (body habitus, position, rotation,
organ sizes, contrast phase, scanner noise). Slices are rendered at a position z along the
body (0 = lung apex, 1 = lower abdomen), in millimetre coordinates, so neighbouring slices of
one patient are similar, like a real series. Every slice also comes with a tissue label map.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from enum import IntEnum
from functools import partial
from pathlib import Path

import numpy as np
from scipy import ndimage

HU_MIN, HU_MAX = -1024, 3071
BODY_LENGTH_MM = 450.0
RENDER_MIN = 256  # slices are rendered at >= this many pixels, then block-averaged


class Tissue(IntEnum):
    AIR = 0
    FAT = 1
    MUSCLE = 2
    LUNG_LEFT = 3
    LUNG_RIGHT = 4
    HEART = 5
    BLOOD = 6  # heart chambers, aorta, large veins
    LIVER = 7
    SPLEEN = 8
    KIDNEY_LEFT = 9
    KIDNEY_RIGHT = 10
    BONE = 11
    MARROW = 12
    GAS = 13
    FLUID = 14
    LUNG_VESSEL = 15
    TABLE = 16
    LESION = 17
    GREY_MATTER = 18
    WHITE_MATTER = 19
    CSF = 20
    HEMORRHAGE = 21
    CALCIFICATION = 22
    SCALP = 23
    DENSE_LUNG = 24  # dependent density / atelectasis, a look-alike of lesions


# Typical HU (low, high) per tissue; each patient draws its own value in the range.
HU_RANGES = {
    Tissue.AIR: (-1000, -1000),
    Tissue.FAT: (-115, -85),
    Tissue.MUSCLE: (40, 60),
    Tissue.LUNG_LEFT: (-880, -820),
    Tissue.LUNG_RIGHT: (-880, -820),
    Tissue.HEART: (35, 50),
    Tissue.LIVER: (50, 65),
    Tissue.SPLEEN: (42, 55),
    Tissue.KIDNEY_LEFT: (28, 38),
    Tissue.KIDNEY_RIGHT: (28, 38),
    Tissue.BONE: (700, 1500),
    Tissue.MARROW: (180, 320),
    Tissue.GAS: (-1000, -950),
    Tissue.FLUID: (0, 20),
    Tissue.TABLE: (-50, 100),
    Tissue.GREY_MATTER: (36, 46),
    Tissue.WHITE_MATTER: (22, 30),
    Tissue.CSF: (0, 10),
    Tissue.SCALP: (25, 45),
}
# Contrast enhancement added in each phase (low, high) HU.
CONTRAST = {
    "none": {},
    "arterial": {Tissue.BLOOD: (200, 350), Tissue.KIDNEY_LEFT: (120, 180),
                 Tissue.KIDNEY_RIGHT: (120, 180), Tissue.SPLEEN: (40, 80),
                 Tissue.LIVER: (10, 30), Tissue.HEART: (20, 40)},
    "venous": {Tissue.BLOOD: (100, 170), Tissue.KIDNEY_LEFT: (110, 150),
               Tissue.KIDNEY_RIGHT: (110, 150), Tissue.SPLEEN: (60, 80),
               Tissue.LIVER: (45, 65), Tissue.HEART: (40, 60)},
}


@dataclass(frozen=True)
class View:
    """What a rendered image shows: centre (x, y) in mm, field of view in mm, pixels."""

    center: tuple[float, float]
    fov: float
    size: int


@dataclass
class Patient:
    """Random anatomy of one phantom body (chest/abdomen)."""

    seed: int
    half_width: float  # A, mm (left-right)
    half_depth: float  # B, mm (anterior-posterior)
    squareness: float  # superellipse exponent
    fat: float  # subcutaneous fat, mm
    center: tuple[float, float]
    angle: float  # radians
    fov: float
    organ_scale: dict
    hu: dict
    phase: str
    noise: float
    blur: float
    streak_prob: float
    rib_phase: np.ndarray = field(repr=False)
    bowel: np.ndarray = field(repr=False)  # rows: u, v, r, z_center, z_halfspan (body-relative)

    @classmethod
    def sample(cls, rng: np.random.Generator, seed: int = 0) -> "Patient":
        phase = str(rng.choice(["none", "arterial", "venous"], p=[0.3, 0.25, 0.45]))
        hu = {t: float(rng.uniform(*r)) for t, r in HU_RANGES.items()}
        hu[Tissue.BLOOD] = float(rng.uniform(35, 50))
        for t, r in CONTRAST[phase].items():
            hu[t] = hu[t] + float(rng.uniform(*r))
        half_width = float(rng.uniform(140, 195))
        return cls(
            seed=seed,
            half_width=half_width,
            half_depth=half_width * float(rng.uniform(0.6, 0.8)),
            squareness=float(rng.uniform(2.0, 2.7)),
            fat=float(rng.uniform(5, 35)),
            center=(float(rng.uniform(-30, 30)), float(rng.uniform(-30, 20))),
            angle=float(np.deg2rad(rng.uniform(-12, 12))),
            fov=float(rng.uniform(380, 480)),
            organ_scale={name: float(rng.uniform(0.85, 1.15))
                         for name in ("lung", "heart", "liver", "spleen", "kidney")},
            hu=hu,
            phase=phase,
            noise=float(rng.uniform(6, 25)),
            blur=float(rng.uniform(0.3, 0.8)),
            streak_prob=float(rng.uniform(0.0, 0.5)),
            rib_phase=rng.uniform(0, 2 * np.pi, size=12),
            bowel=np.column_stack([
                rng.uniform(-0.5, 0.5, 8), rng.uniform(-0.6, 0.2, 8), rng.uniform(8, 22, 8),
                rng.uniform(0.6, 1.0, 8), rng.uniform(0.03, 0.1, 8),
            ]),
        )

    def default_view(self, size: int) -> View:
        return View((0.0, 0.0), self.fov, size)


# --- geometry -------------------------------------------------------------------------
class Canvas:
    """Painter's-algorithm canvas in mm coordinates, rendered at ``scale`` x the view size."""

    def __init__(self, view: View, frame_center=(0.0, 0.0), frame_angle=0.0,
                 render_min: int = RENDER_MIN):
        self.view = view
        self.scale = max(1, int(np.ceil(render_min / view.size)))
        n = view.size * self.scale
        px = view.fov / n
        coords = (np.arange(n) + 0.5) * px - view.fov / 2
        self.x = view.center[0] + coords[None, :]  # image left -> right (patient right -> left)
        self.y = view.center[1] + coords[:, None]  # image top -> bottom (anterior -> posterior)
        dx, dy = self.x - frame_center[0], self.y - frame_center[1]
        c, s = np.cos(frame_angle), np.sin(frame_angle)
        self.u = (c * dx + s * dy).astype(np.float32)  # body frame
        self.v = (-s * dx + c * dy).astype(np.float32)
        self.hu = np.full((n, n), -1000.0, dtype=np.float32)
        self.label = np.zeros((n, n), dtype=np.uint8)

    def ellipse(self, cu, cv, a, b, angle=0.0, power=2.0, wobble=None):
        """Normalised radius (<= 1 inside) of an ellipse in the body frame."""
        du, dv = self.u - np.float32(cu), self.v - np.float32(cv)
        if angle:
            c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
            du, dv = c * du + s * dv, c * dv - s * du
        a, b = np.float32(max(a, 1e-3)), np.float32(max(b, 1e-3))
        if power == 2.0:
            r = np.sqrt((du / a) ** 2 + (dv / b) ** 2)
        else:
            r = (np.abs(du / a) ** power + np.abs(dv / b) ** power) ** (1 / power)
        if wobble is not None:  # irregular outline: radius modulated by a few harmonics
            theta = np.arctan2(dv, du)
            r = r / (1 + sum(amp * np.cos(k * theta + ph) for k, amp, ph in wobble))
        return r

    def paint(self, mask, tissue: Tissue, hu: float, where=None):
        if where is not None:
            mask = mask & where
        self.hu[mask] = hu[mask] if np.ndim(hu) else hu
        self.label[mask] = tissue

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """Block-average HU to the view size (partial volume); majority-free label pick."""
        s = self.scale
        if s == 1:
            return self.hu.copy(), self.label.copy()
        n = self.view.size
        hu = self.hu.reshape(n, s, n, s).mean(axis=(1, 3))
        label = self.label[s // 2::s, s // 2::s]
        return hu, label.copy()


def _bump(z, start, end):
    """Smooth 0..1..0 profile over [start, end], 0 outside."""
    t = (np.asarray(z, dtype=float) - start) / (end - start)
    return float(np.where((t > 0) & (t < 1), np.sin(np.pi * np.clip(t, 0, 1)) ** 0.5, 0.0))


def _scanner(hu, label, patient_noise, blur, streak_prob, rng, view: View, streak_hu=60.0):
    """Reconstruction blur, correlated noise and occasional streaks, in place of a real scanner."""
    out = ndimage.gaussian_filter(hu, blur)
    noise = ndimage.gaussian_filter(rng.standard_normal(hu.shape).astype(np.float32), 0.6)
    noise *= patient_noise / max(float(noise.std()), 1e-6)
    body = label != Tissue.AIR
    out += noise * np.where(body, 1.0, 0.6)
    if rng.random() < streak_prob:
        n = view.size
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
        dense = np.argwhere(label == Tissue.BONE)
        for _ in range(int(rng.integers(1, 3))):
            py, px = (dense[rng.integers(len(dense))] if len(dense)
                      else rng.uniform(0, n, size=2))
            for phi in rng.uniform(0, np.pi, size=int(rng.integers(4, 14))):
                dist = np.abs((xx - px) * np.sin(phi) - (yy - py) * np.cos(phi))
                reach = np.hypot(xx - px, yy - py)
                amp = rng.normal(0, streak_hu)
                out += amp * np.exp(-(dist / 0.8) ** 2) * np.exp(-reach / (0.6 * n))
    return out


def _to_int16(hu: np.ndarray) -> np.ndarray:
    return np.clip(np.round(hu), HU_MIN, HU_MAX).astype(np.int16)


# --- chest / abdomen ----------------------------------------------------------------------
def render_body(patient: Patient, z: float, view: View, rng: np.random.Generator,
                lesions: int = 0, look_alikes: int = 0,
                render_min: int = RENDER_MIN) -> tuple[np.ndarray, np.ndarray]:
    """One axial chest/abdomen slice at body position ``z`` (0..1): (HU int16, tissue labels).

    ``lesions`` ground-glass opacities (COVID-like) and ``look_alikes`` dependent densities of
    similar HU are drawn into the lungs where the slice has lung.
    """
    p, hu = patient, patient.hu
    cv = Canvas(view, patient.center, patient.angle, render_min)
    A, B = p.half_width, p.half_depth
    body = cv.ellipse(0, 0, A, B, power=p.squareness) <= 1
    # Table under the patient, in the image frame (it does not rotate with the body).
    table_y = p.center[1] + B + 15
    ty = cv.y - table_y - 0.0006 * cv.x ** 2
    cv.paint((ty > 0) & (ty < 7) & (np.abs(cv.x) < 0.45 * view.fov + 200), Tissue.TABLE, hu[Tissue.TABLE])
    cv.paint(body, Tissue.FAT, hu[Tissue.FAT])
    Ai, Bi = A - p.fat, B - p.fat
    wall = cv.ellipse(0, 0, Ai, Bi, power=p.squareness) <= 1
    cv.paint(wall, Tissue.MUSCLE, hu[Tissue.MUSCLE])
    Ac, Bc = Ai - 14, Bi - 14
    cavity = cv.ellipse(0, -0.05 * Bc, Ac, Bc * 0.92, power=p.squareness) <= 1
    cv.paint(cavity, Tissue.FAT, hu[Tissue.FAT] + 10)

    s = p.organ_scale
    # Bowel loops: gas over fluid, lower abdomen.
    for bu, bv, br, bz, bspan in p.bowel:
        f = _bump(z, bz - bspan * 4, bz + bspan * 4)
        if f > 0:
            loop = cv.ellipse(bu * Ac, bv * Bc, br * f, br * f) <= 1
            cv.paint(loop, Tissue.FLUID, hu[Tissue.FLUID], where=cavity)
            cv.paint(loop & (cv.v < bv * Bc - 0.2 * br), Tissue.GAS, hu[Tissue.GAS], where=cavity)
    # Liver (patient's right = image left = negative u), spleen, kidneys.
    f = _bump(z, 0.42, 0.88) * s["liver"]
    if f > 0:
        liver = cv.ellipse(-0.36 * Ac, 0.0, 0.55 * Ac * f, 0.78 * Bc * f, angle=-0.25,
                           wobble=[(2, 0.06, 1.0), (3, 0.05, 2.0)]) <= 1
        cv.paint(liver, Tissue.LIVER, hu[Tissue.LIVER], where=cavity)
        for k in range(4):  # hepatic vessels
            vessel = cv.ellipse(-0.36 * Ac + 18 * np.cos(k * 1.7 + z * 9), 10 * np.sin(k * 2.3),
                                3.5, 3.5) <= 1
            cv.paint(vessel & liver, Tissue.BLOOD, hu[Tissue.BLOOD] - 10)
    f = _bump(z, 0.5, 0.74) * s["spleen"]
    if f > 0:
        spleen = cv.ellipse(0.6 * Ac, 0.35 * Bc, 0.17 * Ac * f, 0.36 * Bc * f, angle=0.7) <= 1
        cv.paint(spleen, Tissue.SPLEEN, hu[Tissue.SPLEEN], where=cavity)
    f = _bump(z, 0.64, 0.92) * s["kidney"]
    if f > 0:
        for side, tissue in ((1, Tissue.KIDNEY_LEFT), (-1, Tissue.KIDNEY_RIGHT)):
            ku, kv, ang = side * 0.42 * Ac, 0.5 * Bc, side * 0.5
            cortex = cv.ellipse(ku, kv, 0.15 * Ac * f, 0.25 * Bc * f, angle=ang) <= 1
            cv.paint(cortex, tissue, hu[tissue] + (40 if p.phase == "arterial" else 0))
            medulla = cv.ellipse(ku, kv, 0.09 * Ac * f, 0.17 * Bc * f, angle=ang) <= 1
            cv.paint(medulla, tissue, hu[tissue] - (60 if p.phase == "arterial" else 0))
            sinus = cv.ellipse(ku - side * 0.08 * Ac * f, kv, 0.05 * Ac * f, 0.09 * Bc * f) <= 1
            cv.paint(sinus, Tissue.FAT, hu[Tissue.FAT])
    # Lungs (patient's left = image right = positive u) and what lies in them.
    lung_masks = []
    for side, tissue, end in ((1, Tissue.LUNG_LEFT, 0.62), (-1, Tissue.LUNG_RIGHT, 0.56)):
        f = _bump(z, -0.05, end) * s["lung"]
        if f > 0:
            lung = cv.ellipse(side * 0.47 * Ac, -0.02 * Bc, 0.4 * Ac * f, 0.8 * Bc * f,
                              wobble=[(2, 0.04, side), (3, 0.03, 0.5)]) <= 1
            lung &= cavity
            cv.paint(lung, tissue, hu[tissue] + 15 * (cv.v / Bc))  # denser posteriorly
            lung_masks.append(lung)
    lungs = np.logical_or.reduce(lung_masks) if lung_masks else None
    if lungs is not None and lungs.any():
        _lung_details(cv, lungs, patient, rng, lesions, look_alikes)
    # Mediastinum and heart (slightly to the patient's left).
    f = _bump(z, 0.22, 0.56) * s["heart"]
    if f > 0:
        cv.paint(cv.ellipse(0.05 * Ac, -0.12 * Bc, 0.24 * Ac * f, 0.55 * Bc * f) <= 1,
                 Tissue.FAT, hu[Tissue.FAT] + 20)
        heart = cv.ellipse(0.14 * Ac, -0.12 * Bc, 0.3 * Ac * f, 0.4 * Bc * f, angle=0.5) <= 1
        cv.paint(heart, Tissue.HEART, hu[Tissue.HEART])
        chambers = cv.ellipse(0.14 * Ac, -0.12 * Bc, 0.22 * Ac * f, 0.3 * Bc * f, angle=0.5) <= 1
        cv.paint(chambers, Tissue.BLOOD, hu[Tissue.BLOOD])
    # Great vessels, spine, ribs.
    spine_v = 0.62 * Bc
    cv.paint(cv.ellipse(0.1 * Ac, spine_v - 30, 12, 12) <= 1, Tissue.BLOOD, hu[Tissue.BLOOD])
    if z > 0.45:
        cv.paint(cv.ellipse(-0.12 * Ac, spine_v - 34, 11, 9) <= 1, Tissue.BLOOD, hu[Tissue.BLOOD] - 20)
    vertebra = cv.ellipse(0, spine_v, 19, 16)
    cv.paint(vertebra <= 1, Tissue.BONE, hu[Tissue.BONE])
    cv.paint(vertebra <= 0.8, Tissue.MARROW, hu[Tissue.MARROW])
    cv.paint(cv.ellipse(0, spine_v + 26, 11, 10) <= 1, Tissue.BONE, hu[Tissue.BONE])
    cv.paint(cv.ellipse(0, spine_v + 26, 7, 7) <= 1, Tissue.FLUID, hu[Tissue.FLUID])
    cv.paint(cv.ellipse(0, spine_v + 44, 4, 9) <= 1, Tissue.BONE, hu[Tissue.BONE])
    if z < 0.78:
        for k, ph in enumerate(p.rib_phase):
            if np.sin(z * 25 + ph) < -0.2:
                continue
            theta = (k + 0.5) / len(p.rib_phase) * 2 * np.pi + 0.08 * np.sin(z * 12 + ph)
            if abs(np.sin(theta)) > 0.97:  # leave sternum / spine gaps
                continue
            ru, rv = (Ai - 6) * np.cos(theta), (Bi - 6) * np.sin(theta)
            rib = cv.ellipse(ru, rv, 6, 3.5, angle=theta + np.pi / 2)
            cv.paint(rib <= 1, Tissue.BONE, hu[Tissue.BONE] * 0.8)
            cv.paint(rib <= 0.55, Tissue.MARROW, hu[Tissue.MARROW])
        if 0.15 < z < 0.55:
            cv.paint(cv.ellipse(0, -(Bi - 7), 12, 5) <= 1, Tissue.BONE, hu[Tissue.BONE] * 0.7)
    out, label = cv.finish()
    out = _scanner(out, label, p.noise, p.blur, p.streak_prob, rng, view)
    return _to_int16(out), label


def _lung_details(cv: Canvas, lungs, patient: Patient, rng, lesions: int, look_alikes: int):
    hu = patient.hu
    ys, xs = np.nonzero(lungs)
    # Ground-glass opacities: irregular blobs, preferably peripheral.
    dist = ndimage.distance_transform_edt(lungs)
    periphery = np.nonzero(lungs & (dist < max(2, dist.max() * 0.5)))
    for _ in range(lesions):
        i = rng.integers(len(periphery[0]))
        cy, cx = periphery[0][i], periphery[1][i]
        radius = rng.uniform(12, 35)
        wobble = [(k, rng.uniform(0.05, 0.2), rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5)]
        r = cv.ellipse(cv.u[cy, cx], cv.v[cy, cx], radius, radius * rng.uniform(0.6, 1.0),
                       angle=rng.uniform(0, np.pi), wobble=wobble)
        level = rng.uniform(-720, -380)
        cv.paint((r <= 1) & lungs, Tissue.LESION, level + 40 * np.cos(r * 7.0))
        if rng.random() < 0.3:  # consolidating core
            cv.paint((r <= 0.4) & lungs, Tissue.LESION, rng.uniform(-150, 20))
    # Look-alikes of similar HU: dependent (posterior) density bands and fissure lines.
    for _ in range(look_alikes):
        if rng.random() < 0.6:
            depth = rng.uniform(4, 14)
            posterior = ndimage.distance_transform_edt(lungs | (cv.v < cv.v[ys, xs].mean()))
            band = lungs & (posterior < depth * cv.scale * cv.view.size / cv.view.fov)
            cv.paint(band, Tissue.DENSE_LUNG, rng.uniform(-650, -350))
        else:
            phi = rng.uniform(0, np.pi)
            i = rng.integers(len(ys))
            d = np.abs((cv.u - cv.u[ys[i], xs[i]]) * np.sin(phi) - (cv.v - cv.v[ys[i], xs[i]]) * np.cos(phi))
            cv.paint(lungs & (d < rng.uniform(1.0, 3.0)), Tissue.DENSE_LUNG, rng.uniform(-600, -300))
    # Vessels: small round blood-density dots.
    for _ in range(int(rng.integers(15, 40))):
        i = rng.integers(len(ys))
        r = cv.ellipse(cv.u[ys[i], xs[i]], cv.v[ys[i], xs[i]], *(rng.uniform(1.0, 3.5, 2)))
        cv.paint((r <= 1) & lungs, Tissue.LUNG_VESSEL, hu[Tissue.BLOOD] - 20)


# --- head ---------------------------------------------------------------------------------
def render_head(rng: np.random.Generator, view_size: int, hemorrhage: bool,
                calcifications: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One axial head slice (HU int16, labels); with an intracranial bleed if ``hemorrhage``."""
    A, B = rng.uniform(66, 80), rng.uniform(82, 98)
    view = View((rng.uniform(-12, 12), rng.uniform(-12, 12)), rng.uniform(220, 260), view_size)
    cv = Canvas(view, (0.0, 0.0), np.deg2rad(rng.uniform(-10, 10)))
    hu = {t: rng.uniform(*r) for t, r in HU_RANGES.items()}
    skull_t = rng.uniform(5, 8)
    cv.paint(cv.ellipse(0, 0, A + skull_t + 5, B + skull_t + 5) <= 1, Tissue.SCALP, hu[Tissue.SCALP])
    cv.paint(cv.ellipse(0, 0, A + skull_t, B + skull_t) <= 1, Tissue.BONE, rng.uniform(1000, 1700))
    inner = cv.ellipse(0, 0, A, B)
    cv.paint(inner <= 1, Tissue.CSF, hu[Tissue.CSF])
    brain = inner <= 1 - 2.5 / A
    cv.paint(brain, Tissue.GREY_MATTER, hu[Tissue.GREY_MATTER])
    gyri = [(k, rng.uniform(0.02, 0.05), rng.uniform(0, 2 * np.pi)) for k in (7, 11, 17)]
    cv.paint(cv.ellipse(0, 0, A - 9, B - 9, wobble=gyri) <= 1, Tissue.WHITE_MATTER,
             hu[Tissue.WHITE_MATTER])
    vent = rng.uniform(0.6, 1.3)
    for side in (-1, 1):
        cv.paint(cv.ellipse(side * 9 * vent, -5, 5 * vent, 22 * vent, angle=side * 0.25) <= 1,
                 Tissue.CSF, hu[Tissue.CSF])
    cv.paint((np.abs(cv.u) < 1.0) & brain & (np.abs(cv.v) > 30), Tissue.CSF, hu[Tissue.CSF] + 30)
    sinus = cv.ellipse(0, B - 3, 6, 4) <= 1  # superior sagittal sinus, dense like a bleed
    cv.paint(sinus & (inner <= 1), Tissue.BLOOD, rng.uniform(55, 75))
    for _ in range(calcifications):
        cv.paint(cv.ellipse(rng.choice([-1, 1]) * 9 * vent + rng.normal(0, 2), rng.uniform(-10, 10),
                            *(rng.uniform(1.5, 4, 2))) <= 1, Tissue.CALCIFICATION,
                 rng.uniform(70, 200))
    if hemorrhage:
        if rng.random() < 0.6:  # intraparenchymal: dense blob with a dark oedema rim
            angle = rng.uniform(0, 2 * np.pi)
            radius = rng.uniform(5, 18)
            dist = rng.uniform(0.1, 0.75)
            cu, cv_ = dist * (A - radius) * np.cos(angle), dist * (B - radius) * np.sin(angle)
            wobble = [(k, rng.uniform(0.05, 0.15), rng.uniform(0, 6.3)) for k in (2, 3)]
            cv.paint(cv.ellipse(cu, cv_, radius * 1.4, radius * 1.2, wobble=wobble) <= 1,
                     Tissue.WHITE_MATTER, hu[Tissue.WHITE_MATTER] - 8, where=brain)
            cv.paint(cv.ellipse(cu, cv_, radius, radius * 0.8, wobble=wobble) <= 1,
                     Tissue.HEMORRHAGE, rng.uniform(55, 90), where=brain)
        else:  # subdural: crescent along the inner table of the skull
            start = rng.uniform(0, 2 * np.pi)
            span = rng.uniform(0.6, 1.6)
            theta = np.arctan2(cv.v / B, cv.u / A)
            in_arc = np.cos(theta - start - span / 2) > np.cos(span / 2)
            crescent = (inner <= 1) & (inner > 1 - rng.uniform(4, 10) / A) & in_arc
            cv.paint(crescent, Tissue.HEMORRHAGE, rng.uniform(50, 80))
    out, label = cv.finish()
    out = _scanner(out, label, rng.uniform(2, 5), rng.uniform(0.3, 0.7), 0.3, rng, view,
                   streak_hu=12.0)
    return _to_int16(out), label


# --- volumes and the default pre-training store ---------------------------------------------
def patient_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """Independent generator per (seed, patient, stream): output never depends on how many
    patients are made or in which order."""
    return np.random.default_rng([seed, index, stream])


def phantom_volume(seed: int, index: int, n_slices: int, size: int,
                   z_range: tuple[float, float] = (0.0, 1.0)):
    """Slices of one phantom patient from ``z_range``: (HU (n, size, size) int16, labels,
    manifest rows)."""
    patient = Patient.sample(patient_rng(seed, index), seed)
    slice_rng = patient_rng(seed, index, 1)
    view = patient.default_view(size)
    zs = np.linspace(*z_range, n_slices)
    images, labels = zip(*(render_body(patient, float(z), view, slice_rng) for z in zs))
    spacing = view.fov / size
    pid = f"phantom-{seed}-{index:05d}"
    rows = [{
        "source": f"phantom:seed={seed}:patient={index}:z={z:.4f}",
        "patient_id": pid,
        "series_uid": f"{pid}-ct",
        "modality": "CT",
        "slice_index": i,
        "position_mm": round(float(z) * BODY_LENGTH_MM, 3),
        "spacing_row_mm": spacing,
        "spacing_col_mm": spacing,
    } for i, z in enumerate(zs)]
    return np.stack(images), np.stack(labels), rows


def write_phantom_store(path: str | Path, *, patients: int = 40, slices_per_patient: int = 32,
                        size: int = 64, seed: int = 0, shard_slices: int = 1024,
                        workers: int | None = None, progress: bool = True,
                        overwrite: bool = False):
    """Write the default pre-training data: a slice store of phantom CT series.

    An interrupted write resumes: patients in finished shards are not made again. A complete
    store with the same settings is returned as it is.
    """
    from tqdm.auto import tqdm

    from .store import META_FILE, SliceStore, SliceStoreWriter, StoreError

    attrs = {"source": "medssl phantom", "seed": seed, "patients": patients,
             "slices_per_patient": slices_per_patient}
    path = Path(path)
    if (path / META_FILE).exists() and not overwrite:
        store = SliceStore(path)
        if store.attrs == attrs and store.size == (size, size):
            return store
        raise StoreError(f"{path}: holds a different store ({store.attrs}, {store.size}); "
                         "choose overwrite or another path.")
    writer = SliceStoreWriter(path, size, shard_slices=shard_slices, overwrite=overwrite,
                              resume=not overwrite, attrs=attrs)
    todo = [i for i in range(patients) if f"phantom-{seed}-{i:05d}-ct" not in writer.done_groups]
    make = partial(_volume_without_labels, seed, n_slices=slices_per_patient, size=size)
    workers = min(workers or os.cpu_count() or 1, max(len(todo), 1))
    with writer, ProcessPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
        volumes = pool.map(make, todo) if pool else map(make, todo)
        for images, rows in tqdm(volumes, total=len(todo), desc="phantom CT", unit="patient",
                                 disable=not progress):
            writer.add(images, rows)
    return SliceStore(path)


def _volume_without_labels(seed, index, n_slices, size):
    images, _, rows = phantom_volume(seed, index, n_slices, size)
    return images, rows
