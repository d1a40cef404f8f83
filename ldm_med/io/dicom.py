"""DICOM series input: the public names. The work is split over three modules:

* ``dicom_headers``: one file's header -> image frames (geometry, rescale) or a skip reason;
* ``dicom_geometry``: slice order, spacing, gaps, duplicates, tilt and the affine (pure numpy);
* ``dicom_series``: folder scan, grouping into series, localizers, and pixel reading.
"""
from __future__ import annotations

from ldm_med.io.dicom_headers import decoder_problem
from ldm_med.io.dicom_series import (
    HiddenHeader,
    SeriesInfo,
    SkippedFile,
    SliceRef,
    read_series,
    scan_dicom_folder,
)

__all__ = ["HiddenHeader", "SeriesInfo", "SkippedFile", "SliceRef", "decoder_problem",
           "read_series", "scan_dicom_folder"]
