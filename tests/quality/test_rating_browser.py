"""End to end in a real headless Chromium (Debian's chromium + chromium-driver, driven by selenium):
a rater opens the page, both videos load and play, a bad submission gets a 400 page, a good one
lands in the catalog and in the aggregate."""

from __future__ import annotations

import random
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from infra.catalog import Catalog, migrate
from quality.rating.aggregate import aggregate
from quality.rating.server import RatingServer, make_server
from quality.rating.store import RatingStore
from quality.rating.study import DIMENSIONS, make_study
from tests.media_factory import write_av

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SECONDS = {"a": 1.0, "b": 2.0}  # the systems' videos differ in length, so the page tells which is where
RATER = "Grace H"
PLAY_SCRIPT = """
const [id, done] = [arguments[0], arguments[arguments.length - 1]];
const v = document.getElementById(id);
v.muted = true;
const finish = () => done({ready: v.readyState, duration: v.duration, time: v.currentTime, width: v.videoWidth,
                            error: v.error ? v.error.code : null});
v.addEventListener('timeupdate', () => { if (v.currentTime > 0.2) finish(); });
v.play().catch(e => done({error: String(e)}));
setTimeout(finish, 8000);
"""


def _binary(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(f"{' / '.join(names)} not found: install Debian's chromium and chromium-driver (`make system-deps`)")


@pytest.fixture()
def browser() -> Iterator[WebDriver]:
    """Headless Chromium through chromedriver (both from Debian, nothing downloaded)."""
    options = webdriver.ChromeOptions()
    options.binary_location = _binary("chromium", "chromium-browser")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--mute-audio",
                "--window-size=1280,1200", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=_binary("chromedriver")))
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(15)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[RatingServer, Catalog]]:
    for system, seconds in SECONDS.items():
        for case in ("c1", "c2"):
            write_av(tmp_path / system / f"{case}.mp4", seconds=seconds, size=(96, 64), faststart=True)
    study = make_study(tmp_path / "a", tmp_path / "b", "browser-study", system_a="sys-a", system_b="sys-b")
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    migrate(url)
    with Catalog(url) as catalog:
        server = make_server(study, catalog, port=0, rng=random.Random(3))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server, catalog
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)


def _fill(driver: WebDriver, preference: str, left: int, right: int) -> None:
    driver.find_element("id", f"preference-{preference}").click()
    for dim in DIMENSIONS:
        driver.find_element("id", f"left-{dim}-{left}").click()
        driver.find_element("id", f"right-{dim}-{right}").click()


def _submit(driver: WebDriver) -> None:
    """Click submit and wait until the browser has left the submitted page."""
    form = driver.find_element("id", "vote-form")
    driver.find_element("id", "submit").click()
    WebDriverWait(driver, 15).until(expected_conditions.staleness_of(form))


def test_a_rater_watches_both_videos_and_votes(browser: WebDriver, served: tuple[RatingServer, Catalog]) -> None:
    driver, (server, catalog) = browser, served
    driver.get(server.url + "/")
    driver.find_element("id", "rater").send_keys(RATER)
    driver.find_element("id", "start").click()
    WebDriverWait(driver, 15).until(lambda d: d.find_elements("id", "video-left"))
    assert driver.find_element("id", "progress").text == "0 / 2 rated"
    assert "sys-a" not in driver.page_source and "sys-b" not in driver.page_source
    pair_id = int(driver.find_element("name", "pair").get_attribute("value"))
    shown = RatingStore(catalog).shown(pair_id, RATER)
    assert shown is not None

    for side in ("left", "right"):  # present, decodable, and it plays
        state = driver.execute_async_script(PLAY_SCRIPT, f"video-{side}")
        assert state.get("error") is None, state
        assert state["ready"] >= 2 and state["width"] == 96 and state["time"] > 0.2, state
        assert state["duration"] == pytest.approx(SECONDS[shown.system(side)], abs=0.1), (side, state)

    _fill(driver, "right", left=4, right=2)  # a tampered value is refused by the server, not the browser
    driver.execute_script("document.getElementById('left-overall-4').value = '9'")
    _submit(driver)
    assert "Overall rating of the left video must be 1-5, got 9" in driver.find_element("id", "error").text
    assert RatingStore(catalog).votes("browser-study") == []

    driver.get(server.url + "/")  # the server is still up; same pair again
    assert int(driver.find_element("name", "pair").get_attribute("value")) == pair_id
    _fill(driver, "right", left=4, right=2)
    _submit(driver)
    assert driver.find_element("id", "progress").text == "1 / 2 rated"
    assert int(driver.find_element("name", "pair").get_attribute("value")) != pair_id

    (vote,) = RatingStore(catalog).votes("browser-study")
    right, left = shown.system("right"), shown.system("left")
    assert (vote.rater, vote.case_id) == (RATER, shown.case_id)
    assert vote.preference == ("G" if right == "a" else "B")
    assert dict(vote.scores) == {(left, d): 4 for d in DIMENSIONS} | {(right, d): 2 for d in DIMENSIONS}
    report = aggregate([vote], tuple(DIMENSIONS))
    assert report.win_rate.value == (1.0 if right == "a" else 0.0)
    assert report.ratings[right]["overall"].value == 2.0 and report.ratings[left]["overall"].value == 4.0
