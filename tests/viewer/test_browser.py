"""The viewer in a real browser (headless Chromium): every page loads without a console error, filters
change the list, every image of the item page loads, the compare page pairs the same item, an item written
into a run folder while the Live page is open appears, and the static export works from file://."""

from __future__ import annotations

import json
import time

import pytest

from tests.viewer.conftest import ARTIFACTS, ITEMS, Viewer


def console_errors(driver):
    return [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]


def load(driver, url, shot=None):
    driver.get("about:blank")  # stop the previous page (a Live page keeps polling a server that may be gone)
    driver.get_log("browser")  # and drop what it logged
    driver.get(url)
    wait_for(driver, lambda: driver.execute_script("return document.readyState") == "complete")
    if shot:
        driver.save_screenshot(str(ARTIFACTS / f"{shot}.png"))
    return driver


def wait_for(driver, condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def images_loaded(driver):
    """Every <img> of the page: (alt, complete, naturalWidth), after scrolling lazy ones into view."""
    driver.execute_script("for (const i of document.images) i.loading = 'eager';")
    wait_for(driver, lambda: driver.execute_script("return Array.from(document.images).every(i => i.complete)"))
    return driver.execute_script("return Array.from(document.images).map(i => [i.alt, i.naturalWidth, i.src])")


def item_ids(driver, table="items"):
    return driver.execute_script(
        f"return Array.from(document.querySelectorAll('#{table} tr.item')).filter(r => r.style.display !== 'none')"
        ".map(r => r.dataset.id)")


@pytest.mark.parametrize("page, path", [("runs", "/"), ("items", "/runs/0/items"), ("item", "/runs/1/items/3"),
                                        ("compare", "/compare?a=0&b=1"), ("live", "/runs/0/live")])
def test_each_page_loads_without_console_errors(browser, viewer, page, path):
    load(browser, viewer.url + path)
    assert console_errors(browser) == []
    assert browser.find_element("tag name", "h1").text
    assert all(width > 0 for _, width, _ in images_loaded(browser))
    browser.save_screenshot(str(ARTIFACTS / f"{page}.png"))


def test_runs_page_shows_what_each_folder_holds(browser, viewer):
    load(browser, viewer.url + "/")
    rows = browser.find_elements("css selector", "#runs tr[data-run]")
    assert [r.find_element("tag name", "a").text for r in rows] == ["baseline", "grounded"]
    text = rows[0].text
    assert "research" in text and "generate" in text and "judge" in text and str(ITEMS) in text
    assert "no_answer: 1" in text and "answer: 11" in text and "K " in text


def test_filters_change_the_list(browser, viewer):
    load(browser, viewer.url + "/runs/0/items")
    everything = item_ids(browser)
    assert len(everything) == ITEMS
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("name", "category")).select_by_visible_text("film")  # submits on change
    wait_for(browser, lambda: "category=film" in browser.current_url)
    films = item_ids(browser)
    assert films == [str(i) for i in range(ITEMS) if i % 5 == 1]
    assert all(c.text == "film" for c in browser.find_elements("css selector", "#items tr.item td:nth-child(2)"))
    load(browser, viewer.url + "/runs/0/items?termination=no_answer")
    assert item_ids(browser) == ["5"]
    load(browser, viewer.url + "/runs/0/items?min_score=0.5&max_score=1&sort=-score")
    scores = [float(c.text) for c in browser.find_elements("css selector", "#items tr.item td:nth-child(5)")]
    assert scores and all(0.5 <= s <= 1 for s in scores) and scores == sorted(scores, reverse=True)
    box = browser.find_element("name", "q")
    box.clear()
    box.send_keys("subject number 11\n")
    wait_for(browser, lambda: "q=subject" in browser.current_url)
    assert item_ids(browser) == ["11"]
    assert console_errors(browser) == []


def test_every_image_of_the_item_page_loads_and_zooms(browser, viewer):
    load(browser, viewer.url + "/runs/0/items/2", shot="item-page")
    loaded = images_loaded(browser)
    alts = [alt for alt, _, _ in loaded]
    # generated, ground truth (from the data root), two chosen references, the two images of round 2
    assert {"generated", "ground truth", "IMG_001", "IMG_002"} <= set(alts) and alts.count("IMG_001") == 2
    assert all(width > 0 for _, width, _ in loaded), loaded
    widths = {alt: w for alt, w, src in loaded if "/files/" in src}
    assert widths["generated"] == 1328 and widths["ground truth"] == 1328  # full size, zoomable
    for heading in ("Round 1", "Round 2", "Round 3"):
        assert heading in browser.find_element("id", "round-" + heading[-1]).text
    assert "image_search" in browser.find_element("id", "round-2").text
    assert "Who is in item 2?" in browser.find_element("id", "round-1").text
    assert "the kit colour is" in browser.find_element("id", "rationale").text
    assert "IMG_001" in browser.find_element("id", "final-prompt").text
    browser.find_element("css selector", "#images img[alt=generated]").click()
    wait_for(browser, lambda: browser.find_element("id", "zoom").is_displayed())
    browser.save_screenshot(str(ARTIFACTS / "item-zoomed.png"))
    assert console_errors(browser) == []


