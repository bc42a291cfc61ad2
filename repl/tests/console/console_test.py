#!/usr/bin/env python3
"""Drives the web console in headless Chromium against a running `eddy server`.

Run by `repl/tests/console.rs`, which starts the server (with an auth token), creates the
stream EVENTS with three rows and the table COUNTS over it, and then runs:

    console_test.py URL TOKEN SCREENSHOT

Each step waits for what a person would see, with a deadline, and fails with what the page
showed instead. Exits 0 when every step passed; the screenshot is written either way, so a
failure can be looked at.
"""

import json
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

DEADLINE = 30  # seconds per step: a guard, not a measure


def browser():
    options = Options()
    # Debian's chromium and chromium-driver: explicit paths keep Selenium Manager from trying
    # to download a browser or a driver (CI reaches only package registries).
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1400"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def wait(driver, what, condition):
    try:
        return WebDriverWait(driver, DEADLINE, poll_frequency=0.1).until(lambda d: condition(d))
    except TimeoutException:
        status = text(driver, "status")
        results = text(driver, "results")[:400]
        raise AssertionError(f"timed out waiting for {what}; status: {status!r}; results: {results!r}")


def text(driver, element_id):
    try:
        return driver.find_element(By.ID, element_id).text
    except Exception:  # noqa: BLE001 - only used for failure messages
        return "?"


def rows(driver):
    return driver.find_elements(By.CSS_SELECTOR, "#results tr.row")


def run_in_editor(driver, sql):
    editor = driver.find_element(By.ID, "sql")
    editor.clear()
    editor.send_keys(sql)
    driver.find_element(By.ID, "run").click()


def insert(url, token, rows_):
    """Inserts rows as another client would, while the page's push query runs."""
    body = "\n".join(json.dumps(r) for r in rows_)
    body = json.dumps({"target": "EVENTS"}) + "\n" + body
    req = urllib.request.Request(
        f"{url}/inserts-stream", data=body.encode(), method="POST",
        headers={"Authorization": f"Bearer {token}",
                 "Content-Type": "application/vnd.ksqlapi.delimited.v1"})
    with urllib.request.urlopen(req, timeout=DEADLINE) as resp:
        assert resp.status == 200, resp.status
        resp.read()


def main():
    url, token, screenshot = sys.argv[1:4]
    driver = browser()
    step = "start"
    try:
        step = "the page asks for the token"
        driver.get(url + "/")
        form = wait(driver, "the token form", lambda d: d.find_element(By.ID, "token-form"))
        wait(driver, "the token form to show", lambda d: form.is_displayed())
        driver.find_element(By.ID, "token").send_keys(token)
        driver.find_element(By.ID, "token-save").click()

        step = "streams, tables and topics are listed"
        wait(driver, "EVENTS and COUNTS in the sources",
             lambda d: "EVENTS" in text(d, "sources") and "COUNTS" in text(d, "sources"))
        wait(driver, "the events topic", lambda d: "events" in text(d, "topics"))
        wait(driver, "connected", lambda d: text(d, "conn") == "connected")

        step = "a push query shows rows as they arrive"
        run_in_editor(driver, "SELECT * FROM EVENTS EMIT CHANGES LIMIT 5;")
        wait(driver, "the three rows the topic holds", lambda d: len(rows(d)) >= 3)
        assert len(rows(driver)) == 3, f"{len(rows(driver))} rows before the inserts"
        insert(url, token, [{"K": "c", "V": 4}, {"K": "d", "V": 5}])
        wait(driver, "the two inserted rows", lambda d: len(rows(d)) == 5)
        wait(driver, "the push query to end at its limit",
             lambda d: "5 rows" in text(d, "status")
             and d.find_element(By.ID, "stop").get_attribute("disabled"))
        cells = [r.text for r in rows(driver)]
        assert any("c" in c and "4" in c for c in cells), cells

        step = "a pull query shows its result as a table"
        run_in_editor(driver, "SELECT * FROM COUNTS WHERE K = 'a';")
        wait(driver, "the pull query's row", lambda d: len(rows(d)) == 1 and "2" in rows(d)[0].text)

        step = "a statement's result"
        run_in_editor(driver, "SHOW STREAMS;")
        wait(driver, "SHOW STREAMS's table", lambda d: "EVENTS" in text(d, "results"))

        step = "PRINT of a topic"
        run_in_editor(driver, "PRINT 'events' FROM BEGINNING LIMIT 2;")
        wait(driver, "two printed lines", lambda d: text(d, "results").count("rowtime:") == 2)

        step = "persistent queries with charts, and EXPLAIN as a graph"
        wait(driver, "a query card with a chart",
             lambda d: d.find_elements(By.CSS_SELECTOR, "#charts .card svg.chart"))
        driver.find_element(By.CSS_SELECTOR, "#charts .card button.explain").click()
        wait(driver, "the plan's boxes",
             lambda d: len(d.find_elements(By.CSS_SELECTOR, "#explain svg.plan rect")) >= 2)

        step = "an error is shown, in ksqlDB's words"
        run_in_editor(driver, "SELECT * FROM NOPE EMIT CHANGES;")
        wait(driver, "the error", lambda d: "NOPE" in text(d, "status") + text(d, "results"))

        # Ends on the push query's rows, for the screenshot.
        run_in_editor(driver, "SELECT * FROM EVENTS EMIT CHANGES LIMIT 5;")
        wait(driver, "the five rows again", lambda d: len(rows(d)) == 5)
        print("console: every step passed")
    except Exception as e:  # noqa: BLE001 - reported with the step, then exit 1
        print(f"console: step '{step}' failed: {e}", file=sys.stderr)
        driver.save_screenshot(screenshot)
        driver.quit()
        sys.exit(1)
    driver.save_screenshot(screenshot)
    driver.quit()


if __name__ == "__main__":
    main()
