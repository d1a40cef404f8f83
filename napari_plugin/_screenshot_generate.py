"""The README's screenshot of the "Generate synthetic volumes" widget: four conditioned samples in
napari's grid view.

    xvfb-run -a python -m napari_plugin._screenshot_generate docs/napari_generate.png [CHECKPOINT]

Without ``CHECKPOINT`` the bundled 2D generation model is used.
"""
from __future__ import annotations

import sys
from typing import Any


def generate_samples(viewer: Any, checkpoint: str | None = None, preset: str = "astronomical",
                     value: float = 40.0) -> Any:
    """Dock the widget, generate 4 samples of ``preset`` conditioned on its attribute at ``value``
    (CPU, synchronously) and show them side by side. Returns the widget."""
    from napari_plugin._generate_widget import GenerateWidget

    widget = GenerateWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Generate synthetic volumes", area="right")
    widget.preset.value = preset
    widget.n.value = 4
    widget.condition.value, widget.attr_value.value = True, value
    widget.device.value = "cpu"
    if checkpoint:
        widget.model.value = "checkpoint file"
        widget.checkpoint.value = checkpoint
    widget.run(sync=True)
    grid = viewer.canvas.grid if hasattr(viewer, "canvas") else viewer.grid  # napari >= 0.9
    grid.enabled, grid.shape = True, (2, 2)
    viewer.reset_view()
    return widget


def main(out: str, checkpoint: str | None = None) -> None:
    import napari

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1400, 860)
    widget = generate_samples(viewer, checkpoint)
    from qtpy.QtWidgets import QApplication

    for _ in range(3):  # lay out the docked widget (the status wraps) before fitting the view
        QApplication.processEvents()
    viewer.reset_view()
    print(widget.status.value)
    if widget._job is not None or not viewer.layers:
        raise SystemExit(f"no samples: {widget.status.value}")
    from napari_plugin._screenshot import save_screenshot

    save_screenshot(viewer, out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/napari_generate.png",
         sys.argv[2] if len(sys.argv) > 2 else None)
