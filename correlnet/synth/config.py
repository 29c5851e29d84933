"""`SynthConfig`: every knob of the synthetic defect generator, with its default.

`SynthConfig()` is the full generator (the paper's blotches plus dust, hairs, persistent
scratches, grain, flicker and a slight optical blur), used for the shipped model.
`SynthConfig.paper()` is the paper's generator alone (Sec. 4.1, Fig. 3), used for the Table 1
style evaluation.

Sizes are in pixels of the frame the generator draws on. Training draws on 256x256 crops
taken from the source at its native resolution, and the dust statistics below are those of
a 2K-wide scan, so a crop is treated as a 256-pixel window of a 2K scan.

Ranges are (low, high) pairs drawn uniformly unless a field says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from correlnet.synth.sprites import SpriteConfig

__all__ = ["SynthConfig", "SpriteConfig"]

Range = tuple[float, float]


@dataclass(frozen=True)
class SynthConfig:
    """Configuration of `degrade_triplet`; frozen so it can be recorded in a checkpoint."""

    # --- The paper's generator (Sec. 4.1, Fig. 3) ---
    blotches: bool = True
    # Sec. 4.1: 8x8 periods on a 256x256 field, i.e. one period per 32 px; larger frames keep
    # the period in pixels so a blotch keeps its paper size.
    perlin_period_px: float = 32.0
    # Beyond the paper (0 and () in `paper()`): real blotches come in many sizes and are often
    # solid. Per frame, the period is drawn from `blotch_periods` (empty: perlin_period_px), and
    # with probability `blotch_filled_prob` the blotches are the whole regions beyond the band's
    # inner threshold (noise <= -0.65 or >= 0.65) instead of the band itself.
    blotch_periods: tuple[float, ...] = (16.0, 32.0, 64.0)
    blotch_filled_prob: float = 0.4
    perlin_octaves: int = 5  # Sec. 4.1
    perlin_persistence: float = 0.5  # Sec. 4.1
    perlin_lacunarity: float = 2.0  # Sec. 4.1
    dark_band: Range = (-0.8, -0.65)  # Sec. 4.1: dark defects where the noise is in this band
    light_band: Range = (0.65, 0.8)  # Sec. 4.1: light defects
    # "Uniform colour" (Sec. 4.1): our choice of ranges, one colour per connected blotch.
    dark_colour: Range = (0.0, 0.15)
    light_colour: Range = (0.85, 1.0)
    # "Random transparency" (Sec. 4.1): opacity per connected blotch.
    blotch_opacity: Range = (0.5, 1.0)

    # --- Beyond the paper: dust specks and dirt ---
    dust: bool = True
    # Specks per 256x256 area of one frame: the rate itself is drawn per frame from this
    # range, so some frames are clean and some dirty.
    dust_per_256: Range = (0.0, 20.0)
    # Log-normal speck areas: hand annotation of 35 mm scans puts the median near 53 px^2 at
    # 5K width, i.e. about 6 px^2 at 2K width.
    dust_median_area: float = 6.0
    dust_log_sigma: float = 1.0
    dust_max_area: int = 400  # the log-normal tail above this is dirt we leave to blotches
    dust_dark_prob: float = 0.7  # dust on the print is dark, on the negative light
    dust_opacity: Range = (0.6, 1.0)
    dust_edge_blur: Range = (0.0, 0.8)  # Gaussian sigma in px: scans are never perfectly sharp

    # --- Beyond the paper: real defects from a bank (correlnet.synth.bank), pasted when a bank is
    # given to the generator: Poisson mean per 256x256 area of one frame (0 = none) ---
    bank_per_256: float = 0.0
    # Strength a pasted defect's residual is scaled by, drawn per defect (1, 1: as cut; no draw). The
    # bank holds only the sure, strong defects; real dust is often fainter (issue 12: most missed
    # annotated marks never reach SDI-p 0.09).
    bank_opacity: Range = (1.0, 1.0)

    # --- Beyond the paper: hairs and fibres ---
    hairs: bool = True
    hairs_per_256: float = 0.6  # Poisson mean per 256x256 area of one frame
    hair_length: Range = (15.0, 120.0)
    hair_curl: float = 0.12  # std of the heading change per pixel of length, radians
    hair_dark_prob: float = 0.75
    hair_opacity: Range = (0.5, 1.0)

    # --- Beyond the paper: persistent vertical line scratches ---
    scratches: bool = True
    scratch_prob: float = 0.3  # probability that a triplet has scratches at all
    scratch_max_count: int = 2
    scratch_drift: float = 0.7  # std of the horizontal drift, px per frame
    scratch_width: Range = (0.5, 1.5)  # decay length tau of the damped sinusoid, px
    scratch_amplitude: Range = (0.15, 0.5)
    scratch_dark_prob: float = 0.4
    scratch_full_height_prob: float = 0.7

    # --- Not defects: thin near-vertical scene lines (correlnet.synth.scene), drawn by degrade_triplet
    # into the scene region before the triplet is cut so they weave with it; counter-examples to the scratches.
    # Off in both presets, on in `mixed()` (the shipped model's recipe).
    scene_lines: bool = False
    scene_lines_prob: float = 0.5  # probability that a triplet gets scene lines at all
    scene_lines_mean: float = 1.5  # Poisson mean of their number (at least one)
    scene_line_amplitude: Range = (0.05, 0.4)
    # Scene blotches: the paper's blotch shapes drawn identically into all three frames as scene
    # content (the trap of Sec. 1); same switch-off rule as the lines.
    scene_blotches: bool = False
    scene_blotches_prob: float = 0.3

    # --- Not defects: texture applied to the clean frames (never in the mask) ---
    grain: bool = True
    grain_sigma: Range = (0.0, 0.03)  # std of the grain in mid-grey, in [0, 1] units
    grain_size: Range = (0.4, 1.0)  # Gaussian sigma of the grain clumps, px
    flicker: bool = True
    flicker_gain: float = 0.05  # std of the per-frame gain around 1
    flicker_offset: float = 0.02  # std of the per-frame offset
    flicker_ramp: float = 0.03  # std of a linear brightness ramp across the frame

    # Scanner/printer optics: one Gaussian blur per frame (sigma range, px) over the whole degraded
    # frame and its base alike, after the defects, so defect edges are as soft as the scene's.
    blur: bool = True
    blur_sigma: Range = (0.0, 1.2)  # the 1903/1906 re-scans are softer than the demo clips

    # --- Labelling rule (see compose.py) ---
    # A pixel is in the mask when its value moved by at least this much from the textured
    # clean frame (13/255); smaller changes are undone, so unmasked pixels differ from the
    # clean frame only by grain and flicker.
    min_contrast: float = 0.05

    # --- Not defects: scene motion and film nuisances (off in the presets above, on in `real()`) ---
    # Moving sprites (correlnet.synth.sprites): textured patches, dust-like specks and thin lines with
    # their own motion, drawn into the scene before the crops are cut; never masked. None = off.
    sprites: SpriteConfig | None = None
    # Probability that the previous or the next clean frame is a copy of the middle one (duplicated
    # frames of telecined or restored transfers; real in the 1906 clip and in the pancake clip).
    duplicate_frame_prob: float = 0.0
    # Gate weave with sub-pixel shifts: crops are resampled at fractional offsets (all three frames,
    # so none is systematically softer) instead of whole-pixel ones.
    subpixel_jitter: bool = False

    # --- Order of the degradation (see compose.py) ---
    # False (the presets above): grain and flicker on the clean frame, defects, then blur.
    # True (`real()`): the physical order of a scan: flicker (exposure), marks on the film, the
    # scanner's optical blur, then grain and sensor noise over everything, then compression, so a
    # mark is never sharper or cleaner than the picture around it.
    physical_order: bool = False
    # Share of triplets with no defect at all (scene and nuisances only): on real footage almost
    # every pixel is clean, and a model that never saw a defect-free triplet learns to find something.
    clean_prob: float = 0.0
    compression_prob: float = 0.0  # share of triplets JPEG-compressed (physical order only)
    jpeg_quality: Range = (40.0, 95.0)

    # --- Mixing (beyond the paper) ---
    # Probability that a triplet is drawn with the paper's generator alone (`paper_part`): sharp,
    # grain-free frames with blotches only. 0 in both presets; the shipped model trains with
    # `mixed()`, so that it also sees clean, sharp scene edges that are not defects.
    paper_only_prob: float = 0.0

    @classmethod
    def paper(cls) -> "SynthConfig":
        """The paper's generator only (Sec. 4.1): Perlin blotches, no grain, flicker or blur."""
        return cls().paper_part()

    @classmethod
    def mixed(cls, paper_only_prob: float = 0.3) -> "SynthConfig":
        """The shipped model's recipe: the full generator, except that a `paper_only_prob` share of
        the triplets get the paper's alone, with scene lines as counter-examples to the scratches,
        and scratches in 15 % of the triplets instead of 30 % (there were more of them than thin
        vertical lines in the clean demo clips, and the model learnt to flag every such line), and
        with scene blotches: spots in the scene that only persistence tells from film blotches."""
        return cls(paper_only_prob=paper_only_prob, scene_lines=True, scene_blotches=True, scratch_prob=0.15)

    @classmethod
    def real(cls, paper_only_prob: float = 0.25) -> "SynthConfig":
        """The recipe for footage the model never saw (issue 12): `mixed()` without persistent line
        scratches (left to the restorer: in a static shot a persistent scratch cannot be told from a
        door frame by time alone, and learning them taught "vertical line = defect"), with moving
        sprites, duplicated frames and sub-pixel weave as scene, in the physical order of a scan
        (marks, optical blur, then grain, then compression), with softer, more transparent dust."""
        return replace(
            cls.mixed(paper_only_prob), scratches=False, sprites=SpriteConfig(), duplicate_frame_prob=0.03,
            subpixel_jitter=True, physical_order=True, compression_prob=0.5, blur_sigma=(0.3, 1.4),
            dust_opacity=(0.35, 1.0), scene_lines_prob=0.6, clean_prob=0.15, bank_per_256=3.0,
        )

    @classmethod
    def marks_only(cls) -> "SynthConfig":
        """Defects to composite onto frames that already carry a film's look (fine-tuning's rehearsal
        crops, `studio.crop_sampler`): `real()`'s blotches, dust and hairs with nothing else drawn,
        no scene content, no grain, flicker, optical blur or compression, every triplet defective."""
        return replace(
            cls.real().only(blotches=True, dust=True, hairs=True), sprites=None, scene_lines=False,
            scene_blotches=False, duplicate_frame_prob=0.0, compression_prob=0.0, clean_prob=0.0, paper_only_prob=0.0,
            subpixel_jitter=False, bank_per_256=0.0,
        )

    def paper_part(self) -> "SynthConfig":
        """This configuration with everything beyond Sec. 4.1 switched off (its blotch settings kept)."""
        return replace(
            self, dust=False, hairs=False, scratches=False, grain=False, flicker=False, blur=False,
            blotch_periods=(), blotch_filled_prob=0.0, paper_only_prob=0.0, scene_lines=False,
            scene_blotches=False, compression_prob=0.0, bank_per_256=0.0,
        )

    @classmethod
    def from_dict(cls, values: dict) -> "SynthConfig":
        """Inverse of ``dataclasses.asdict`` after a JSON round trip (lists back to tuples).

        Raises ValueError naming unknown keys (e.g. a checkpoint from a newer version)."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown SynthConfig fields {sorted(unknown)}; valid: {sorted(known)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        if isinstance(values.get("sprites"), dict):
            sprites = values["sprites"]
            values["sprites"] = SpriteConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in sprites.items()})
        return cls(**values)

    def with_overrides(self, values: dict[str, object]) -> "SynthConfig":
        """A copy with fields replaced by `values` ({"dust_opacity": (0.1, 1.0), "sprites.opacity": ...});
        a dotted key reaches into the sprite settings (which must be on); lists become tuples.
        Raises ValueError naming an unknown key."""
        top: dict[str, object] = {}
        sprite: dict[str, object] = {}
        for key, value in values.items():
            value = tuple(value) if isinstance(value, list) else value
            group, _, name = key.rpartition(".")
            if group not in ("", "sprites"):
                raise ValueError(f"unknown generator setting {key!r}: only 'sprites.' settings are nested")
            (sprite if group else top)[name] = value
        known, sprite_known = {f.name for f in fields(self)}, {f.name for f in fields(SpriteConfig)}
        for names, allowed, prefix in ((top, known, ""), (sprite, sprite_known, "sprites.")):
            unknown = sorted(set(names) - allowed)
            if unknown:
                raise ValueError(f"unknown generator setting(s) {[prefix + u for u in unknown]}; "
                                 f"valid: {sorted(prefix + a for a in allowed)}")
        if "sprites" in top:
            raise ValueError("set the sprite settings one by one (sprites.max_speed=12), not 'sprites' itself")
        if sprite and self.sprites is None:
            raise ValueError("sprites.* settings need a generator with moving sprites (e.g. --synth real)")
        for names, current, prefix in ((top, self, ""), (sprite, self.sprites, "sprites.")):
            for name, value in names.items():
                _check_like(prefix + name, value, getattr(current, name))
        out = replace(self, **top)
        return replace(out, sprites=replace(out.sprites, **sprite)) if sprite else out

    def only(self, **flags: bool) -> "SynthConfig":
        """A copy with every family off except those passed as True (used by tests and benches)."""
        names = ("blotches", "dust", "hairs", "scratches", "grain", "flicker", "blur")
        unknown = set(flags) - set(names)
        if unknown:
            raise ValueError(f"unknown defect families {sorted(unknown)}; choose from {names}")
        return replace(self, **{n: bool(flags.get(n, False)) for n in names})


def _check_like(key: str, value: object, current: object) -> None:
    """Raise ValueError unless `value` can stand where `current` stands: a bool for a bool, a number
    for a number, a tuple of as many numbers for a range; None only where the field may be None."""
    def number(v: object) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if isinstance(current, bool):
        ok = isinstance(value, bool)
    elif number(current):
        ok = number(value)
    elif isinstance(current, tuple):
        ok = isinstance(value, tuple) and len(value) == len(current) and all(number(v) for v in value)
    else:
        ok = value is None or type(value) is type(current)
    if not ok:
        raise ValueError(f"generator setting {key}={value!r} does not fit its current value {current!r} "
                         "(give a bool for a switch, a number, or a comma list of as many numbers for a range)")
