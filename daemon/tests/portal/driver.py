"""Drives the registration portal in headless Chromium (selenium), as daemon/tests/portal.rs
plans it: PKID_PORTAL_PLAN is JSON with the base URL, the operators' password and TOTP
secrets, the subscriber's name, a CSR and the screenshot directory.

Each step asserts what a person would see; a failed step raises, and the Rust test shows this
script's output. Prints `request N` for the request it filed.
"""
import base64
import hashlib
import hmac
import json
import os
import struct
import sys
import tempfile
import time

from selenium import webdriver
from selenium.common.exceptions import (
    NoAlertPresentException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

plan = json.loads(os.environ["PKID_PORTAL_PLAN"])
BASE = plan["base"]
SHOTS = plan["screenshots"]


def totp(secret_b32, at=None):
    """RFC 6238: HMAC-SHA-1, 30 s steps, 6 digits."""
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8), casefold=True)
    counter = int((at or time.time()) // 30)
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF) % 1_000_000
    return f"{code:06d}"


options = webdriver.ChromeOptions()
for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", "--window-size=1280,1000",
             f"--user-data-dir={tempfile.mkdtemp(prefix='pkid-chromium-')}",
             # The test is about the portal, not TLS (the TLS suites trust the CA properly).
             "--ignore-certificate-errors"):
    options.add_argument(flag)
# A Vietnamese browser: the portal answers in the language the browser asks for first.
options.add_argument("--lang=vi-VN")
options.add_experimental_option("prefs", {"intl.accept_languages": "vi-VN,vi"})
options.binary_location = "/usr/bin/chromium"
d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
d.implicitly_wait(5)


def el(testid):
    return d.find_element(By.CSS_SELECTOR, f"[data-testid={testid}]")


def els(testid):
    return d.find_elements(By.CSS_SELECTOR, f"[data-testid={testid}]")


def detached(element):
    """Whether `element`'s document has been left. Selenium's `staleness_of` knows only the
    stale-element error; while Chromium is replacing the document, the same question gets
    "Node with given id does not belong to the document" (an unknown error) instead, and
    `staleness_of` raised it: the test failed under load, mid-navigation."""
    try:
        element.is_enabled()
        return False
    except StaleElementReferenceException:
        return True
    except WebDriverException as e:
        if "does not belong to the document" in (e.msg or ""):
            return True
        raise


def follow(element):
    """Clicks a control that loads a new page and waits until the old page is gone, so no
    later look finds an element of the page being left (a race under load otherwise)."""
    old = d.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(d, 30).until(lambda _: detached(old))
    # The old document is gone; wait until the new one has loaded too, so that a look right
    # after this cannot catch the document between navigation and load.
    WebDriverWait(d, 30).until(lambda drv: drv.execute_script("return document.readyState") == "complete")


def shot(name):
    d.save_screenshot(os.path.join(SHOTS, name))


def step(what):
    print(f"step: {what}", flush=True)


def no_alert():
    try:
        d.switch_to.alert
    except NoAlertPresentException:
        return
    raise AssertionError("a script ran: an alert is open")


def login(user):
    d.get(BASE + "/")
    el("login-username").send_keys(user)
    el("login-password").send_keys(plan["password"])
    el("login-totp").send_keys(totp(plan["totp"][user]))
    follow(el("login-submit"))
    assert els("logout"), f"{user} is not logged in: {d.page_source[:2000]}"


def logout():
    follow(el("logout"))
    assert els("login-username"), "the login form is back after logout"


