"""``InstanceHeader``: what medstation indexes and loads one image file by (a DICOM instance or a
volume file), plain values that pickle cheaply across worker processes and store in the study
database as JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class InstanceHeader:
    """The attributes of one DICOM instance that medstation indexes and loads by."""

    path: str
    file_size: int = 0
    mtime_ns: int = 0
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    transfer_syntax: str = ""
    patient_id: str = ""
    patient_name: str = ""
    birth_date: str = ""
    sex: str = ""
    study_uid: str = ""
    study_date: str = ""
    study_time: str = ""
    study_description: str = ""
    accession: str = ""
    series_uid: str = ""
    series_number: int | None = None
    series_description: str = ""
    convolution_kernel: str = ""  # the reconstruction kernel (follow-ups compare like with like)
    modality: str = ""
    frame_of_reference_uid: str = ""
    instance_number: int | None = None
    acquisition_number: int | None = None
    echo_number: int | None = None
    temporal_position: int | None = None
    image_type: str = ""
    rows: int = 0
    columns: int = 0
    frames: int = 1
    samples_per_pixel: int = 1
    bits_allocated: int = 0
    bits_stored: int = 0
    pixel_representation: int = 0
    photometric: str = ""
    planar_configuration: int = 0
    position: tuple[float, float, float] | None = None
    orientation: tuple[float, ...] | None = None
    pixel_spacing: tuple[float, float] | None = None
    slice_thickness: float | None = None
    patient_age: str = ""  # (0010,1010), e.g. "064Y"
    kvp: float | None = None
    exposure_mas: float | None = None  # Exposure (0018,1152), else tube current x time
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    rescale_type: str = ""
    #: per-frame values for multi-frame images (None: same for every frame)
    frame_positions: list[tuple[float, float, float]] | None = None
    frame_rescale: list[tuple[float, float]] | None = None
    windows: list[tuple[float, float, str]] = field(default_factory=list)
    has_pixels: bool = False
    #: byte offset and length of native (uncompressed) pixel data in the file,
    #: -1 when the data is encapsulated or not directly addressable
    pixel_offset: int = -1
    pixel_length: int = -1
    #: True when the file's dataset uses little endian explicit/implicit VR
    little_endian: bool = True
    #: non-fatal notes found during the scan
    notes: list[str] = field(default_factory=list)

    @property
    def is_color(self) -> bool:
        return self.samples_per_pixel > 1 or self.photometric == "PALETTE COLOR"

    @property
    def frame_bytes(self) -> int:
        """Bytes of one native frame (YBR_FULL_422 stores two samples per pixel)."""
        samples = 2 if self.photometric == "YBR_FULL_422" else self.samples_per_pixel
        bits = self.rows * self.columns * samples * self.bits_allocated
        return (bits + 7) // 8

    @property
    def fast_native(self) -> bool:
        """Pixels can be read straight from the file, bypassing any decoder."""
        return (
            self.pixel_offset >= 0
            and self.little_endian
            and self.samples_per_pixel == 1
            and self.photometric in ("MONOCHROME1", "MONOCHROME2")
            and self.bits_allocated in (8, 16)
            and 0 < self.bits_stored <= self.bits_allocated
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> InstanceHeader:
        d = dict(d)
        for k in ("position", "orientation", "pixel_spacing"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        for k in ("frame_positions", "frame_rescale", "windows"):
            if d.get(k) is not None:
                d[k] = [tuple(v) for v in d[k]]
        return cls(**d)
