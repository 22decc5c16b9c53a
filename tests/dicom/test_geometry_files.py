"""Patient mm <-> voxel index on real files: every orientation and slice order lands a label where
the image shows it, through the loader (``Volume``) and the label store (``SeriesGeometry``) alike."""

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medstation.core.errors import LabelError
from medstation.dicom import StudyDatabase, import_paths, open_series
from medstation.dicom.labels import all_labels, export_sr, import_labels, series_geometry

# (row cosines, column cosines): the first two rows of the file's Image Orientation (Patient)
ORIENTATIONS = {
    "axial": ((1, 0, 0), (0, 1, 0)),
    "axial-rows-flipped": ((1, 0, 0), (0, -1, 0)),
    "axial-columns-flipped": ((-1, 0, 0), (0, 1, 0)),
    "coronal": ((1, 0, 0), (0, 0, -1)),
    "sagittal": ((0, 1, 0), (0, 0, -1)),
}
MARKER = (-31.4, 47.9, -362.0)  # patient mm (LPS); the slab's origin z is about -379 mm, as a real CT's


def write_series(folder, orientation, *, reverse_files=False, slices=20, rows=40, cols=48,
                 pixel=(0.82, 0.7), step=2.5):
    """A series with one bright 3x3x3 voxel block at ``MARKER``; files written in either order."""
    row_dir, col_dir = (np.asarray(v, float) for v in orientation)
    normal = np.cross(row_dir, col_dir)
    # put the marker at voxel (k, i, j) = (7, 13, 29) of the stack ordered along the normal
    k0, i0, j0 = 7, 13, 29
    origin = np.asarray(MARKER) - k0 * step * normal - i0 * pixel[0] * col_dir - j0 * pixel[1] * row_dir
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    folder.mkdir(parents=True)
    order = range(slices - 1, -1, -1) if reverse_files else range(slices)
    for n, k in enumerate(order):
        img = np.full((rows, cols), 24, np.uint16)  # -1000 HU
        if abs(k - k0) <= 1:
            img[i0 - 1:i0 + 2, j0 - 1:j0 + 2] = 1064  # +40 HU
        ds = Dataset()
        ds.PatientID, ds.PatientName, ds.Modality = "GEO", "Geometry^Test", "CT"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SOPInstanceUID, ds.SOPClassUID = generate_uid(), CTImageStorage
        ds.InstanceNumber = n + 1
        ds.ImagePositionPatient = [float(v) for v in origin + k * step * normal]
        ds.ImageOrientationPatient = [*map(float, row_dir), *map(float, col_dir)]
        ds.PixelSpacing = list(pixel)
        ds.SliceThickness = step
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = img.tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        pydicom.dcmwrite(folder / f"{n:03d}.dcm", ds, enforce_file_format=True)
    return series


@pytest.mark.parametrize("reverse", [False, True], ids=["files-in-order", "files-reversed"])
@pytest.mark.parametrize("name", list(ORIENTATIONS))
def test_marker_found_at_its_patient_position(tmp_path, pool, name, reverse):
    uid = write_series(tmp_path / "s", ORIENTATIONS[name], reverse_files=reverse)
    with StudyDatabase(tmp_path / "db.sqlite") as db:
        import_paths(db, [tmp_path / "s"], pool)
        volume = open_series(tmp_path / "s", pool=pool).volume
        idx = volume.patient_to_index(MARKER)
        assert np.allclose(idx, np.rint(idx), atol=1e-6), idx
        k, i, j = np.rint(idx).astype(int)
        assert volume.voxels[k, i, j] == 40, (name, idx)
        assert np.allclose(volume.index_to_patient(idx), MARKER)
        g = series_geometry(db, uid)
        assert np.allclose(g.patient_to_index(MARKER), idx)  # the label store agrees with the loader
        assert np.allclose(g.index_to_patient(idx), MARKER)
        # LUNA16 labels: the marker and the volume's own centre are accepted ...
        centre = volume.index_to_patient(np.subtract(volume.shape, 1) / 2)
        csv = tmp_path / "labels.csv"
        csv.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n"
                       f"{uid},{MARKER[0]},{MARKER[1]},{MARKER[2]},4.0\n"
                       f"{uid},{centre[0]:.3f},{centre[1]:.3f},{centre[2]:.3f},6.0\n")
        assert len(import_labels(db, csv)) == 2
        placed = [lab for lab in all_labels(db) if lab.diameter_mm == 4.0]
        assert np.allclose(placed[0].center_mm, MARKER)
        # ... and out as SR, read back into another database at the same place
        (sr,) = export_sr(db, all_labels(db), tmp_path / "sr")
    with StudyDatabase(tmp_path / "back.sqlite") as back:
        import_paths(back, [tmp_path / "s"], pool)
        import_labels(back, sr)
        centres = [lab.center_mm for lab in all_labels(back)]
        assert len(centres) == 2 and any(np.allclose(c, MARKER, atol=0.01) for c in centres), centres
    with StudyDatabase(tmp_path / "db.sqlite") as db:
        # ... a point 30 slices beyond the last one is refused, naming its row and series
        beyond = volume.index_to_patient((volume.shape[0] + 30, 5, 5))
        bad = tmp_path / "bad.csv"
        bad.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n"
                       f"{uid},{beyond[0]:.3f},{beyond[1]:.3f},{beyond[2]:.3f},6.0\n")
        with pytest.raises(LabelError) as err:
            import_labels(db, bad)
        assert "bad.csv:2" in str(err.value) and uid in str(err.value)
