"""AI: the inference engine (job queue + device lanes); detectors and the model store build on it.

No Qt here: ``medstation.gui.bridge`` turns engine events into Qt signals.
"""

from medstation.ai.engine import (
    BACKGROUND,
    INTERACTIVE,
    Engine,
    JobContext,
    JobEvent,
    JobHandle,
    choose_device,
)

__all__ = ["BACKGROUND", "INTERACTIVE", "Engine", "JobContext", "JobEvent", "JobHandle", "choose_device"]
