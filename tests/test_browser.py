"""The page in a real headless Chromium: upload, read the prediction, flag it, see the failures.

Screenshots of each tab are kept in test-artifacts/ for people to look at.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from deepscape import serve
from deepscape.inside import load_trained

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get "
        "install chromium); .ci/run installs it",
    ),
]


@pytest.fixture(scope="module")
def page(digits_run):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip)")
    app = serve.build_app(digits_run)
    url = serve.launch(app)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        tab.goto(url)
        tab.get_by_role("button", name="Classify the upload").wait_for()
        yield tab
        browser.close()
    app.close()


def test_upload_predict_flag_and_browse_the_failures(page, digits_run, tmp_path):
    trained = load_trained(digits_run)
    test = trained.data.test
    index = 2
    image = tmp_path / "digit.png"
    image.write_bytes(serve.as_png(test.inputs[index]))
    truth = trained.classes[int(test.targets[index])]
    ARTIFACTS.mkdir(exist_ok=True)

    # Try it: upload, classify, read the top class from the page.
    page.locator("#upload input[type=file]").set_input_files(str(image))
    page.get_by_role("button", name="Classify the upload").click()
    top = page.locator("[data-testid=label-output-value]")
    top.wait_for(timeout=30_000)
    assert top.inner_text().strip() == truth
    page.screenshot(path=ARTIFACTS / "1_try_it.png", full_page=True)

    # Flag it with another label, and find the file it wrote.
    wrong = next(c for c in trained.classes if c != truth)
    page.get_by_label("The right label, if the model was wrong").click()
    page.get_by_role("option", name=wrong, exact=True).click()
    page.get_by_role("button", name="Flag this prediction").click()
    page.get_by_text("Flagged so far: 1").wait_for(timeout=30_000)
    (record,) = (digits_run.dir / "flagged").glob("*.json")
    saved = json.loads(record.read_text())
    assert saved["label"] == wrong and saved["predicted"] == truth
    page.screenshot(path=ARTIFACTS / "2_flagged.png", full_page=True)

    # Failure cases: the gallery of mistakes and the confusion matrix.
    page.get_by_role("tab", name="Failure cases").click()
    gallery = page.locator("#failures img")
    gallery.first.wait_for(timeout=30_000)
    assert gallery.count() >= 6
    page.get_by_text("Confusion matrix").first.wait_for()
    page.screenshot(path=ARTIFACTS / "3_failure_cases.png", full_page=True)
    shutil.rmtree(digits_run.dir / "flagged")  # leave the shared run as it was


def test_a_non_image_upload_shows_a_message_not_a_trace(page, tmp_path):
    page.reload()  # a fresh page: an empty upload box
    page.get_by_role("button", name="Classify the upload").wait_for()
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    page.locator("#upload input[type=file]").set_input_files(str(text))
    page.get_by_role("button", name="Classify the upload").click()
    page.get_by_text("notes.txt is not an image").first.wait_for(timeout=30_000)
    assert "Traceback" not in page.content()
    page.screenshot(path=ARTIFACTS / "4_bad_input.png", full_page=True)
