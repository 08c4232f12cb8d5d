"""The line-safe Pipes message reader: a message is parsed only once its whole line is written.

The real-child round trip through Dagster (`test_training_launcher.py::test_pipes_round_trip_through_a_real_child_process`)
runs this reader; here the logic is driven by a writer thread that stops in the middle of a line.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from dagster_pipes import PipesDefaultMessageWriter

from orchestration.pipes_reader import LineSafeMessageReader, complete_lines


def test_a_half_written_line_waits_for_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "messages.jsonl"
    path.write_text("")
    message = json.dumps({"method": "report_custom_message", "params": {"payload": "x" * 20000}}) + "\n"
    stop = threading.Event()
    halfway = threading.Event()

    def writer() -> None:
        with open(path, "a", encoding="utf-8") as f:
            f.write(message[:81])
            f.flush()
            halfway.set()
            time.sleep(0.3)  # the reader polls meanwhile and sees a line without its end
            f.write(message[81:])
        stop.set()

    thread = threading.Thread(target=writer)
    thread.start()
    lines = list(complete_lines(str(path), lambda: stop.is_set() and halfway.is_set(), poll_s=0.01))
    thread.join()
    assert lines == [message]
    assert json.loads(lines[0])["params"]["payload"] == "x" * 20000


def test_a_last_line_without_newline_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "messages.jsonl"
    path.write_text('{"a": 1}\n{"b": 2}')
    assert list(complete_lines(str(path), lambda: True)) == ['{"a": 1}\n', '{"b": 2}']


class Recorder:
    """Stands in for Dagster's message handler: records what the reader hands over."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.framework_errors: list[str] = []

    def handle_message(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def report_pipes_framework_exception(self, origin: str, exc_info: Any) -> None:
        self.framework_errors.append(origin)


def test_a_malformed_line_is_skipped_and_reading_goes_on() -> None:
    reader, handler = LineSafeMessageReader(poll_s=0.01), Recorder()
    with reader.read_messages(handler) as params:
        path = params[PipesDefaultMessageWriter.FILE_PATH_KEY]
        with open(path, "a", encoding="utf-8") as f:
            f.write('{"method": "log", "params": {"message": "one"}}\n')
            f.write('{"method": "log", "params": {"mess\n')  # garbage: a line that is not JSON
            f.write('{"method": "log", "params": {"message": "two"}}\n')
        time.sleep(0.1)
    assert [m["params"]["message"] for m in handler.messages] == ["one", "two"]
    assert reader.skipped == 1 and handler.framework_errors == []
    assert not Path(path).exists()  # the temporary file goes with the session
