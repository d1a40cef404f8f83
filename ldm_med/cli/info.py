"""``ldm-med info PATH`` and ``ldm-med convert INPUT OUTPUT`` (NIfTI, MRC, FITS, TIFF or PNG)."""
from __future__ import annotations

import argparse
from pathlib import Path

_SERIES_HELP = ("DICOM: series to use, as its index in `ldm-med info` or its SeriesInstanceUID "
                "(default: the largest image series)")
_INDEX_HELP = "4D NIfTI: which volume to use (0-based)"
_FILES = "NIfTI, MRC/MAP, FITS, TIFF or PNG file"
_FORMATS = ("nifti", "mrc", "fits", "tiff", "png")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info", help="describe a scan file or a DICOM folder (series, geometry, missing "
        "slices, skipped files)",
        description="Describe a NIfTI, MRC/MAP, FITS, TIFF or PNG file or a DICOM folder: geometry, "
        "missing slices, whether the file is marked synthetic; for DICOM every series and every skipped "
        "file with the reason. Prints no patient identifiers.")
    p.add_argument("path", help=f"{_FILES}, DICOM folder (searched recursively) or DICOM file")
    p.add_argument("--series", help=_SERIES_HELP + "; also reads its pixel data")
    p.add_argument("--volume-index", type=int, help=_INDEX_HELP)
    p.add_argument("-v", "--verbose", action="store_true", help="list every skipped file")
    p.set_defaults(handler=_info)

    c = sub.add_parser(
        "convert", help="write a DICOM series or a scan file as NIfTI, MRC, FITS, TIFF or PNG",
        description="Write a DICOM series or a scan file in the format of the output's suffix: NIfTI "
        "(RAS affine, sform and qform set), MRC, FITS (with a WCS header), TIFF (ImageJ) or PNG (one "
        "slice). Missing slices are stored as zeros and listed; a synthetic input stays marked synthetic.")
    c.add_argument("input", help=f"DICOM folder or file, or a {_FILES}")
    c.add_argument("output", help="output .nii, .nii.gz, .mrc, .map, .mrcs, .fits, .fit, .fts, .fits.gz, "
                   ".tif, .tiff or .png (replaced atomically)")
    c.add_argument("--format", choices=_FORMATS, help="output format (default: from the suffix)")
    c.add_argument("--series", help=_SERIES_HELP)
    c.add_argument("--volume-index", type=int, help=_INDEX_HELP)
    c.add_argument("--overwrite", action="store_true", help="replace the output if it exists")
    c.set_defaults(handler=_convert)


def _info(args: argparse.Namespace) -> int:
    from ldm_med.io import describe

    print(describe(args.path, series=args.series, volume_index=args.volume_index,
                   verbose=args.verbose))
    return 0


def _convert(args: argparse.Namespace) -> int:
    from ldm_med.cli._outputs import check_outputs
    from ldm_med.io import load_volume, save_volume_as
    from ldm_med.io.formats import FORMAT_NAMES
    from ldm_med.io.write import require_output
    from ldm_med.masks import format_indices

    src, out = Path(args.input), Path(args.output)
    fmt = require_output(out, args.format)
    check_outputs(str(src), [str(out)], args.overwrite)
    vol = load_volume(src, series=args.series, volume_index=args.volume_index)
    save_volume_as(vol, out, fmt=fmt)
    meta = vol.metadata
    print(f"wrote {out}: {' x '.join(map(str, vol.shape))} voxels, spacing "
          + " x ".join(f"{v:.4g}" for v in vol.spacing)
          + f" {meta.get('spatial_unit') or 'mm'}, orientation {vol.orientation()}, "
          f"modality {meta.get('modality', 'unknown')}")
    if "series_choice" in meta:
        desc = f' "{meta["series_description"]}"' if meta.get("series_description") else ""
        print(f"source: {meta['series_choice']}{desc}")
    if vol.missing.size:
        print(f"{vol.missing.size} of {vol.n_slices} slices were missing and are stored as zeros: "
              f"k = {format_indices(vol.missing)} (0-based); {FORMAT_NAMES[fmt]} cannot mark them, the "
              "list is kept in " + ("an ldm-med header extension" if fmt == "nifti" else "the file's "
                                    "ldm-med record"))
    if vol.metadata.get("synthetic"):
        print("the input is marked synthetic; so is the output")
    for w in meta.get("warnings", []):
        print(f"warning: {w}")
    if meta.get("skipped"):
        print(f"{len(meta['skipped'])} file(s) skipped; `ldm-med info {src}` lists them "
              "with reasons")
    return 0
