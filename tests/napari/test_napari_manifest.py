"""The manifest validates, the widget is in Layers > Filter, and listing the plugin or reading a
scan does not import torch."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

NO_TORCH = r"""
import json, sys
import npe2
pm = npe2.PluginManager.instance()
pm.discover()
manifest = pm.get_manifest("ldm-med")
from napari_plugin._reader import get_reader
from napari_plugin._sample_data import ct_phantom
reader = get_reader(sys.argv[1])
layers = reader(sys.argv[1]) + ct_phantom()
heavy = sorted(m for m in ("torch", "monai") if m in sys.modules)
print(json.dumps({"name": manifest.name, "layers": len(layers), "heavy": heavy}))
"""


def test_npe2_validate():
    done = subprocess.run([sys.executable, "-m", "npe2", "validate", "ldm-med"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid" in done.stdout


def test_listing_and_reading_do_not_import_torch(samples):
    done = subprocess.run([sys.executable, "-c", NO_TORCH, str(samples / "ct_phantom.nii.gz")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"name": "ldm-med", "layers": 2, "heavy": []}


def test_manifest_contributions():
    import npe2

    pm = npe2.PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("ldm-med")
    contrib = manifest.contributions
    assert [w.display_name for w in contrib.widgets] == ["Reconstruct missing slices",
                                                        "Generate synthetic volumes"]
    assert contrib.readers[0].accepts_directories
    assert {s.key for s in contrib.sample_data} == {"ct_phantom", "mr_phantom", "molecule", "astro_cube"}
    assert [m.command for m in contrib.menus["napari/layers/filter"]] == ["ldm-med.reconstruct_widget"]


@pytest.mark.viewer
def test_widget_in_layers_filter_menu(make_napari_viewer):
    viewer = make_napari_viewer()  # registers the plugins' menu items
    from napari._app_model import get_app_model

    app = get_app_model()
    items = app.menus.get_menu("napari/layers/filter")
    ids = [item.command.id for item in items if getattr(item, "command", None) is not None]
    assert "ldm-med.reconstruct_widget" in ids
    app.commands.execute_command("ldm-med.reconstruct_widget").result()  # what the menu item does
    assert "Reconstruct missing slices" in "".join(viewer.window.dock_widgets)
