"""Everything Qt: the only layer that imports PySide6 / pyqtgraph / superqt.

Where things go:

* ``app.py`` -- ``create_app``, ``build_window`` (the one place that builds the
  ``AppContext`` and the ``MainWindow``), ``run``.
* ``context.py`` -- ``AppContext``: database, settings, view model, model
  registry, engine service, tasks, worker pools, and the signals the window
  shows (status text, problems, studies changed, open a series).
* ``state.py`` -- ``ViewState``, the viewer model (one signal per field, emitted
  by its methods); ``findings_model.py`` -- the AI findings and heatmap layers
  of it; ``mask_layer.py`` -- an opened label mask.
* controllers on the context: ``importing.py`` (imports, demo),
  ``thumbnails.py`` (the browser's series thumbnails, through
  ``dicom.open_series``), ``series_loader.py`` (open and stream a series into a
  view model), ``compare.py`` (the series beside: same scale, its findings),
  ``masks.py`` (open a label mask, export findings as one), ``ai.py`` (detector in use,
  detection jobs, reviews), ``engine.py`` (the inference engine, started
  lazily; ``bridge.py`` turns its events into Qt signals).
* widgets: ``viewer.py`` / ``slice_view.py`` (the plane views; ``overlays.py``
  draws the heatmap and its legend, masks and the scale bar), ``panels.py``,
  ``findings.py``, ``browser.py``, ``dialogs.py``, ``pacs_dialog.py``;
  ``exports.py`` (SR/SEG and de-identified exports); ``main_window.py``
  (layout and actions only).
* ``tasks.py`` -- a function on a thread with progress and cancel;
  ``child.py`` -- a medstation CLI entry in a child process with JSON-lines
  progress (training).

A new panel takes the ``AppContext`` (or the parts of it it needs), subscribes
to the view model's signals and is docked with ``MainWindow.add_panel``.
"""
