"""A tiny CT series written with pydicom: a bright marker voxel at a known patient position.

The marker's patient position comes from the DICOM geometry formula itself
(Image Position + row/column steps along Image Orientation), independently of
medstation's ``Volume`` maths.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

MARKER_HU = 2000
BACKGROUND_HU = -1000


def write_marker_series(folder: Path, *, shape=(20, 40, 50), spacing=(2.5, 0.8, 0.6),
                        row_cos=(1.0, 0.0, 0.0), col_cos=(0.0, 1.0, 0.0), origin=(-20.0, -15.0, -30.0),
                        marker=(13, 11, 37), name="Marker^Phantom") -> np.ndarray:
    """Write the series (one file per slice, shuffled names); returns the marker's patient position.

    ``marker`` is (slice, row, column) in acquisition order; ``spacing`` is
    (slice step, row spacing, column spacing) in mm.
    """
    folder.mkdir(parents=True, exist_ok=True)
    row_cos, col_cos = np.asarray(row_cos, float), np.asarray(col_cos, float)
    normal = np.cross(row_cos, col_cos)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    k0, i0, j0 = marker
    n, rows, cols = shape
    rng = np.random.default_rng(0)
    for k in range(n):
        ipp = np.asarray(origin) + k * spacing[0] * normal
        img = np.full((rows, cols), BACKGROUND_HU, np.int16)
        img[5:-5, 5:-5] = rng.integers(-50, 50, (rows - 10, cols - 10))  # a "body" with texture
        if k == k0:
            img[i0, j0] = MARKER_HU
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientName, ds.PatientID, ds.StudyDate, ds.Modality = name, "MARK-1", "20260301", "CT"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDescription = 1, k + 1, "marker"
        ds.ImagePositionPatient = [float(v) for v in ipp]
        ds.ImageOrientationPatient = [float(v) for v in (*row_cos, *col_cos)]
        ds.PixelSpacing = [spacing[1], spacing[2]]
        ds.SliceThickness = spacing[0]
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelData = img.tobytes()
        ds.save_as(folder / f"m{(k * 7919) % 1000:04d}_{k}.dcm", enforce_file_format=True)
    ipp0 = np.asarray(origin) + k0 * spacing[0] * normal
    return ipp0 + i0 * spacing[1] * col_cos + j0 * spacing[2] * row_cos
