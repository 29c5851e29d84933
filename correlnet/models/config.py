"""`ModelConfig`: everything needed to rebuild a network, recorded in every checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# The paper's networks (Fig. 2, Table 2) and the Table 1 baselines.
ARCHS: tuple[str, ...] = (
    "correlnet",
    "efficient-correlnet",
    "efficient-trinet",
    "efficient-unet",
    "unet",
    "deeplabv3plus",
    "nasfpn",
)

# Encoder used when `build_model(arch)` is given none. smp archs take a timm name and are
# built as smp's "tu-<name>" encoder so every Table 1 row shares the same backbone family.
DEFAULT_ENCODERS: dict[str, str] = {
    "correlnet": "plain",
    "efficient-correlnet": "efficientnet_b0",
    "efficient-trinet": "efficientnet_b0",
    "efficient-unet": "efficientnet_b0",
    "unet": "efficientnet_b0",
    "deeplabv3plus": "efficientnet_b0",
    "nasfpn": "efficientnet_b0",
}


# The archs built as `models.branch.CorrelNet` (a correlation after the stem).
CORRELATION_ARCHS = ("correlnet", "efficient-correlnet")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters (defaults = the paper's where it gives one).

    arch: one of `ARCHS`.
    encoder: timm model name (efficientnet_b0 ... b7, tf_efficientnet_*, test_efficientnet) or, for
        `unet`/`deeplabv3plus`, any smp encoder name; "plain" for `correlnet`.
    max_displacement, kernel_size, stride1, stride2: the correlation layer (Sec. 3.1: 10, 3, 1, 1).
    encoder_depth: number of stride-2 stages kept (5 -> output stride 32; 4 truncates the
        EfficientNet after its stride-16 stage, which drops most parameters for little compute).
    decoder_channels: U-Net decoder width per stage, deepest first, one per encoder stage; the
        last one runs at full resolution, so it dominates the 1080p cost and is kept small.
    base_channels: width of the plain `correlnet` encoder at stride 2 (doubled per stage, max 8x).
    fpn_channels, fpn_repeats: NAS-FPN width and number of stacked NAS-FPN blocks.
    input_skip: give the decoder's last (full-resolution) stage the three input frames as a skip
        (U-Net's full-resolution skip; the encoders start at stride 2, so without it the mask
        is only upsampled from half resolution and cannot follow a 1-2 px defect or edge).
        False (the default) keeps the layout of checkpoints written before the option existed.
    refine_convs: residual 3x3 conv-BN blocks appended at full resolution after the decoder's last
        stage, same width (`decoder.ResidualRefine`). The errors of a model with only one conv at
        full resolution sit on defect edges (a one-pixel halo of false positives, missed edge
        pixels: docs/training.md); these blocks give the edge decision more capacity there. Each
        starts as the identity, so a checkpoint without them warm-starts unchanged (`--init`).
        0 (the default) keeps the layout of checkpoints written before the option existed.
    motion_skip: the full-resolution skip also carries the motion-compensated evidence: the two
        differences mid - warp(prev) and mid - warp(next), each minus its median, after OpenCV's DIS
        flow from the middle frame to each neighbour (`correlnet.sdi.compensated_channels`, computed in
        the decoder from the skip's frames, so tiles and streaming get it unchanged). The network then
        sees what SDI-p sees (a one-frame speck differs from both aligned neighbours with one sign) and
        keeps what it learnt about occlusion and motion: issue 12's "optical-flow-aligned input".
        Needs input_skip; its new input weights start at zero (`init_from_checkpoint` widens the
        stage), so a model grown from one without it computes the same until trained. Not exportable
        (the flow is OpenCV, not a tensor op); accelerated runtimes run such a model eagerly.
    motion_fusion: the same two differences, averaged to the stem's half resolution, also enter the
        fusion after the correlation (Correl-Net archs), so the encoder and every decoder stage judge
        the evidence in context (a speck against a small moving object), not only the last,
        full-resolution stage. Needs motion_skip (one flow serves both); zero-initialised the same way.
    """

    arch: str = "efficient-correlnet"
    encoder: str = "efficientnet_b0"
    max_displacement: int = 10
    kernel_size: int = 3
    stride1: int = 1
    stride2: int = 1
    encoder_depth: int = 5
    # Light by default for the 1080p CPU budget: 15% fewer FLOPs than (128, 64, 32, 16, 8)
    # (docs/benchmarks.md, Models).
    decoder_channels: tuple[int, ...] = (64, 32, 16, 8, 8)
    base_channels: int = 32
    fpn_channels: int = 64
    fpn_repeats: int = 3
    input_skip: bool = False
    refine_convs: int = 0
    motion_skip: bool = False
    motion_fusion: bool = False
    # Inference only, no weights: the temporal gate's evidence threshold in gray levels
    # (correlnet.temporal_gate; 0 = off). A mark of the network stands only where the frame differs
    # from both motion-compensated neighbours; recorded here so a checkpoint carries its detector.
    temporal_gate: float = 0.0
    # Inference only: the SDI-p score at which sure one-frame defects (correlnet.sure_defects) are
    # added to the network's marks (correlnet.temporal_gate; 0 = off).
    sure_marks: float = 0.0
    # Inference only: the marks' extent, in px (correlnet.temporal_gate; 0 = off). A kept or sure mark
    # grows, one pixel per step, into the pixels whose same-sign temporal anomaly is visible
    # (`GateConfig.extent_score`, 0.05): the soft edge of a speck that the network's or the sure rule's
    # core leaves out.
    mark_extent: int = 0
    # Inference only: the share of its mark's own score a grown pixel needs besides the 0.05
    # (`GateConfig.extent_fraction`; 0 = off, the shipped value). A film's job may choose it: on a film
    # whose defects have hard edges the restorer's masks end where the mark's contrast drops, not at
    # the flow's 0.05 fringe around a strong blotch.
    mark_extent_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}: choose one of {', '.join(ARCHS)}")
        # Accept lists (e.g. from a JSON/DB round trip) but store a hashable tuple.
        object.__setattr__(self, "decoder_channels", tuple(int(c) for c in self.decoder_channels))
        if not isinstance(self.input_skip, bool):
            raise ValueError(f"input_skip must be true or false; got {self.input_skip!r}")
        if isinstance(self.refine_convs, bool) or not isinstance(self.refine_convs, int) or self.refine_convs < 0:
            raise ValueError(f"refine_convs must be a whole number >= 0; got {self.refine_convs!r}")
        if not isinstance(self.motion_skip, bool):
            raise ValueError(f"motion_skip must be true or false; got {self.motion_skip!r}")
        if self.motion_skip and not self.input_skip:
            raise ValueError("motion_skip adds the compensated differences to the full-resolution skip: "
                             "it needs input_skip=true as well")
        if not isinstance(self.motion_fusion, bool):
            raise ValueError(f"motion_fusion must be true or false; got {self.motion_fusion!r}")
        if self.motion_fusion and not (self.motion_skip and self.arch in CORRELATION_ARCHS):
            raise ValueError("motion_fusion feeds the motion skip's differences to Correl-Net's fusion: it needs "
                             "motion_skip=true and arch correlnet or efficient-correlnet")
        our_decoder = self.arch == "correlnet" or self.arch.startswith("efficient-")
        for option in ("input_skip", "refine_convs", "motion_skip"):
            if getattr(self, option) and not our_decoder:
                raise ValueError(f"{option} is an option of our U-Net decoder (correlnet, efficient-*); not of {self.arch}")
        if isinstance(self.temporal_gate, bool) or not 0.0 <= float(self.temporal_gate) < 1.0:
            raise ValueError(f"temporal_gate must be a gray level in [0, 1) (0 = off); got {self.temporal_gate!r}")
        object.__setattr__(self, "temporal_gate", float(self.temporal_gate))
        if isinstance(self.sure_marks, bool) or not 0.0 <= float(self.sure_marks) < 1.0:
            raise ValueError(f"sure_marks must be an SDI-p score in [0, 1) (0 = off); got {self.sure_marks!r}")
        object.__setattr__(self, "sure_marks", float(self.sure_marks))
        extent = self.mark_extent
        if isinstance(extent, bool) or not isinstance(extent, (int, float)) or extent != int(extent) or not 0 <= extent <= 8:
            raise ValueError(f"mark_extent must be a whole number of px in 0-8 (0 = off); got {extent!r}")
        object.__setattr__(self, "mark_extent", int(extent))
        fraction = self.mark_extent_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= float(fraction) < 1.0:
            raise ValueError(f"mark_extent_fraction must be a share in [0, 1) (0 = off); got {fraction!r}")
        object.__setattr__(self, "mark_extent_fraction", float(fraction))
        if not 3 <= self.encoder_depth <= 5:
            raise ValueError(f"encoder_depth must be 3, 4 or 5; got {self.encoder_depth}")
        if len(self.decoder_channels) != self.encoder_depth or min(self.decoder_channels) < 1:
            raise ValueError(
                f"decoder_channels needs one positive width per encoder stage ({self.encoder_depth}); got "
                f"{self.decoder_channels}, e.g. {(64, 32, 16, 8, 8)[5 - self.encoder_depth:]}"
            )
        if self.stride1 != 1:
            # The decoder needs a correlation map at the feature resolution.
            raise ValueError(f"stride1 must be 1 for the segmentation networks; got {self.stride1}")
        if self.max_displacement < 0 or self.kernel_size < 1 or self.kernel_size % 2 == 0 or self.stride2 < 1:
            raise ValueError(
                "need max_displacement >= 0, an odd kernel_size and stride2 >= 1; got "
                f"{self.max_displacement}, {self.kernel_size}, {self.stride2}"
            )

    @property
    def corr_channels(self) -> int:
        """Channels of one correlation map: (2*(d//stride2)+1)^2 (441 for the paper's d=10)."""
        return (2 * (self.max_displacement // self.stride2) + 1) ** 2

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists for tuples), safe for JSON and `torch.load(weights_only=True)`."""
        d = dataclasses.asdict(self)
        d["decoder_channels"] = list(self.decoder_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Inverse of `to_dict`; raises ValueError naming unknown fields."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown ModelConfig fields {sorted(unknown)}: written by a newer correlnet?")
        return cls(**d)
