"""What a rater submits, checked field by field: the rater's name and a vote (preference + 1-5 scores).

Every problem raises :class:`FormError` with a message the page shows back (HTTP 400).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs

SIDES = ("left", "right")
PREFERENCES = ("left", "same", "right")
SCORE_RANGE = range(1, 6)
RATER_PATTERN = re.compile(r"^[\w][\w .@'-]{0,63}$")
MAX_FORM_BYTES = 64 * 1024


class FormError(ValueError):
    """A form field is missing or wrong; the message says which and why."""


@dataclass(frozen=True)
class VoteForm:
    """A submitted vote: the pair, the preference as shown (left / same / right), and scores[side][dimension]."""

    pair_id: int
    preference: str
    scores: dict[str, dict[str, int]]


def parse_form(body: bytes) -> dict[str, list[str]]:
    """Decode an ``application/x-www-form-urlencoded`` body."""
    if len(body) > MAX_FORM_BYTES:
        raise FormError(f"the form is larger than {MAX_FORM_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormError("the form is not UTF-8 text") from exc
    return parse_qs(text, keep_blank_values=True, max_num_fields=256)


def _one(fields: Mapping[str, Sequence[str]], name: str, label: str) -> str:
    values = fields.get(name, [])
    if len(values) > 1:
        raise FormError(f"{label} was sent {len(values)} times; send it once")
    if not values or not values[0].strip():
        raise FormError(f"{label} is missing")
    return values[0].strip()


def clean_rater(name: str) -> str:
    """A rater name: 1-64 characters, letters/digits first, then letters, digits, space . @ ' - _."""
    name = " ".join(name.split())
    if not name:
        raise FormError("enter your name (or an alias) to start rating")
    if not RATER_PATTERN.match(name):
        raise FormError("a rater name is 1-64 characters: letters, digits, spaces and . @ ' - _ "
                        "(starting with a letter or digit)")
    return name


def parse_rater(fields: Mapping[str, Sequence[str]]) -> str:
    """The rater name field of the start form."""
    values = fields.get("rater", [])
    if len(values) != 1:
        raise FormError("enter your name (or an alias) to start rating")
    return clean_rater(values[0])


def _score(fields: Mapping[str, Sequence[str]], side: str, dimension: str, label: str) -> int:
    text = _one(fields, f"{side}.{dimension}", f"the {label} rating of the {side} video")
    try:
        value = int(text)
    except ValueError:
        raise FormError(f"the {label} rating of the {side} video must be a whole number 1-5, got {text!r}") from None
    if value not in SCORE_RANGE:
        raise FormError(f"the {label} rating of the {side} video must be 1-5, got {value}")
    return value


def parse_vote(fields: Mapping[str, Sequence[str]], dimensions: Mapping[str, str]) -> VoteForm:
    """Check a vote form against the study's ``dimensions`` (key -> label)."""
    text = _one(fields, "pair", "the pair id")
    if not text.isdigit():
        raise FormError(f"the pair id must be a positive whole number, got {text!r}")
    preference = _one(fields, "preference", "which video is better (left / same / right)")
    if preference not in PREFERENCES:
        raise FormError(f"the preference must be one of {', '.join(PREFERENCES)}, got {preference!r}")
    scores = {side: {dim: _score(fields, side, dim, label) for dim, label in dimensions.items()} for side in SIDES}
    expected = {"pair", "preference"} | {f"{side}.{dim}" for side in SIDES for dim in dimensions}
    unknown = sorted(set(fields) - expected)
    if unknown:
        raise FormError(f"unexpected form field(s): {', '.join(unknown[:5])}")
    return VoteForm(pair_id=int(text), preference=preference, scores=scores)
