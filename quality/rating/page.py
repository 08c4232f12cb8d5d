"""The rating pages as HTML: start (rater name), one pair (two anonymous videos, preference,
1-5 ratings), done, and errors. Plain forms, no script: the server validates everything."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from quality.rating.forms import PREFERENCES, SCORE_RANGE, SIDES

# what raters are asked to look at, per dimension
HINTS: dict[str, str] = {
    "motion_dynamics": "natural, lively head and body motion; reactions while listening",
    "identity_consistency": "the character looks like the same person all the way through",
    "text_controllability": "the character does what the prompt asks",
    "audio_video_sync": "lips and expressions follow the speech",
    "overall": "which you would rather watch",
}
PREFERENCE_LABELS = {"left": "Left is better", "same": "About the same", "right": "Right is better"}
CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem auto;max-width:1100px;padding:0 1rem;color:#222}
header{display:flex;justify-content:space-between;align-items:baseline;gap:1rem;flex-wrap:wrap}
.videos{display:flex;gap:1rem}.videos figure{flex:1;margin:0}.videos video{width:100%;background:#000}
figcaption{text-align:center;font-weight:600;margin:.3rem 0}
fieldset{margin:1rem 0;border:1px solid #ccc}table{border-collapse:collapse}
td,th{padding:.25rem .5rem;text-align:center}td.dim{text-align:left}small{color:#666}
.error{background:#fde8e8;border:1px solid #e0a0a0;padding:.6rem;margin:1rem 0}
.prompt{background:#eef4ff;padding:.5rem}button{font-size:1.05rem;padding:.5rem 1.2rem}
form.inline{display:inline}
"""


def layout(title: str, body: str) -> str:
    """A complete HTML document."""
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{CSS}</style></head>"
            f"<body>{body}</body></html>")


def _error(message: str | None) -> str:
    return f"<p class=error id=error role=alert>{escape(message)}</p>" if message else ""


def start_page(title: str, error: str | None = None) -> str:
    """Ask for the rater's name."""
    return layout(title, (
        f"<h1>{escape(title)}</h1>{_error(error)}"
        "<p>You will see pairs of generated videos of a character in conversation. For each pair, say "
        "which is better and rate both videos from 1 (bad) to 5 (excellent). The systems behind the "
        "videos are hidden and the sides are shuffled.</p>"
        "<form method=post action=/rater id=rater-form><label>Your name or alias "
        "<input name=rater id=rater required maxlength=64 autofocus></label> "
        "<button type=submit id=start>Start rating</button></form>"))


def _header(title: str, rater: str, done: int, total: int) -> str:
    return (f"<header><h1>{escape(title)}</h1><span id=progress>{done} / {total} rated</span>"
            f"<span>Rater: <b id=rater-name>{escape(rater)}</b> <form class=inline method=post action=/forget>"
            "<button type=submit>not you?</button></form></span></header>")


def _score_rows(dimensions: Mapping[str, str]) -> str:
    rows = []
    for dim, label in dimensions.items():
        cells = []
        for side in SIDES:
            radios = "".join(
                f"<label><input type=radio name='{side}.{dim}' id='{side}-{dim}-{v}' value={v} required>{v}</label> "
                for v in SCORE_RANGE)
            cells.append(f"<td>{radios}</td>")
        hint = escape(HINTS.get(dim, ""))
        rows.append(f"<tr><td class=dim>{escape(label)}<br><small>{hint}</small></td>{''.join(cells)}</tr>")
    return "".join(rows)


def pair_page(*, title: str, rater: str, pair_id: int, case_id: str, prompt: str | None,
              dimensions: Mapping[str, str], done: int, total: int, error: str | None = None) -> str:
    """One pair: the left and right videos (served by /media/PAIR/SIDE), the preference and ratings."""
    videos = "".join(
        f"<figure><figcaption>{side.capitalize()} video</figcaption>"
        f"<video id=video-{side} src='/media/{pair_id}/{side}' controls preload=auto playsinline></video></figure>"
        for side in SIDES)
    prompt_html = f"<p class=prompt>Prompt: <b id=prompt>{escape(prompt)}</b></p>" if prompt else ""
    preference = "".join(
        f"<label><input type=radio name=preference id=preference-{p} value={p} required> "
        f"{PREFERENCE_LABELS[p]}</label> " for p in PREFERENCES)
    return layout(title, (
        f"{_header(title, rater, done, total)}{_error(error)}"
        f"<p>Case <code id=case>{escape(case_id)}</code></p>{prompt_html}"
        f"<form method=post action=/vote id=vote-form><input type=hidden name=pair value={pair_id}>"
        f"<div class=videos>{videos}</div>"
        f"<fieldset><legend>Which video is better overall?</legend>{preference}</fieldset>"
        "<fieldset><legend>Rate each video: 1 = bad ... 5 = excellent</legend><table>"
        "<tr><th></th><th>Left video</th><th>Right video</th></tr>"
        f"{_score_rows(dimensions)}</table></fieldset>"
        "<button type=submit id=submit>Submit and go to the next pair</button></form>"))


def done_page(title: str, rater: str, total: int) -> str:
    """Every pair is rated."""
    return layout(title, (
        f"{_header(title, rater, total, total)}"
        f"<p id=done>You have rated all {total} pairs of this study. Thank you!</p>"))


def error_page(status: int, reason: str, message: str) -> str:
    """An error the user can act on."""
    return layout(f"{status} {reason}", (
        f"<h1>{status} {escape(reason)}</h1>{_error(message)}<p><a href='/'>Back to the rating page</a></p>"))