def test_compare_lines_up_the_same_item(browser, viewer):
    load(browser, viewer.url + "/compare?a=0&b=1")
    paired = browser.find_element("id", "paired").text
    assert f"baseline grounded {ITEMS} 0 0" in paired.replace("\n", " ")
    rows = browser.find_elements("css selector", "#pairs tr.pair-row")
    a_scores = json.loads(_scores(viewer, 0))
    b_scores = json.loads(_scores(viewer, 1))
    for row in rows:
        item = row.get_attribute("data-id")
        cells = row.find_elements("tag name", "td")
        if item in a_scores:
            assert cells[2].text == f"{a_scores[item]:.2f}" and cells[3].text == f"{b_scores[item]:.2f}"
        else:  # no answer, so no image: a failed generation on both sides
            assert cells[2].text == cells[3].text == "generation"
        links = [a.get_attribute("href") for a in cells[0].find_elements("tag name", "a")]
        assert links == [f"{viewer.url}/runs/0/items/{item}", f"{viewer.url}/runs/1/items/{item}"]
    browser.find_element("id", "flipped").click()
    wait_for(browser, lambda: "only=flipped" in browser.current_url)
    flipped = [r.get_attribute("data-flip") for r in browser.find_elements("css selector", "#pairs tr.pair-row")]
    assert flipped and set(flipped) <= {"improved", "regressed"}
    browser.find_element("css selector", "#pairs tr.pair-row a").click()
    assert browser.find_element("tag name", "h1").text.startswith("Item ")
    assert console_errors(browser) == []


def _scores(viewer, run):
    rows = json.loads((viewer.index.roots[run] / "results_eval.json").read_text())
    return json.dumps({str(r["id"]): r["scores"]["overall"] for r in rows if r.get("scores")})


def test_an_item_written_while_the_live_page_is_open_appears(browser, sample, live_copy):
    from gensearcher.viewer.sample_runs import write_sample_run

    with Viewer([live_copy], [sample["gt"]]) as server:
        load(browser, server.url + "/runs/0/live")
        assert len(browser.find_elements("css selector", "#live tr.item")) == ITEMS
        # The batch goes on: its files are rewritten with two more items (as the runners do, atomically).
        write_sample_run(live_copy, ITEMS + 2, gt_dir=sample["gt"] / "gt", seed=0)
        wait_for(browser, lambda: browser.find_elements("css selector", f"#live tr.item[data-id='{ITEMS + 1}']"))
        assert browser.find_element("id", "live-count").text == str(ITEMS + 2)
        browser.save_screenshot(str(ARTIFACTS / "live-updated.png"))
        assert all(width > 0 for _, width, _ in images_loaded(browser))
        assert console_errors(browser) == []


def test_a_training_run_shows_its_reward_curve(browser, tmp_path):
    state = {"log_history": [{"step": s, "reward": 0.2 + 0.05 * s, "loss": 0.1} for s in range(1, 9)]}
    (tmp_path / "trainer_state.json").write_text(json.dumps(state))
    with Viewer([tmp_path], []) as server:
        load(browser, server.url + "/runs/0/live", shot="live-training")
        points = curve_points(browser)
        assert len(points) == 8
        assert float(points[0].split(",")[1]) > float(points[-1].split(",")[1])  # rising reward, SVG y is down
        with open(tmp_path / "trainer_state.json", "w") as handle:
            json.dump({"log_history": state["log_history"] + [{"step": 9, "reward": 0.7}]}, handle)
        wait_for(browser, lambda: len(curve_points(browser)) == 9)
        assert console_errors(browser) == []


def curve_points(driver):
    """The reward curve's points, read in one script call (the page redraws the curve as data arrives)."""
    return driver.execute_script("const p = document.querySelector('#reward-svg polyline');"
                                 "return p ? p.getAttribute('points').split(' ') : [];")


def test_the_static_export_works_from_files(browser, sample, tmp_path):
    from gensearcher.viewer import RunIndex
    from gensearcher.viewer.export import export_site

    index = RunIndex([sample["a"], sample["b"]])
    try:
        entry = export_site(index, tmp_path / "site")
    finally:
        index.close()
    load(browser, entry.as_uri(), shot="export-runs")
    assert console_errors(browser) == []
    browser.find_element("link text", "baseline").click()
    wait_for(browser, lambda: len(item_ids(browser)) == ITEMS)
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("name", "category")).select_by_visible_text("film")
    assert item_ids(browser) == [str(i) for i in range(ITEMS) if i % 5 == 1]
    assert all(width > 0 for _, width, _ in images_loaded(browser))
    browser.find_element("link text", "1").click()
    assert all(width > 0 for _, width, _ in images_loaded(browser))
    assert "Round 2" in browser.page_source
    load(browser, (tmp_path / "site" / "compare-0-1-flipped.html").as_uri(), shot="export-compare")
    assert console_errors(browser) == []
