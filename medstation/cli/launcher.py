"""The GUI launcher: the only CLI module that imports ``gui``.

``medstation`` / ``medstation open`` / ``--demo`` start the window,
``medstation bench render`` times the viewer, and ``selftest --gui`` gets its
window step from here. Every other CLI module runs headless (an import-linter
contract says so).
"""

from __future__ import annotations

from medstation.core import jsonout


def cmd_gui(args) -> int:
    from medstation.gui.app import run

    return run(db=args.db, open_paths=getattr(args, "paths", None), demo=args.demo)


def cmd_bench_render(args) -> int:
    from medstation.gui.bench import run_render

    r = run_render(args)
    if args.json:
        print(jsonout.dumps(r, indent=1))
    else:
        print(f"scroll frame ({r['size']}x{r['size']} slice, {r['widget'][0]}x{r['widget'][1]} view, "
              f"text and measurements on): median {r['median_ms']:.2f} ms, p95 {r['p95_ms']:.2f} ms "
              f"(target {r['target_ms']:.0f} ms, ratio {r['ratio_vs_target']:.2f}); baseline (redraw of a"
              f" windowed slice, no overlays) {r['baseline_redraw_only_median_ms']:.2f} ms, "
              f"ratio {r['ratio_vs_baseline']:.2f}")
        print(f"thick-slab MIP frame ({r['slab_mip_mm']:.0f} mm, projected every frame): median "
              f"{r['slab_mip_median_ms']:.2f} ms, p95 {r['slab_mip_p95_ms']:.2f} ms, "
              f"{r['slab_mip_ratio_vs_plain_frame']:.2f}x the plain frame above")
        c = r.get("contended")
        if c:
            n = c["busy_processes"]
            procs = f"{n} busy process{'es' if n != 1 else ''}"
            print(f"while a detection runs on a worker thread beside {procs}: "
                  f"median {c['median_ms']:.2f} ms, p95 {c['p95_ms']:.2f} ms, max {c['max_ms']:.1f} ms "
                  f"({c['ratio_vs_quiet']:.2f}x the quiet frame, {c['frames']} frames)")
    return 0


def selftest_window(series_uid: str, findings: list, threshold: float, path, **tour) -> str:
    """The self-test's window step (the three jobs in the window, a screenshot of each)."""
    from medstation.gui.selftest import window_check

    return window_check(series_uid, findings, threshold, path, **tour)
