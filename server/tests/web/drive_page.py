"""Drives the detector's web page and docs page in headless Chromium (Selenium + Debian's
chromedriver) against a running server, and validates its /openapi.json.

Run by server/tests/web_page.rs, which starts the server; usage:
    drive_page.py BASE_URL CLIP_PATH EXPECTED_WINDOWS
Exits non-zero with a message on the first failed check. With AURALGUARD_WEB_SCREENSHOT=FILE.png
it also saves a screenshot of the page after the verdict.
"""

import json
import os
import shutil
import sys
import urllib.request

from openapi_spec_validator import validate
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

base, clip, expected_windows = sys.argv[1], sys.argv[2], int(sys.argv[3])


def check(cond, message):
    if not cond:
        raise SystemExit(f"FAILED: {message}")
    print(f"ok: {message}")


# 1. The generated API description is a valid OpenAPI document.
with urllib.request.urlopen(f"{base}/openapi.json", timeout=30) as r:
    doc = json.load(r)
validate(doc)
check(True, f"/openapi.json is valid OpenAPI {doc['openapi']} ({len(doc['paths'])} paths)")

# 2. The web page, in a real browser.
options = Options()
options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
            "--window-size=1200,1600"):
    options.add_argument(arg)
options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
driver = webdriver.Chrome(service=service, options=options)
wait = WebDriverWait(driver, 60)
try:
    driver.get(f"{base}/")
    model = wait.until(lambda d: d.find_element(By.ID, "model").text not in ("", "…")
                       and d.find_element(By.ID, "model").text)
    check("seed-random" in model, f"the page names the served model ({model})")

    driver.find_element(By.ID, "file").send_keys(clip)
    verdict = wait.until(lambda d: d.find_element(By.ID, "verdict").text)
    check(verdict.split()[0] in ("real", "fake"), f"a verdict is shown ({verdict})")
    check(driver.find_element(By.ID, "result").is_displayed(), "the result section is visible")

    spec = driver.execute_script("""
        const c = document.getElementById('spectrogram');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const colours = new Set();
        let differ = 0;
        for (let i = 0; i < d.length; i += 4) {
            colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
            if (d[i] !== d[0] || d[i + 1] !== d[1] || d[i + 2] !== d[2]) differ++;
        }
        return {width: c.width, height: c.height, colours: colours.size, differ: differ / (d.length / 4)};
    """)
    check(spec["height"] == 128 and spec["width"] == 469 * expected_windows,
          f"the spectrogram canvas is 128 × 469·{expected_windows} ({spec['width']}×{spec['height']})")
    check(spec["colours"] > 50 and spec["differ"] > 0.2,
          f"the spectrogram is drawn ({spec['colours']} colours, {spec['differ']:.0%} of pixels "
          "differ from the first)")

    bars = driver.find_elements(By.CSS_SELECTOR, "#timeline rect.window-bar")
    check(len(bars) == expected_windows, f"one timeline bar per window ({len(bars)})")

    name = clip.rsplit("/", 1)[-1]
    rows = wait.until(lambda d: [r for r in d.find_elements(By.CSS_SELECTOR, "#recent-rows tr")
                                 if name in r.text])
    check(len(rows) >= 1, f"the recent-predictions table lists {name}")

    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    check(not errors, f"no console errors on the page ({errors})")
    if os.environ.get("AURALGUARD_WEB_SCREENSHOT"):
        driver.save_screenshot(os.environ["AURALGUARD_WEB_SCREENSHOT"])

    # 3. The docs page renders every operation of the document.
    driver.get(f"{base}/docs")
    ops = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "details.op"))
    n_ops = sum(1 for item in doc["paths"].values() for op in item.values()
                if isinstance(op, dict) and "responses" in op)
    check(len(ops) == n_ops, f"the docs page shows all {n_ops} operations ({len(ops)})")
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    check(not errors, f"no console errors on the docs page ({errors})")
finally:
    driver.quit()
print("web page checks passed")