try:
    step("home page, Vietnamese by default")
    d.get(BASE + "/")
    assert d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "vi"
    assert "Đăng nhập" in d.page_source
    shot("home.png")

    step("a form without its CSRF token is refused")
    d.execute_script("document.querySelector('form[action=\"/login\"] input[name=csrf]').remove()")
    el("login-username").send_keys("van-thu")
    el("login-password").send_keys(plan["password"])
    el("login-totp").send_keys(totp(plan["totp"]["van-thu"]))
    follow(el("login-submit"))
    assert el("error-title").text == "Biểu mẫu không hợp lệ", d.page_source[:2000]
    assert not els("logout")

    step("a wrong code says only that the login failed")
    d.get(BASE + "/")
    el("login-username").send_keys("van-thu")
    el("login-password").send_keys(plan["password"])
    el("login-totp").send_keys("000000" if totp(plan["totp"]["van-thu"]) != "000000" else "111111")
    follow(el("login-submit"))
    assert el("login-error").text == "Đăng nhập không thành công."

    step("the organisation officer logs in with password + TOTP and files an issue request")
    login("van-thu")
    shot("dashboard.png")
    follow(el("new-request"))
    assert el("request-kind").get_attribute("value") == "issue"
    # Client-side validation first: the browser itself holds back a bad email.
    el("subscriber-name").send_keys(plan["subscriber"])
    el("subscriber-email").send_keys("not-an-email")
    el("csr-text").send_keys(plan["csr"])
    el("request-submit").click()
    assert els("request-submit") and "/requests/new" in d.current_url, "the browser kept the form"
    assert not d.execute_script("return document.getElementById('subscriber_email').validity.valid")
    # Server-side validation (the browser's checks switched off, as a script-less or hostile
    # client would): the problem is shown next to its field, what was typed kept.
    d.execute_script("document.querySelector('form[action=\"/requests\"]').noValidate = true")
    follow(el("request-submit"))
    err = d.find_element(By.ID, "subscriber_email-e").text
    assert err == "Địa chỉ thư điện tử không hợp lệ", d.page_source[:3000]
    assert el("subscriber-name").get_attribute("value") == plan["subscriber"]
    el("subscriber-email").clear()
    el("subscriber-email").send_keys("cuong@lqd.edu.vn")
    el("subscriber-phone").send_keys("0905 123 456")
    if not el("csr-text").get_attribute("value").strip():
        el("csr-text").send_keys(plan["csr"])
    shot("form.png")
    # The signed document is checked before sending; the form comes back with the verdict and
    # the files kept (a browser cannot refill a file input), then is sent as it is.
    el("document-file").send_keys(plan["document"])
    el("signature-file").send_keys(plan["signature"])
    follow(el("document-check"))
    verdict = el("document-check-verdict").text
    assert verdict == "chữ ký số không hợp lệ", f"verdict {verdict!r}: {d.page_source[:3000]}"
    assert "de-nghi-cap-moi.txt" in el("kept-document").text, d.page_source[:3000]
    assert el("subscriber-name").get_attribute("value") == plan["subscriber"]
    d.execute_script("arguments[0].scrollIntoView({block: 'center'})", el("document-check-result"))
    shot("document-check.png")
    follow(el("request-submit"))
    state = el("request-state").text
    assert state == "chờ bản gốc", f"state {state!r}: {d.page_source[:3000]}"
    assert el("document-verified").text == "chữ ký số không hợp lệ", d.page_source[:3000]
    request_id = int(d.current_url.rstrip("/").rsplit("/", 1)[1])
    print(f"request {request_id}", flush=True)
    assert el("subscriber-name-shown").text == plan["subscriber"], "the name is text, exactly"
    no_alert()

    step("the dashboard is paged: the new request first, the older ones on the next page")
    follow(d.find_element(By.CSS_SELECTOR, "a.brand"))
    first = [r.get_attribute("data-request-id") for r in els("request-row")]
    assert len(first) == 50 and first[0] == str(request_id), first
    follow(el("next-page"))
    second = [r.get_attribute("data-request-id") for r in els("request-row")]
    assert len(second) == plan["seeded"] + 1 - 50 and not set(first) & set(second), second
    assert not els("next-page"), "the last page has no next link"
    logout()

    step("the RA officer in scope sees it in the queue and approves it")
    login("ra-dn")
    rows = d.find_elements(By.CSS_SELECTOR, f"[data-testid=request-row][data-request-id='{request_id}']")
    assert rows, d.page_source[:3000]
    no_alert()
    shot("queue.png")
    follow(rows[0].find_element(By.TAG_NAME, "a"))
    el("action-original-received").click()
    follow(el("action-submit"))
    assert el("request-state").text == "đã tiếp nhận", d.page_source[:3000]
    assert "còn" in el("request-due").text, el("request-due").text
    el("action-approve").click()
    follow(el("action-submit"))
    assert el("request-state").text == "hoàn thành", d.page_source[:3000]
    serial = el("issued-serial").text.strip()
    assert serial, "an issued certificate is named"
    shot("request.png")
    follow(el("nav-reports"))
    svg = el("chart-kinds")
    assert svg.find_elements(By.TAG_NAME, "rect"), "the chart is drawn without script"
    shot("report.png")
    logout()

    step("an RA officer of another province is refused")
    login("ra-hn")
    assert not d.find_elements(By.CSS_SELECTOR, f"[data-request-id='{request_id}']")
    d.get(f"{BASE}/requests/{request_id}")
    assert el("error-title").text == "Không tìm thấy", d.page_source[:2000]
    assert not els("action-submit")
    shot("refused.png")
    logout()

    step("the public search shows the certificate, the script as text")
    el("search-query").send_keys("Phạm Văn Cường")
    follow(el("search-submit"))
    results = els("search-result")
    assert results, d.page_source[:3000]
    mine = [r for r in results if r.get_attribute("data-serial") == serial]
    assert mine, f"serial {serial} not found"
    holder = mine[0].find_element(By.CSS_SELECTOR, "[data-testid=search-holder]").text
    assert holder == plan["subscriber"], holder
    assert mine[0].find_element(By.CSS_SELECTOR, "[data-testid=search-status]").text == "còn hiệu lực"
    no_alert()
    shot("search.png")
    p7b = mine[0].find_element(By.CSS_SELECTOR, "[data-testid=download-p7b]").get_attribute("href")
    assert p7b.endswith(f"/certs/{serial}.p7b"), p7b
    # The browser would save it; the test fetches the same address and hands it to openssl.
    import ssl
    import urllib.request
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(p7b, context=insecure) as r:
        assert r.headers["Content-Type"].startswith("application/pkcs7-mime"), r.headers
        path = os.path.join(SHOTS, "chain.p7b")
        with open(path, "wb") as f:
            f.write(r.read())
    print(f"p7b {path}", flush=True)

    step("a search by the name's words in another order and case finds it too")
    d.get(BASE + "/search")
    el("search-query").send_keys("CƯỜNG phạm")
    follow(el("search-submit"))
    assert [r for r in els("search-result") if r.get_attribute("data-serial") == serial], \
        d.page_source[:3000]

    step("the CA admin verifies the audit log and adds and disables an organisation")
    login("quan-tri")
    follow(el("nav-audit"))
    assert els("audit-row"), d.page_source[:2000]
    follow(el("audit-verify"))
    chain = el("audit-chain")
    assert chain.get_attribute("data-intact") == "true", chain.text
    assert chain.text.startswith("Nhật ký nguyên vẹn"), chain.text
    shot("audit.png")
    follow(el("nav-admin"))
    el("org-id").send_keys("so-yt-dn")
    el("org-name").send_keys("Sở Y tế Đà Nẵng")
    el("org-province").send_keys("DN")
    follow(el("org-submit"))
    row = d.find_element(By.CSS_SELECTOR, "[data-testid=org-row][data-org-id='so-yt-dn']")
    assert "Sở Y tế Đà Nẵng" in row.text, row.text
    shot("admin.png")
    follow(row.find_element(By.CSS_SELECTOR, "[data-testid=org-remove]"))
    assert not d.find_elements(By.CSS_SELECTOR, "[data-org-id='so-yt-dn']")
    assert el("admin-notice").text == "Đã ngừng hoạt động."
    logout()

    step("a phone's width")
    d.set_window_size(390, 844)
    d.get(BASE + "/")
    width = d.execute_script("return document.documentElement.scrollWidth")
    assert width <= 390, f"the home page scrolls sideways at 390 px: {width}"
    shot("phone.png")
    d.set_window_size(1280, 1000)
    d.get(BASE + "/search?q=" + serial)

    step("the language switch")
    follow(el("lang-switch"))
    assert d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    assert "Log in" in d.page_source
    d.get(BASE + "/search?q=" + serial)
    assert els("search-result")[0].find_element(By.CSS_SELECTOR, "[data-testid=search-status]").text == "valid"
    shot("english.png")
    print("ok", flush=True)
except Exception:
    shot("failure.png")
    print(d.current_url, file=sys.stderr)
    raise
finally:
    d.quit()
