"""The web page in a real browser: Debian's headless Chromium, driven by Selenium, against a real
server; the label it shows for an uploaded image must be the server's answer for that file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests

from transferkit.serving.app import background_server, create_app
from transferkit.serving.predictors import load_predictor

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT = 60  # seconds for the page to load the model's description, or to show results


# A real browser: seconds per test, so in the slow set (CI runs it; `.ci/run` installs Chromium).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    for program in (CHROMIUM, CHROMEDRIVER):
        if not (program.is_file() and os.access(program, os.X_OK)):
            pytest.skip(f"needs Debian's chromium and chromium-driver ({program} is missing); "
                        "install them with: apt-get install chromium chromium-driver")
    pytest.importorskip("selenium", reason="needs selenium: pip install 'transferkit[dev]'")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1200,1000"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_page_classifies_an_uploaded_image_and_shows_the_card(image_run, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as conditions
    from selenium.webdriver.support.ui import WebDriverWait

    run, data = image_run[3], image_run[4]
    image = data / "not_face" / "not_face_005.png"
    with background_server(create_app(load_predictor(run))) as url:
        with open(image, "rb") as file:
            expected = requests.post(url + "/predict", files=[("files", file)], timeout=WAIT)
        assert expected.status_code == 200, expected.text
        (expected,) = expected.json()

        browser.get(url + "/")
        wait = WebDriverWait(browser, WAIT)
        wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        assert browser.find_element(By.ID, "image-input").is_displayed()
        assert not browser.find_element(By.ID, "text-input").is_displayed()
        # The card's markdown is rendered: its title, and its tables as tables.
        assert browser.find_element(By.CSS_SELECTOR, "#card h2").text.startswith("Model card")
        assert browser.find_elements(By.CSS_SELECTOR, "#card table")

        browser.find_element(By.ID, "files").send_keys(str(image))
        wait.until(conditions.element_to_be_clickable((By.ID, "submit"))).click()
        wait.until(lambda b: b.find_element(By.ID, "results").get_attribute("data-state")
                   in ("done", "error"))
        assert not browser.find_element(By.ID, "error").is_displayed()
        labels = browser.find_elements(By.CSS_SELECTOR, "#results .result .label")
        assert [label.text for label in labels] == [expected["label"]]
        shown = browser.find_element(By.CSS_SELECTOR, "#results .result .score").text
        assert shown == f"{100 * expected['score']:.1f}%" or shown in ("100%", "0%")
        bars = browser.find_elements(By.CSS_SELECTOR, "#results .result .bar-row")
        assert len(bars) == len(expected["scores"])

        # "Show why": the picture becomes /explain's heat map over it, and back again.
        picture = browser.find_element(By.CSS_SELECTOR, "#results .result img")
        original = picture.get_attribute("src")
        browser.find_element(By.CSS_SELECTOR, "#results .result button.why").click()
        wait.until(lambda b: picture.get_attribute("src").startswith("data:image/png"))
        card = browser.find_element(By.CSS_SELECTOR, "#results .result")
        assert card.get_attribute("data-why") == expected["label"]
        screenshot = run / "report" / "page.png"
        screenshot.parent.mkdir(exist_ok=True)
        assert browser.save_screenshot(str(screenshot))
        browser.find_element(By.CSS_SELECTOR, "#results .result button.why").click()
        wait.until(lambda b: picture.get_attribute("src") == original)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 10_000


def test_the_page_classifies_typed_text(text_run, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as conditions
    from selenium.webdriver.support.ui import WebDriverWait

    texts = ["a great fun film", "dull and boring"]
    with background_server(create_app(load_predictor(text_run[3]))) as url:
        expected = requests.post(url + "/predict", json={"texts": texts}, timeout=WAIT).json()
        browser.get(url + "/")
        wait = WebDriverWait(browser, WAIT)
        wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        assert browser.find_element(By.ID, "text-input").is_displayed()
        browser.find_element(By.ID, "text").send_keys("\n".join(texts))
        wait.until(conditions.element_to_be_clickable((By.ID, "submit"))).click()
        wait.until(lambda b: b.find_element(By.ID, "results").get_attribute("data-state")
                   in ("done", "error"))
        labels = browser.find_elements(By.CSS_SELECTOR, "#results .result .label")
        assert [label.text for label in labels] == [e["label"] for e in expected]
        shown = browser.find_elements(By.CSS_SELECTOR, "#results .result .input-text")
        assert [s.text for s in shown] == texts

        # "Show why" colours each word of the first text by its score from /explain.
        browser.find_elements(By.CSS_SELECTOR, "#results .result button.why")[0].click()
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".result .why-word")) == 4)
        words = browser.find_elements(By.CSS_SELECTOR, ".result .why-word")
        assert [w.text for w in words] == texts[0].split()
        assert all(w.get_attribute("title")[0] in "+-" for w in words)
        assert browser.find_elements(By.CSS_SELECTOR, "#results .result .input-text")[0].text == (
            texts[0])



@pytest.fixture(scope="module")
def tagged_runs(tmp_path_factory, vectors_file):
    """A multi-label and a regression text model (toy GloVe vectors, a few epochs each)."""
    import json

    from conftest import _run_cli
    from transferkit.testing import toy_tagged_texts

    root = tmp_path_factory.mktemp("page-targets")
    texts, labels, values = toy_tagged_texts(70)
    table = root / "texts.csv"
    table.write_text("text,labels,target\n" + "".join(
        f"{t},{y},{v}\n" for t, y, v in zip(texts, labels, values)), encoding="utf-8")
    runs = {}
    for target in ("multi-label", "regression"):
        code, out, err = _run_cli(["train", "text", str(table), "--target", target, "--encoder",
                                   "glove-bilstm", "--word-vectors", str(vectors_file),
                                   "--max-length", "16", "--epochs", "4", "--fine-tune-epochs",
                                   "0", "--output", str(root / target), "--json"])
        assert code == 0, err[-2000:]
        runs[target] = json.loads(out.strip().splitlines()[-1])["run_dir"]
    return runs


@pytest.mark.parametrize("target", ["multi-label", "regression"])
def test_the_page_shows_label_sets_as_chips_and_values_as_numbers(tagged_runs, browser, target):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as conditions
    from selenium.webdriver.support.ui import WebDriverWait

    texts = ["good fun lovely film", "awful and dull"]
    with background_server(create_app(load_predictor(tagged_runs[target]))) as url:
        expected = requests.post(url + "/predict", json={"texts": texts}, timeout=WAIT).json()
        browser.get(url + "/")
        wait = WebDriverWait(browser, WAIT)
        wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        browser.find_element(By.ID, "text").send_keys("\n".join(texts))
        wait.until(conditions.element_to_be_clickable((By.ID, "submit"))).click()
        wait.until(lambda b: b.find_element(By.ID, "results").get_attribute("data-state")
                   in ("done", "error"))
        assert not browser.find_element(By.ID, "error").is_displayed()
        cards = browser.find_elements(By.CSS_SELECTOR, "#results .result")
        assert len(cards) == len(texts)
        for card, answer in zip(cards, expected):
            if target == "regression":
                shown = card.find_element(By.CSS_SELECTOR, ".label").text
                assert float(shown) == pytest.approx(answer["value"], rel=1e-3)
            else:
                chips = [chip.text.rsplit(" ", 1)[0]
                         for chip in card.find_elements(By.CSS_SELECTOR, ".chip")]
                assert chips == answer["labels"]
