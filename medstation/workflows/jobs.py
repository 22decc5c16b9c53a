"""Engine jobs that read files (the viewer submits them like ``ai.jobs``' jobs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medstation.ai.engine import INTERACTIVE, JobContext
from medstation.ai.jobs import ModelRef, cached_detector


@dataclass(frozen=True)
class FollowupJob:
    """Follow one patient's studies (files ``paths``) with ``model``: ``(report, tracks)`` of
    ``workflows.followup.follow``."""

    paths: tuple[str, ...]
    model: ModelRef
    patient: str | None = None
    cache: Any = field(default=None, compare=False, repr=False)  # where registrations are kept
    edits: tuple = ()  # the reader's renames, links and unlinks (``core.tracks.apply_edits``)
    aliases: tuple = ()  # other patient IDs of the same person
    name: str = "Following up the patient's studies"
    priority: int = INTERACTIVE

    def __call__(self, ctx: JobContext) -> Any:
        from medstation.workflows.followup import follow

        detector = cached_detector(ctx, self.model)
        ctx.stage("loading the detector", 0, 1000)

        def stage(text: str, fraction: float) -> None:
            ctx.check()
            ctx.stage(text, int(round(1000 * fraction)), 1000)

        return follow(list(self.paths), detector, patient=self.patient, check=ctx.check, stage=stage,
                      cache=self.cache, edits=list(self.edits), aliases=self.aliases)
