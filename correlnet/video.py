"""Reading video files, without losing bit depth: frames in order, frame counts, the truncation check.

`iter_video_frames` yields RGB frames: (H, W, 3) uint8 for 8-bit streams, decoded by OpenCV, or by
PyAV when OpenCV cannot open the file; deeper streams (ProRes, DNxHR HQX/444, 10-16-bit FFV1) are
decoded by PyAV to 16 bits: (H, W, 3) uint16 (`rgb48le`), or (H, W) uint16 (`gray16le`) for a gray
stream. A decoder that stops before the frame count of the container's header (beyond the slack
below) raises instead of ending early: a truncated video is an error, never a shorter film. Failures
raise `correlnet.frames.FrameReadError` naming the file. Image files and sequences (a folder or a
video, `iter_frames`, `FrameSequence`) are read by `correlnet.frames`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from correlnet.frames import FrameReadError

__all__ = [
    "VIDEO_SUFFIXES",
    "VIDEO_COUNT_SLACK",
    "VIDEO_ESTIMATE_SLACK",
    "iter_video_frames",
    "video_frame_count",
    "video_header_count",
    "check_video_complete",
]

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".mkv", ".m4v", ".mpg", ".mpeg", ".webm", ".mxf"})
# How far a video may decode short of its header's frame count and still count as complete. Headers
# are often one frame off (a real .mkv whose duration says 311 frames decodes 310); more than that is
# a truncated or damaged file. A count estimated from duration x frame rate (no count in the header)
# is looser on variable-frame-rate files, so it gets 1 % (at least one frame).
VIDEO_COUNT_SLACK = 1
VIDEO_ESTIMATE_SLACK = 0.01


def iter_video_frames(path: str | Path, start: int = 0) -> Iterator[np.ndarray]:
    """Yield the frames of a video file as RGB arrays, in order: (H, W, 3) uint8 for an 8-bit stream;
    for a deeper one (ProRes, DNxHR HQX/444, 10-16-bit FFV1) (H, W, 3) uint16, or (H, W) uint16 when
    the stream is gray.

    8-bit streams: OpenCV first, PyAV when OpenCV cannot open or decode the file. Deeper streams: PyAV
    (OpenCV would decode them to 8 bits). start: the first frame yielded; the frames before it are
    decoded (the only exact way to reach a frame of a long-GOP stream) but not converted, and still
    count towards the completeness check.

    Raises:
        FrameReadError: neither decoder can read a frame of the file, or it ends short of its header.
    """
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise FrameReadError(f"{path}: missing or empty video file; check the path")
    deep = _deep_video_format(path)
    if deep is not None:
        yield from _iter_pyav(path, deep, start)
        return
    capture = cv2.VideoCapture(str(path))
    try:
        count = 0
        # read() is grab() + retrieve(); a skipped frame is grabbed (decoded) only.
        while capture.isOpened() and capture.grab():
            count += 1
            if count <= start:
                continue
            ok, frame = capture.retrieve()
            if not ok:
                count -= 1
                break
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        if count:
            # OpenCV's grab() is False both at the end and on a frame it cannot decode: the header tells which.
            check_video_complete(path, count)
            return
    finally:
        capture.release()
    yield from _iter_pyav(path, "rgb24", start)


def _deep_video_format(path: Path) -> str | None:
    """"rgb48le" or "gray16le" when the first video stream holds more than 8 bits per sample, else
    None (also when PyAV cannot open the file: the 8-bit path then reports the error)."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return None
            fmt = container.streams.video[0].codec_context.format
    except (av.FFmpegError, OSError):
        return None
    if fmt is None or not fmt.components or max(c.bits for c in fmt.components) <= 8:
        return None
    return "gray16le" if fmt.name.startswith(("gray", "ya")) else "rgb48le"


def _iter_pyav(path: Path, pixel_format: str, start: int = 0) -> Iterator[np.ndarray]:
    import av  # local: only needed when OpenCV lacks the codec or the depth

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise FrameReadError(
            f"{path}: cannot open the video ({exc}); convert it to MP4 (H.264) or PNG frames"
        ) from exc
    with container:
        if not container.streams.video:
            raise FrameReadError(f"{path}: the file has no video stream")
        count = 0
        try:
            for frame in container.decode(video=0):
                count += 1
                if count > start:
                    yield frame.to_ndarray(format=pixel_format)
        except av.FFmpegError as exc:
            raise FrameReadError(f"{path}: decoding failed after {count} frames ({exc})") from exc
        if count == 0:
            raise FrameReadError(f"{path}: no decodable frame; convert it to MP4 (H.264) or PNG frames")
    check_video_complete(path, count)


def video_frame_count(path: str | Path) -> int:
    """Number of frames of a video: container metadata when present, else demuxed packets.

    Raises:
        FrameReadError: the file cannot be opened as a video.
    """
    import av

    path = Path(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise FrameReadError(f"{path}: the file has no video stream")
            stream = container.streams.video[0]
            if stream.frames > 0:
                return int(stream.frames)
            # No count in the header (e.g. some AVI/MKV): count packets, no decoding needed.
            return sum(1 for p in container.demux(stream) if p.size > 0)
    except (av.FFmpegError, OSError) as exc:
        capture = cv2.VideoCapture(str(path))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
        capture.release()
        if count > 0:
            return count
        raise FrameReadError(f"{path}: cannot open the video ({exc}); convert it to MP4 (H.264)") from exc


def video_header_count(path: str | Path) -> tuple[int, bool] | None:
    """(frames the container announces, exact): the stream's frame count (exact), else its duration x
    average frame rate (an estimate), else OpenCV's estimate; None when the file says nothing."""
    import av

    try:
        with av.open(str(path)) as container:
            if container.streams.video:
                stream = container.streams.video[0]
                if stream.frames > 0:
                    return int(stream.frames), True
                rate = stream.average_rate or stream.guessed_rate
                if stream.duration and stream.time_base and rate:
                    return round(float(stream.duration * stream.time_base * rate)), False
                if container.duration and rate:
                    return round(container.duration / av.time_base * float(rate)), False
    except (av.FFmpegError, OSError):
        pass
    capture = cv2.VideoCapture(str(path))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    capture.release()
    return (count, False) if count > 0 else None


def check_video_complete(path: str | Path, decoded: int) -> None:
    """Raise FrameReadError when a decoder that stopped after `decoded` frames stopped short of the
    header's count by more than the slack (VIDEO_COUNT_SLACK, VIDEO_ESTIMATE_SLACK)."""
    header = video_header_count(path)
    if header is None:
        return
    claimed, exact = header
    slack = VIDEO_COUNT_SLACK if exact else max(VIDEO_COUNT_SLACK, int(claimed * VIDEO_ESTIMATE_SLACK))
    if claimed - decoded > slack:
        raise FrameReadError(
            f"{path}: decoding failed at frame {decoded + 1} of the {claimed} its header announces (only "
            f"{decoded} decoded): the file is truncated or damaged; copy it again from the source")
