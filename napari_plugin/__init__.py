"""napari plugin for ldm-med (npe2 manifest ``napari.yaml``): a reader for NIfTI files and DICOM
folders, sample volumes, and the "Reconstruct missing slices" widget.

Thin doors onto the public API (``ldm_med.load_volume``, ``parse_missing``, ``reconstruct``): importing
this package, the manifest or the reader does not load torch; the widget does, when it is opened.
"""
