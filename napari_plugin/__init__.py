"""napari plugin for ldm-med (reader for DICOM folders and NIfTI, reconstruction widget).

The plugin's manifest, reader and widgets land with the napari issue; until then this package is empty
and registers nothing with napari.
"""
