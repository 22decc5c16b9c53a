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
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medstation.ai.store import (
    MANIFEST,
    WEIGHTS,
    builtin_models_dir,
    load_detector,
    load_state,
    read_manifest,
)
from medstation.core.errors import ModelError
from medstation.core.files import atomic_write_text
from medstation.core.paths import user_models_path

REGISTRY_FILE = "registry.json"
#: in the built-in model folder: the built-in version each task uses by default
BUILTIN_DEFAULTS = "defaults.json"
#: where a detector keeps its findings (``ai.detector.Detector.keeps_in``)
KEEP_FINDINGS_IN = ("lung mask", "search region")
TASKS = ("detection", "followup", "segmentation")

#: a model name, version or task: ASCII letters and digits, then also ``. _ + -`` (no ``..``,
#: no separators): it names a folder of the user model store and must never leave it
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
_FIX_MANIFEST = "reinstall or retrain the model, or remove its folder"


def check_identifier(what: str, value: Any, where: str) -> str:
    """``value`` as a model name, version or task, or ``ModelError`` naming ``where``."""
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value) or ".." in value:
        raise ModelError(f"{where}: {what} {str(value)[:80]!r} is not a valid model {what} "
                         "(ASCII letters, digits, '.', '_', '+', '-'; at most 64; no '..')", _FIX_MANIFEST)
    return value


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
    def from_dict(cls, d: dict, card: str = "", where: str = MANIFEST) -> Manifest:
        """Typed and checked: name, version and task are identifiers, the operating point a score in
        0..1; anything else wrong is ``ModelError`` naming ``where`` (never a crash further on)."""
        def text(key: str, default: str = "") -> str:
            v = d.get(key, default)
            if v is None:
                return default
            if not isinstance(v, (str, int, float)):
                raise ModelError(f"{where}: {key} is a {type(v).__name__}, not text", _FIX_MANIFEST)
            return str(v)

        if not isinstance(d, dict):
            raise ModelError(f"{where}: the manifest is not a JSON object", _FIX_MANIFEST)
        for key in ("metrics", "training_data", "input", "network", "calibration", "training"):
            if d.get(key) is not None and not isinstance(d[key], dict):
                raise ModelError(f"{where}: {key} is a {type(d[key]).__name__}, not an object", _FIX_MANIFEST)
        metrics = d.get("metrics") or {}
        if metrics.get("froc") is not None and not isinstance(metrics["froc"], dict):
            raise ModelError(f"{where}: metrics.froc is not an object", _FIX_MANIFEST)
        op = d.get("operating_point")
        if op is None:
            op = (metrics.get("froc") or {}).get("threshold_at_1fp")
        if op is not None:
            if isinstance(op, bool) or not isinstance(op, (int, float)) or not math.isfinite(op) \
                    or not 0.0 <= float(op) <= 1.0:
                raise ModelError(f"{where}: operating point {str(op)[:40]!r} is not a score in 0..1",
                                 _FIX_MANIFEST)
        keep = d.get("keep_findings_in")
        if keep is not None and keep not in KEEP_FINDINGS_IN:
            raise ModelError(f"{where}: keep_findings_in {str(keep)[:40]!r} is not one of "
                             f"{', '.join(map(repr, KEEP_FINDINGS_IN))}", _FIX_MANIFEST)
        parent = d.get("parent_version")
        return cls(name=check_identifier("name", d.get("name"), where),
                   version=check_identifier("version", d.get("version"), where),
                   task=check_identifier("task", d.get("task", "detection") or "detection", where),
                   architecture=text("architecture"), sha256=text("sha256"),
                   parent_version=None if parent is None else text("parent_version"),
                   created=text("created"),
                   training_data=d.get("training_data") or {}, metrics=metrics,
                   operating_point=None if op is None else float(op), card=card,
                   intended_use=text("intended_use"), raw=dict(d))

    @property
    def id(self) -> str:
        """``name@version``: how the registry, the CLI and the database name this version."""
        return f"{self.name}@{self.version}"

    @property
    def fingerprint(self) -> str:
        """The weights' hash and the whole manifest's (calibration, operating point, pre-processing):
        what a cache of this version's outputs is keyed by."""
        import hashlib

        text = json.dumps(self.raw, sort_keys=True, default=str)
        return f"{self.sha256}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"

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
    return tuple((0, int(p), "") if p.isascii() and p.isdigit() else (1, 0, p)
                 for p in v.replace("-", ".").split("."))


