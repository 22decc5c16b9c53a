"""Workflows: what reads studies, runs the AI on them and writes results, a layer above ``ai``.

``ai`` takes volumes and findings and gives findings, tracks and predictions; it opens no file
and imports no ``dicom``. The orchestration that opens a patient's studies, registers, detects,
tracks and writes DICOM SR lives here (``followup.py``), with the engine job that runs it in the
viewer (``jobs.py``) and the benchmarks that time whole series (``bench.py``). The CLI, the GUI
and the self-test call these.
"""
