"""Text-describable actions (nod, shake, smile, tilt, look_away) as timed events and curves.

An event is what the ground truth records ("person 1 nods from frame 40 to 62"); its
curve is what is added to the person's face controls over those frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lpm_models.data.synth.script import ACTIONS

# duration range in seconds per action
DURATIONS: dict[str, tuple[float, float]] = {
    "nod": (0.6, 1.1), "shake": (0.8, 1.4), "smile": (1.0, 2.5),
    "tilt": (1.0, 2.0), "look_away": (1.0, 2.0),
}
CAUSES = ("line", "scripted", "reaction")


@dataclass(frozen=True)
class ActionEvent:
    """An action of one person over frames [start_frame, end_frame)."""

    person: int
    action: str
    start_frame: int
    end_frame: int
    intensity: float  # 0..1
    direction: int  # +1 / -1: side of a tilt, look_away or the first swing of a shake
    cause: str  # "line" (said with a line), "scripted" (prompted), "reaction" (listening)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; expected one of {ACTIONS}")
        if self.cause not in CAUSES:
            raise ValueError(f"unknown cause {self.cause!r}; expected one of {CAUSES}")
        if self.end_frame <= self.start_frame:
            raise ValueError(f"empty action interval [{self.start_frame}, {self.end_frame})")

    def to_dict(self) -> dict:
        return {
            "person": self.person, "action": self.action, "start_frame": self.start_frame,
            "end_frame": self.end_frame, "intensity": round(self.intensity, 3),
            "direction": self.direction, "cause": self.cause,
        }


class EventBook:
    """Per-person non-overlapping action events (a guard gap keeps them separable)."""

    def __init__(self, n_frames: int, fps: int, guard_s: float = 0.2) -> None:
        self.n_frames = n_frames
        self.fps = fps
        self.guard = int(round(guard_s * fps))
        self.events: list[ActionEvent] = []

    def free(self, person: int, start: int, end: int) -> bool:
        return all(
            e.person != person or end + self.guard <= e.start_frame or e.end_frame + self.guard <= start
            for e in self.events
        )

    def add(
        self, rng: np.random.Generator, person: int, action: str, start_s: float, cause: str,
        duration_s: float | None = None,
    ) -> ActionEvent | None:
        """Book an action starting at ``start_s``; None when it does not fit or collides."""
        lo, hi = DURATIONS[action]
        dur = duration_s if duration_s is not None else float(rng.uniform(lo, hi))
        start = max(0, int(round(start_s * self.fps)))
        end = min(self.n_frames, start + max(3, int(round(dur * self.fps))))
        if end - start < 3 or not self.free(person, start, end):
            return None
        event = ActionEvent(
            person=person, action=action, start_frame=start, end_frame=end,
            intensity=float(rng.uniform(0.55, 1.0)), direction=1 if rng.random() < 0.5 else -1,
            cause=cause,
        )
        self.events.append(event)
        return event

    def sorted(self) -> list[ActionEvent]:
        return sorted(self.events, key=lambda e: (e.start_frame, e.person))


def _plateau(n: int, ramp: float = 0.25) -> np.ndarray:
    """0 -> 1 -> 0 over n frames with smooth (raised-cosine) ramps of ``ramp`` * n frames."""
    tau = (np.arange(n) + 0.5) / n
    up = np.clip(tau / ramp, 0, 1)
    down = np.clip((1 - tau) / ramp, 0, 1)
    return 0.5 - 0.5 * np.cos(np.pi * np.minimum(up, down))


def apply_event(controls: dict[str, np.ndarray], event: ActionEvent) -> None:
    """Add the event's motion to one person's (n_frames,) control curves in place."""
    a, b = event.start_frame, event.end_frame
    n = b - a
    tau = (np.arange(n) + 0.5) / n
    k, d = event.intensity, event.direction
    bell = np.sin(np.pi * tau) ** 2
    if event.action == "nod":
        cycles = 2 if n > 20 else 1
        controls["pitch"][a:b] += 11.0 * k * np.sin(np.pi * cycles * tau) ** 2 * np.sqrt(bell)
    elif event.action == "shake":
        controls["yaw"][a:b] += d * 16.0 * k * np.sin(2 * np.pi * 2 * tau) * np.sqrt(bell)
    elif event.action == "smile":
        controls["smile"][a:b] += 0.9 * k * _plateau(n)
    elif event.action == "tilt":
        controls["roll"][a:b] += d * 13.0 * k * _plateau(n)
        controls["brow_raise"][a:b] += 0.25 * k * _plateau(n)
    elif event.action == "look_away":
        controls["yaw"][a:b] += d * 21.0 * k * _plateau(n, 0.2)
        controls["pitch"][a:b] += 4.0 * k * _plateau(n, 0.2)