class ModelRegistry:
    """Model versions under ``builtin_dir`` (read-only) and ``user_dir``; defaults in ``user_dir``."""

    def __init__(self, builtin_dir: str | Path | None = None, user_dir: str | Path | None = None) -> None:
        self.builtin_dir = Path(builtin_dir) if builtin_dir is not None else builtin_models_dir()
        self.user_dir = Path(user_dir) if user_dir is not None else user_models_path()
        self.problems: list[ModelError] = []
        #: folders of the user store that are not a complete model (an interrupted save): listed as
        #: problems, removable with :meth:`remove` by their path
        self.incomplete: list[Path] = []

    # -- listing ---------------------------------------------------------------------------
    def versions(self, task: str | None = None) -> list[ModelVersion]:
        """Every readable version (built-in first, then the user's, each sorted by name and
        version); unreadable directories are kept in ``problems``."""
        found: list[ModelVersion] = []
        self.problems = []
        self.incomplete = []
        seen: set[str] = set()
        for root, builtin in ((self.builtin_dir, True), (self.user_dir, False)):
            if not root.is_dir():
                continue
            here = []
            for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
                if not (d / MANIFEST).exists() or not (d / WEIGHTS).exists():
                    if not builtin and not d.is_symlink():
                        self.incomplete.append(d)
                    lacks = MANIFEST if not (d / MANIFEST).exists() else WEIGHTS
                    fix = "reinstall medstation" if builtin else f"`medstation models remove {d}` deletes it"
                    self.problems.append(ModelError(
                        f"{d}: not a complete model (no {lacks}; an interrupted save?)", fix))
                    continue
                try:
                    raw = read_manifest(d)
                    card = d / "MODEL_CARD.md"
                    manifest = Manifest.from_dict(raw, str(card) if card.exists() else "", str(d / MANIFEST))
                except (ModelError, TypeError, ValueError, RecursionError) as exc:
                    if not isinstance(exc, ModelError):
                        exc = ModelError(f"{d / MANIFEST}: {type(exc).__name__}: {str(exc)[:200]}",
                                         _FIX_MANIFEST)
                    self.problems.append(exc)
                    continue
                if not builtin and manifest.id in seen:
                    self.problems.append(ModelError(f"{d}: {manifest.id} is also built in; the built-in "
                                                    "one is used", "remove this copy"))
                    continue
                seen.add(manifest.id)
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
            shipped = self._builtin_default(candidates[0].task)
            builtin = sorted((v for v in candidates if v.builtin), key=lambda v: v.id != shipped)
            return (used or builtin or [max(candidates, key=lambda v: version_key(v.version))])[0]
        have = ", ".join(v.id for v in self.versions(task)) or "none"
        raise ModelError(f"no model {text!r}" + (f" for {task}" if task else "") + f" (installed: {have})",
                         "see `medstation models list`; name a model as NAME or NAME@VERSION")

    def _from_path(self, path: Path) -> ModelVersion:
        raw = read_manifest(path)
        builtin = path.resolve().parent == self.builtin_dir.resolve()
        return ModelVersion(path, Manifest.from_dict(raw, where=str(path / MANIFEST)), builtin)

    def in_user_store(self, path: Path) -> bool:
        """Whether ``path`` is a folder directly in the user model store (not a link out of it)."""
        try:
            return (not path.is_symlink() and path.is_dir()
                    and path.resolve().parent == self.user_dir.resolve())
        except OSError:
            return False

    # -- the version in use per task -----------------------------------------------------------
    @property
    def settings_file(self) -> Path:
        return self.user_dir / REGISTRY_FILE

    def _settings(self) -> dict:
        """``registry.json``; unreadable or malformed: ``{}`` and a problem (the built-in models are
        used, and that is said)."""
        if not self.settings_file.exists():
            return {}
        try:
            data = json.loads(self.settings_file.read_text(encoding="utf-8"))
            defaults = data.get("defaults", {}) if isinstance(data, dict) else None
            if not isinstance(defaults, dict) or not all(isinstance(v, str) for v in defaults.values()):
                raise ValueError("'defaults' is not a map of task to NAME@VERSION")
        except (OSError, ValueError, RecursionError) as exc:
            self._problem(ModelError(f"{self.settings_file}: unreadable ({type(exc).__name__}: "
                                     f"{str(exc)[:120]}); the built-in models are in use",
                                     "`medstation models use NAME@VERSION` writes it again"))
            return {}
        return data

    def _problem(self, exc: ModelError) -> None:
        if not any(str(p) == str(exc) for p in self.problems):
            self.problems.append(exc)

    def _default_id(self, task: str) -> str:
        return str((self._settings().get("defaults") or {}).get(task, ""))

    def default(self, task: str = "detection") -> ModelVersion:
        """The version in use for ``task``: the one set with :meth:`use`, else the built-in default
        (``models/defaults.json``, else the newest built-in; never a user version by itself: a new
        version is used only when someone says so)."""
        versions = self.versions(task)
        chosen = self._default_id(task)
        if chosen:
            hit = [v for v in versions if v.id == chosen]
            if hit:
                return next((v for v in hit if not v.builtin), hit[0])
            self._problem(ModelError(
                f"{self.settings_file}: the {task} model in use, {chosen[:80]}, is not installed or not "
                "readable; the built-in one is used instead",
                "`medstation models list` shows what there is; `medstation models use` picks one"))
        builtin = [v for v in versions if v.builtin]
        shipped = self._builtin_default(task)
        hit = [v for v in builtin if v.id == shipped]
        if hit:
            return hit[0]
        if builtin:
            return max(builtin, key=lambda v: version_key(v.version))
        if versions:
            return max(versions, key=lambda v: version_key(v.version))
        raise ModelError(f"no {task} model found in {self.builtin_dir} or {self.user_dir}",
                         "reinstall medstation or train one with `medstation train-detector`")

    def _builtin_default(self, task: str) -> str:
        """The built-in version a task uses until someone picks another: ``models/defaults.json``
        (``{"detection": "NAME@VERSION"}``), so that a new built-in version can ship installed and
        compared before it is the default; without the file (or the task in it), the newest
        built-in version."""
        path = self.builtin_dir / BUILTIN_DEFAULTS
        if not path.exists():
            return ""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            self._problem(ModelError(f"{path}: unreadable ({type(exc).__name__}); the newest built-in "
                                     "version is used", "reinstall medstation"))
            return ""
        value = data.get(task, "") if isinstance(data, dict) else ""
        return value if isinstance(value, str) else ""

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

    def remove(self, spec: str | Path, task: str | None = None) -> ModelVersion | Path:
        """Delete a user model version (or an incomplete folder of the user store, named by its path);
        refused for a built-in one, the one in use, and anything outside the user model store."""
        text = str(spec)
        if "@" not in text and (Path(text).is_dir() or Path(text).is_absolute() or text.startswith(".")):
            path = Path(text)
            if not self.in_user_store(path):
                raise ModelError(f"{path} is not a folder of the user model store {self.user_dir}",
                                 "`medstation models remove` deletes only versions trained here; "
                                 "name one as NAME@VERSION (see `medstation models list`)")
            self.versions()
            if any(p.resolve() == path.resolve() for p in self.incomplete):
                shutil.rmtree(path)
                return path
        version = self.resolve(spec, task)
        if not version.builtin and not self.in_user_store(version.path):
            raise ModelError(f"{version.path} is not in the user model store {self.user_dir}",
                             "medstation deletes only the versions it trained")
        if version.builtin:
            raise ModelError(f"{version.id} is built in and cannot be removed",
                             "built-in models ship with medstation; `medstation models use` another one "
                             "to stop using it")
        if self.is_default(version):
            raise ModelError(f"{version.id} is the {version.task} model in use and cannot be removed",
                             "first `medstation models use` another version (the built-in one, for example)")
        shutil.rmtree(version.path)
        return version

    def holds(self, path: str | Path) -> bool:
        """Whether ``path`` is a registered version's folder (built in or in the user store): such a
        version never changes; what changes it makes a new version (:meth:`derive`)."""
        try:
            parent = Path(path).resolve().parent
            return parent in (self.builtin_dir.resolve(), self.user_dir.resolve())
        except OSError:
            return False

    def derive(self, model_dir: str | Path, suffix: str, changes: dict) -> Path:
        """A new user version from ``model_dir``: the same weights, the manifest with ``changes``,
        ``parent_version`` the old one, version ``<old>-<suffix><n>``. The old version is untouched."""
        import datetime as _dt

        from medstation.ai.store import save_model

        manifest, state = load_state(model_dir)
        name, old = str(manifest["name"]), str(manifest["version"])
        taken = {v.version for v in self.versions() if v.name == name}
        n = 1
        while f"{old}-{suffix}{n}" in taken:
            n += 1
        version = f"{old}-{suffix}{n}"
        out = self.new_version_dir(name, version)
        new = {**{k: v for k, v in manifest.items() if k != "sha256"}, **changes, "version": version,
               "parent_version": old,
               "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        save_model(out, state, new)
        return out

    def new_version_dir(self, name: str, version: str) -> Path:
        """Where a newly trained version goes; ``ModelError`` if that version exists (versions are
        immutable)."""
        check_identifier("name", name, "the new model")
        check_identifier("version", version, "the new model")
        path = self.user_dir / f"{name}-{version}"
        if any(v.id == f"{name}@{version}" for v in self.versions()):
            raise ModelError(f"model {name}@{version} already exists", "give the new model another version")
        if path.exists() or path.is_symlink():
            raise ModelError(f"{path} already exists but is not a complete model (an interrupted save?)",
                             f"`medstation models remove {path}` deletes it, or give another version")
        return path


# -- for the command line ------------------------------------------------------------------------
def open_detector(model: str | Path | None = None, device: str = "auto", threads: int = 0, say=None):
    """``(Detector, model_dir)`` for the command line: the given model (``NAME``, ``NAME@VERSION``
    or a directory) or the one in use, on the chosen device (``auto``: CUDA, then MPS, then CPU);
    ``threads`` > 0 sets torch's CPU threads; ``say(text)`` hears the store's problems."""
    import torch

    from medstation.ai.engine import choose_device

    registry = ModelRegistry()
    model_dir = registry.resolve(model, "detection").path if model else registry.default("detection").path
    if say:
        for problem in registry.problems:  # a bad file elsewhere in the store, a fallback: said aloud
            say(f"warning: {problem}")
    if threads:
        torch.set_num_threads(threads)
    return load_detector(model_dir, choose_device(device or "auto")), model_dir


def list_models(task: str | None = None):
    """Every model version found (built-in first, then the user's), and the problems met
    (see ``registry.ModelRegistry``)."""
    registry = ModelRegistry()
    return registry.versions(task), registry.problems


def default_detector_dir() -> Path:
    """The detector in use: the one set with ``medstation models use``, else the built-in one."""
    return ModelRegistry().default("detection").path
