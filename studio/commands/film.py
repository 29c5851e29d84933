"""`correlnet film import|relink|list|detect|export`: films in the store (CORRELNET_DATA_DIR / CORRELNET_DB_URL).

FILM is a film's name or id (`correlnet film list` shows both). The parser imports neither torch
nor the store; each action calls the same studio use cases as the web app and the worker.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("film", help="import films, detect defects, export mattes",
                              description="Films in the store: import, list, detect, export.")
    sub = p.add_subparsers(dest="film_command", metavar="ACTION", required=True)

    imp = sub.add_parser("import", help="import a video file or a folder of frames",
                         description="A folder of frames stays where it is: each frame is referenced by path, size "
                         "and sha256 (checked on every read; after moving the folder run `correlnet film relink`), "
                         "committed every 500 frames, and the same command after an interruption resumes. A video "
                         "(or a folder with --copy) is decoded into the store as lossless PNG frames, committed "
                         "and resumed the same way; --copy on a folder already imported in place copies that "
                         "film's frames into the store instead of making a second film. 16-bit is kept; log DPX/Cineon and scene-linear EXR are mapped to "
                         "display-referred 16-bit (correlnet/transfer.py). Import finds duplicated frames and shot "
                         "cuts and chooses each frame's neighbours.")
    imp.add_argument("path", metavar="PATH", help="video (mp4, mov, mxf, avi, mkv; ProRes/DNxHR read at 16 bits) "
                     "or folder of png/jpg/tif/dpx/cin/exr frames")
    imp.add_argument("--name", default=None, help="film name (default: the folder or file name)")
    imp.add_argument("--copy", action="store_true",
                     help="copy a folder's frames into the store as PNG instead of referencing them where they lie "
                     "(about 17 MB and 0.3 s per 2K 16-bit frame); for a folder already imported in place, copies "
                     "that film's frames into the store, keeping its predictions and corrections (resumable)")
    imp.add_argument("--restart", action="store_true",
                     help="discard an interrupted import of PATH and start it again (default: resume it)")
    imp.set_defaults(func=run_import)

    rel = sub.add_parser("relink", help="point a film imported in place at the folder its frames were moved to",
                         description="Checks that FOLDER holds every frame of FILM under its file name with the "
                         "same size and sha256, then updates every path in one transaction (or changes nothing).")
    rel.add_argument("film", metavar="FILM", help="film name or id")
    rel.add_argument("folder", metavar="NEW_FOLDER", help="the folder that now holds the film's frames")
    rel.set_defaults(func=run_relink)

    lst = sub.add_parser("list", help="list films with their review progress")
    lst.set_defaults(func=run_list)

    det = sub.add_parser("detect", help="predict defects on every frame not yet predicted (resumable)")
    det.add_argument("film", metavar="FILM", help="film name or id")
    det.add_argument("--model", default=None, metavar="VERSION",
                     help="model version id, or a checkpoint file (default: the film's active model)")
    det.add_argument("--device", default=None, help="auto, cpu or cuda (default: CORRELNET_DEVICE or auto)")
    det.add_argument("--limit", type=int, default=None, metavar="N", help="predict at most N frames this run")
    det.add_argument("--tile", type=int, default=None,
                     help="largest tile side in pixels (default 2048, as the app: HD and 2K frames run whole; "
                     "lower it, e.g. 1024, if memory runs out)")
    det.add_argument("--frames", default=None, metavar="FIRST-LAST",
                     help="only the frames numbered FIRST..LAST (e.g. 1001-1100; a render farm's chunk); safe to "
                     "run twice and in any order: frames already predicted by the model version are skipped")
    det.set_defaults(func=run_detect)

    exp = sub.add_parser("export", help="write one single-channel matte per frame and COCO RLE JSON",
                         description="Mattes are named <film>.<frame number>.<ext>, the number zero-padded like "
                         "the source's (at least 4 digits: Nuke reads <film>.####.exr), one per frame (black where "
                         "there is no defect or no mask), readable by Nuke, Resolve and PFClean; png/tiff are 8-bit "
                         "0/255, tiff16 16-bit, exr a half-float channel A. <film>.coco.json holds the same masks "
                         "as COCO run-length encoding. A re-run over the same mattes writes nothing.")
    exp.add_argument("film", metavar="FILM", help="film name or id")
    exp.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    exp.add_argument("--format", choices=("png", "tiff", "tiff16", "exr"), default="png")
    exp.add_argument("--source", choices=("corrected", "predicted", "best"), default="best",
                     help="best (default): the correction where there is one, else the prediction")
    exp.add_argument("--dilate", type=int, default=0, metavar="PX",
                     help="grow every mask by PX pixels (a disc), a margin for the repair tool (default 0)")
    exp.add_argument("--rgba", action="store_true",
                     help="write the scan as RGB with the matte as (unassociated) alpha, as PFClean defect maps")
    exp.add_argument("--frames", default=None, metavar="FIRST-LAST",
                     help="only the frames numbered FIRST..LAST; the COCO JSON is then <film>.FIRST-LAST.coco.json")
    exp.add_argument("--overwrite", action="store_true",
                     help="replace files of the matte names that hold other images (default: stop, write nothing)")
    exp.add_argument("--no-coco", action="store_true", help="do not write the COCO JSON")
    exp.set_defaults(func=run_export)


def _store():  # type: ignore[no-untyped-def]
    from sqlalchemy.exc import SQLAlchemyError

    from db.store import Store
    from studio.cli import CliError
    from studio.settings import Settings

    settings = Settings.from_env()
    try:
        return Store.open(settings), settings
    except (SQLAlchemyError, OSError) as exc:
        raise CliError(f"cannot open the store ({settings.resolved_db_url}, files in {settings.data_dir}): "
                       f"{_reason(exc)}; check CORRELNET_DB_URL / CORRELNET_DATA_DIR") from exc


def _reason(exc: BaseException) -> str:
    """One line for an OS or database error (no SQL, no traceback)."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
    if isinstance(exc, DBAPIError):
        return str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _film(store, name_or_id: str):  # type: ignore[no-untyped-def]
    from studio.cli import CliError
    from studio.films import FilmNotFound, get_film

    try:
        return get_film(store, name_or_id)
    except FilmNotFound as exc:
        raise CliError(str(exc)) from exc


