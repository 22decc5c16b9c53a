"""The model registry: every model version by task, with an explicit default per task.

A model version is a directory (``model.safetensors`` + ``manifest.json``, see
``store``) and is never changed once written. Built-in versions ship in
``models/`` (read-only); versions trained here live in the user model
directory. Like MLflow's registry, "use" and "roll back" move a pointer, never
files: the version in use per task is kept in ``registry.json`` in the user
model directory (written atomically). A newly saved version is *not* used
until someone says so; without a setting the built-in version of the task is
used.

Names: ``nodule-detector`` (the version in use if it has that name, else the
built-in one, else the newest), ``nodule-detector@1.1.0`` (that version), or a
model directory's path.

Tasks: ``detection`` now; ``followup`` (lesion course prediction) and others
register the same way: a manifest with ``"task": "<task>"`` in a model directory.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medstation.ai.store import MANIFEST, builtin_models_dir, load_state, read_manifest
from medstation.core.errors import ModelError
from medstation.core.files import atomic_write_text
from medstation.core.paths import user_models_path

REGISTRY_FILE = "registry.json"
TASKS = ("detection", "followup", "segmentation")


@dataclass(frozen=True)
class Manifest:
    """A model version's manifest, typed. ``raw`` keeps every field as written (unknown ones too)."""

    name: str
    version: str
    task: str
    architecture: str
    sha256: str
    parent_version: str | None = None
    created: str = ""
    training_data: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    operating_point: float | None = None
    card: str = ""
    intended_use: str = ""
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict, card: str = "") -> Manifest:
        def text(key: str, default: str = "") -> str:
            v = d.get(key, default)
            return default if v is None else str(v)

        op = d.get("operating_point")
        if op is None:
            op = ((d.get("metrics") or {}).get("froc") or {}).get("threshold_at_1fp")
        return cls(name=text("name"), version=text("version"), task=text("task", "detection"),
                   architecture=text("architecture"), sha256=text("sha256"),
                   parent_version=None if d.get("parent_version") is None else str(d["parent_version"]),
                   created=text("created"),
                   training_data=d.get("training_data") if isinstance(d.get("training_data"), dict) else {},
                   metrics=d.get("metrics") if isinstance(d.get("metrics"), dict) else {},
                   operating_point=None if op is None else float(op), card=card,
                   intended_use=text("intended_use"), raw=dict(d))

    @property
    def id(self) -> str:
        """``name@version``: how the registry, the CLI and the database name this version."""
        return f"{self.name}@{self.version}"

    @property
    def threshold(self) -> float:
        """The operating point (the score at 1 false positive per scan in its evaluation), else 0.5."""
        return 0.5 if self.operating_point is None else float(self.operating_point)

    def to_dict(self) -> dict:
        return dict(self.raw)


@dataclass(frozen=True)
class ModelVersion:
    """One model version found on disk."""

    path: Path
    manifest: Manifest
    builtin: bool

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def task(self) -> str:
        return self.manifest.task

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}" + (" (built-in)" if self.builtin else "")

    def to_dict(self, in_use: bool = False) -> dict[str, Any]:
        m = self.manifest
        return {"id": m.id, "name": m.name, "version": m.version, "task": m.task,
                "architecture": m.architecture, "parent_version": m.parent_version, "created": m.created,
                "builtin": self.builtin, "in_use": in_use, "path": str(self.path), "sha256": m.sha256,
                "operating_point": m.operating_point, "metrics": m.metrics,
                "training_data": m.training_data, "intended_use": m.intended_use}


