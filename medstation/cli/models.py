"""``medstation models list|show|use|remove``: the model registry from the command line.

Versions are named ``NAME`` or ``NAME@VERSION`` (or a model directory's path).
``export NAME[@VERSION] --onnx FILE`` writes the network as ONNX, checked with onnxruntime.
``use`` moves the pointer to the version in use for its task (the GUI reads the
same pointer); ``remove`` deletes a user version and refuses a built-in one or
the one in use. Each takes ``--json``.
"""

from __future__ import annotations

from pathlib import Path

from medstation.core import jsonout


def add_parsers(sub, run) -> None:
    s = sub.add_parser("models", help="model versions by task: list, show, use, remove")
    msub = s.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    m = msub.add_parser("list", help="every model version, the one in use per task marked")
    m.add_argument("--task", help="only this task (detection, followup, ...)")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=run("cmd_list"))
    for name, text in (("show", "one version's manifest: task, parent, training data, metrics"),
                       ("use", "use this version for its task (from now on, in the viewer too)"),
                       ("remove", "delete a version trained here (not a built-in one, not the one in use)")):
        m = msub.add_parser(name, help=text)
        m.add_argument("model", help="NAME, NAME@VERSION or a model directory")
        m.add_argument("--json", action="store_true")
        m.set_defaults(func=run(f"cmd_{name}"))
    m = msub.add_parser("export", help="write a version's network as ONNX, checked by running it with "
                                       "onnxruntime against torch on the same inputs")
    m.add_argument("model", help="NAME, NAME@VERSION or a model directory")
    m.add_argument("--onnx", required=True, metavar="FILE", help="the .onnx file to write")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=run("cmd_export"))


def _registry():
    from medstation.ai.registry import ModelRegistry

    return ModelRegistry()


def cmd_list(args) -> int:
    registry = _registry()
    versions = registry.versions(args.task)
    rows = [v.to_dict(in_use=registry.is_default(v)) for v in versions]
    if args.json:
        print(jsonout.dumps({"models": rows, "problems": [p.to_dict() for p in registry.problems]}, indent=1))
        return 0
    if not rows:
        print("no models found" + (f" for {args.task}" if args.task else ""))
    for r in rows:
        mark = "*" if r["in_use"] else " "
        where = "built-in" if r["builtin"] else "trained here"
        parent = f", from {r['parent_version']}" if r["parent_version"] else ""
        op = f", operating point {r['operating_point']:.2f}" if r["operating_point"] is not None else ""
        print(f"{mark} {r['id']:<32} {r['task']:<10} {where}{parent}{op}")
    for p in registry.problems:
        print(f"  problem: {p}")
    if rows:
        print("(* in use)")
    return 0


def cmd_show(args) -> int:
    registry = _registry()
    version = registry.resolve(args.model)
    info = {**version.to_dict(in_use=registry.is_default(version)), "manifest": version.manifest.raw,
            "card": version.manifest.card}
    if args.json:
        print(jsonout.dumps(info, indent=1))
        return 0
    for key in ("id", "task", "architecture", "parent_version", "created", "builtin", "in_use", "path",
                "sha256", "operating_point", "intended_use", "card"):
        print(f"{key:<16} {info[key]}")
    print(f"{'training data':<16} {jsonout.dumps(info['training_data'])}")
    print(f"{'metrics':<16} {jsonout.dumps(info['metrics'])}")
    return 0


def cmd_use(args) -> int:
    version = _registry().use(args.model)
    if args.json:
        print(jsonout.dumps({"in_use": version.id, "task": version.task, "path": str(version.path)}))
    else:
        print(f"{version.task}: now using {version.id} ({version.path})")
    return 0


def cmd_remove(args) -> int:
    removed = _registry().remove(args.model)
    if isinstance(removed, Path):  # an incomplete folder of the store (an interrupted save)
        what, where = "an incomplete model folder", removed
    else:
        what, where = removed.id, removed.path
    if args.json:
        print(jsonout.dumps({"removed": what, "path": str(where)}))
    else:
        print(f"removed {what} ({where})")
    return 0


def cmd_export(args) -> int:
    from medstation.ai.export import export_version

    version = _registry().resolve(args.model)
    info = export_version(version, args.onnx)
    if args.json:
        print(jsonout.dumps(info, indent=1))
        return 0
    worst = max(info["max_abs_difference"].values())
    print(f"{version.id} ({info['part']}) -> {info['file']} ({info['bytes'] / 1e6:.1f} MB, "
          f"opset {info['opset']}); "
          f"onnxruntime {info['onnxruntime']} matches torch on {len(info['checked_on'])} input shapes "
          f"(largest difference {worst:.2g}, allowed {info['atol']:g} + {info['rtol']:g} x |torch|)")
    return 0