def run_import(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError
    from tqdm import tqdm

    from studio.cli import CliError
    from studio.commands.progress_bar import bar_job
    from studio.films import FilmImportError, ImportConfig, film_frames, import_film

    store, _ = _store()
    cfg = ImportConfig(in_place=not args.copy, resume=not args.restart)
    with tqdm(unit="frame", desc="import", leave=False) as bar:
        try:
            film = import_film(store, args.path, name=args.name, job=bar_job(bar), cfg=cfg)
        except FilmImportError as exc:
            kept = (f"the first {exc.kept_frames} frames are kept: fix this and run the same command to resume"
                    if exc.kept_frames else "nothing was imported")
            raise CliError(f"{exc} ({kept})") from exc
        except (OSError, SQLAlchemyError) as exc:  # disk full, read-only data folder, database refused
            raise CliError(f"{args.path}: the store could not take the film ({_reason(exc)}); free space or fix "
                           "permissions of the data folder and database, then import again (nothing was imported)") from exc
    copied = film.copied_frames if args.copy else None  # --copy of a film imported in place copies its frames
    if film.already_imported and copied:
        print(f"film {film.id} {film.name!r}: {copied} frame(s) copied into the store from their source files "
              "(only read); all its frames are now in the store, its predictions and corrections kept")
        return 0
    if film.already_imported:
        print(f"already imported as film {film.id} {film.name!r}: nothing copied"
              + (" (its frames are in the store)" if copied == 0 else ""))
        return 0
    frames = film_frames(store, film)
    where = "referenced in place" if frames and frames[0].in_place else "copied into the store"
    shots = 1 + max((f.shot for f in frames), default=0)
    print(f"imported film {film.id} {film.name!r}: {film.frame_count} frames, {film.width}x{film.height}, "
          f"{film.bit_depth}-bit, {film.channels} channel(s); {sum(f.is_duplicate for f in frames)} duplicated "
          f"frames, {shots} shot(s), {sum(f.neighbour_flag for f in frames)} frames with a one-sided neighbour; "
          f"frames {where}")
    return 0


def run_relink(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from studio.cli import CliError
    from studio.commands.progress_bar import bar_job
    from studio.frame_sources import RelinkError, relink_film

    store, _ = _store()
    film = _film(store, args.film)
    with tqdm(unit="frame", desc=f"check {film.name}", leave=False) as bar:
        try:
            result = relink_film(store, film, args.folder, job=bar_job(bar))
        except RelinkError as exc:
            raise CliError(str(exc)) from exc
    print(f"film {film.id} {film.name!r}: {result.relinked} frame(s) now read from {Path(args.folder).resolve()}"
          + (f", {result.unchanged} already there" if result.unchanged else ""))
    return 0


def run_list(args: argparse.Namespace) -> int:
    from studio.films import list_films

    store, _ = _store()
    films = list_films(store)
    if not films:
        print("no films yet: correlnet film import PATH")
        return 0
    print(f"{'id':>4}  {'name':<40} {'frames':>7} {'predicted':>9} {'corrected':>9}  size")
    for f in films:
        print(f"{f.id:>4}  {f.name:<40} {f.frames:>7} {f.predicted:>9} {f.corrected:>9}  "
              f"{f.film.width}x{f.film.height} {f.film.bit_depth}-bit")
    return 0


def _model_version(store, film, spec: str | None, settings):  # type: ignore[no-untyped-def]
    from db.models import ModelVersion
    from studio.versions import register_model_version

    if spec is None:
        return None  # the film's active model, pinned by `predict_film` as the app's worker does
    if spec.isdigit():
        with store.session() as s:
            version = s.get(ModelVersion, int(spec))
        if version is None or version.film_id not in (None, film.id):
            raise ValueError(f"no model version {spec} for film {film.name!r}; pass a version id or a checkpoint file")
        return version
    if not Path(spec).is_file():
        raise ValueError(f"--model {spec!r} is neither a model version id nor a checkpoint file")
    return register_model_version(store, spec, film_id=film.id, note=f"registered by `film detect --model {spec}`")


def _frame_range(store, film, text: str | None):  # type: ignore[no-untyped-def]
    """(range or None, the film's frames within it); CliError on a malformed range or one with no frame."""
    from studio.cli import CliError
    from studio.films import film_frames, parse_frame_range, select_frames

    frames = film_frames(store, film)
    try:
        frame_range = None if text is None else parse_frame_range(text)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    chosen = select_frames(frames, frame_range)
    if frame_range is not None and not chosen:
        span = f"{min(f.number for f in frames)}-{max(f.number for f in frames)}" if frames else "none"
        raise CliError(f"film {film.name!r} has no frame numbered {text} (its frame numbers: {span})")
    return frame_range, chosen


def run_detect(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError
    from tqdm import tqdm

    from correlnet.checkpoint import CheckpointError
    from correlnet.tiling import TilingConfig
    from studio.cli import CliError
    from studio.commands.progress_bar import bar_job
    from studio.detection import predict_film

    store, settings = _store()
    film = _film(store, args.film)
    frame_range, chosen = _frame_range(store, film, args.frames)
    try:
        version = _model_version(store, film, args.model, settings)
        tiling = None if args.tile is None else TilingConfig.for_tile(args.tile)
    except (ValueError, FileNotFoundError, CheckpointError) as exc:
        raise CliError(str(exc)) from exc
    with tqdm(unit="frame", desc=f"detect {film.name}") as bar:
        try:
            result = predict_film(store, film, version, settings.default_model, device=args.device or settings.device,
                                  job=bar_job(bar), tiling=tiling, limit=args.limit,
                                  frame_indices=None if frame_range is None else [f.index for f in chosen])
        except (ValueError, FileNotFoundError, CheckpointError) as exc:  # bad checkpoint, damaged frame file
            raise CliError(f"{exc} (frames predicted so far are kept; run the command again to resume)") from exc
        except (OSError, SQLAlchemyError) as exc:  # disk full, read-only data folder, database refused
            raise CliError(f"the store could not take the predictions ({_reason(exc)}); free space or fix permissions, "
                           "then run the command again to resume (frames predicted so far are kept)") from exc
    where = "" if frame_range is None else f", frames {frame_range[0]}-{frame_range[1]}"
    print(f"film {film.id} {film.name!r}{where}, model version {result.model_version_id}: {result.predicted} frame(s) "
          f"predicted, {result.skipped} already predicted")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from studio.cli import CliError
    from studio.export import export_film

    store, _ = _store()
    film = _film(store, args.film)
    frame_range, _ = _frame_range(store, film, args.frames)
    try:
        result = export_film(store, film, args.out, fmt=args.format, source=args.source, coco=not args.no_coco,
                             dilate=args.dilate, rgba=args.rgba, frames=frame_range, overwrite=args.overwrite)
    except (ValueError, OSError) as exc:
        raise CliError(str(exc)) from exc
    fresh = len(result.written) - result.unchanged
    print(f"wrote {fresh} matte(s) to {result.out_dir}" + (f", {result.unchanged} already there unchanged"
                                                            if result.unchanged else "")
          + (f" and {result.coco_path.name}" if result.coco_path else ""))
    if result.missing:
        print(f"{len(result.missing)} frame(s) have no {args.source} mask and got a black matte: "
              f"{', '.join(str(n) for n in result.missing[:10])}{' ...' if len(result.missing) > 10 else ''}")
    return 0