def version_key(v: str) -> tuple:
    """Sort key of a version string: ``1.10.0`` after ``1.9.0``; text parts after numbers."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in v.replace("-", ".").split("."))


class ModelRegistry:
    """Model versions under ``builtin_dir`` (read-only) and ``user_dir``; defaults in ``user_dir``."""

    def __init__(self, builtin_dir: str | Path | None = None, user_dir: str | Path | None = None) -> None:
        self.builtin_dir = Path(builtin_dir) if builtin_dir is not None else builtin_models_dir()
        self.user_dir = Path(user_dir) if user_dir is not None else user_models_path()
        self.problems: list[ModelError] = []

    # -- listing ---------------------------------------------------------------------------
    def versions(self, task: str | None = None) -> list[ModelVersion]:
        """Every readable version (built-in first, then the user's, each sorted by name and
        version); unreadable directories are kept in ``problems``."""
        found: list[ModelVersion] = []
        self.problems = []
        for root, builtin in ((self.builtin_dir, True), (self.user_dir, False)):
            if not root.is_dir():
                continue
            here = []
            for d in sorted(p for p in root.iterdir() if p.is_dir()):
                if not (d / MANIFEST).exists():
                    continue
                try:
                    raw = read_manifest(d)
                    card = d / "MODEL_CARD.md"
                    manifest = Manifest.from_dict(raw, str(card) if card.exists() else "")
                except (ModelError, TypeError, ValueError) as exc:
                    if not isinstance(exc, ModelError):
                        exc = ModelError(f"{d / MANIFEST}: {exc}", "reinstall or retrain the model")
                    self.problems.append(exc)
                    continue
                if task is None or manifest.task == task:
                    here.append(ModelVersion(d, manifest, builtin))
            found += sorted(here, key=lambda v: (v.name, version_key(v.version)))
        return found

    def tasks(self) -> list[str]:
        return sorted({v.task for v in self.versions()})

    # -- resolving ---------------------------------------------------------------------------
    def resolve(self, spec: str | Path, task: str | None = None) -> ModelVersion:
        """``name``, ``name@version`` or a model directory's path -> that version (``ModelError``
        listing what there is when nothing matches)."""
        text = str(spec)
        path = Path(text)
        if "@" not in text and (path.is_dir() or path.is_absolute() or text.startswith(".")):
            return self._from_path(path)
        name, _, version = text.partition("@")
        candidates = [v for v in self.versions(task) if v.name == name]
        if version:
            exact = [v for v in candidates if v.version == version]
            if exact:
                return next((v for v in exact if not v.builtin), exact[0])
        elif candidates:
            in_use = self._default_id(candidates[0].task)
            used = [v for v in candidates if v.id == in_use]
            builtin = [v for v in candidates if v.builtin]
            return (used or builtin or [max(candidates, key=lambda v: version_key(v.version))])[0]
        have = ", ".join(v.id for v in self.versions(task)) or "none"
        raise ModelError(f"no model {text!r}" + (f" for {task}" if task else "") + f" (installed: {have})",
                         "see `medstation models list`; name a model as NAME or NAME@VERSION")

    def _from_path(self, path: Path) -> ModelVersion:
        raw = read_manifest(path)
        builtin = path.resolve().parent == self.builtin_dir.resolve()
        return ModelVersion(path, Manifest.from_dict(raw), builtin)

    # -- the version in use per task -----------------------------------------------------------
    @property
    def settings_file(self) -> Path:
        return self.user_dir / REGISTRY_FILE

    def _settings(self) -> dict:
        try:
            data = json.loads(self.settings_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _default_id(self, task: str) -> str:
        return str((self._settings().get("defaults") or {}).get(task, ""))

    def default(self, task: str = "detection") -> ModelVersion:
        """The version in use for ``task``: the one set with :meth:`use`, else the built-in one
        (never simply the newest: a new version is used only when someone says so)."""
        versions = self.versions(task)
        chosen = self._default_id(task)
        if chosen:
            hit = [v for v in versions if v.id == chosen]
            if hit:
                return next((v for v in hit if not v.builtin), hit[0])
        builtin = [v for v in versions if v.builtin]
        if builtin:
            return max(builtin, key=lambda v: version_key(v.version))
        if versions:
            return max(versions, key=lambda v: version_key(v.version))
        raise ModelError(f"no {task} model found in {self.builtin_dir} or {self.user_dir}",
                         "reinstall medstation or train one with `medstation train-detector`")

    def is_default(self, version: ModelVersion) -> bool:
        try:
            return self.default(version.task).path.resolve() == version.path.resolve()
        except ModelError:
            return False

    def use(self, spec: str | Path, task: str | None = None) -> ModelVersion:
        """Make ``spec`` the version in use for its task (checks that its weights load)."""
        version = self.resolve(spec, task)
        load_state(version.path)  # hash checked, safetensors parsed: never point at a broken model
        data = self._settings()
        data.setdefault("defaults", {})[version.task] = version.id
        atomic_write_text(self.settings_file, json.dumps(data, indent=1) + "\n")
        return version

    def remove(self, spec: str | Path, task: str | None = None) -> ModelVersion:
        """Delete a user model version; refused for a built-in one and for the one in use."""
        version = self.resolve(spec, task)
        if version.builtin:
            raise ModelError(f"{version.id} is built in and cannot be removed",
                             "built-in models ship with medstation; `medstation models use` another one "
                             "to stop using it")
        if self.is_default(version):
            raise ModelError(f"{version.id} is the {version.task} model in use and cannot be removed",
                             "first `medstation models use` another version (the built-in one, for example)")
        shutil.rmtree(version.path)
        return version

    def new_version_dir(self, name: str, version: str) -> Path:
        """Where a newly trained version goes; ``ModelError`` if that version exists (versions are
        immutable)."""
        path = self.user_dir / f"{name}-{version}"
        if path.exists() or any(v.id == f"{name}@{version}" for v in self.versions()):
            raise ModelError(f"model {name}@{version} already exists", "give the new model another version")
        return path
