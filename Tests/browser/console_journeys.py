"""The console's two user journeys in a real headless Chromium, driven by Selenium.

Scenario 1, an admin (alice at nanoidp): log in, register a model and a version, upload its file
from the browser, mark it complete, create a model service on one GPU of the fixture node with an
authentication method and a limit, watch it become ready, chat with it in the playground.
Scenario 2, a user (bob): log in, see no admin page (403), create an API key, use it with the
official `openai` client, see the usage appear. Besides: a form the API refuses shows the API's
message by its field, and a session that is no longer valid goes to the login and back.

Every page is loaded with no console error and no content-security-policy violation (Chromium
logs both as SEVERE); a screenshot of each page goes to the folder given.

Scenario 0, with a second server that has no identity provider: the console's login with an
API key.

Usage: python console_journeys.py BASE MODEL_FILE SCREENSHOT_DIR [PLAIN_BASE PLAIN_ADMIN_KEY]
"""

import os
import sys
import time

import openai
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

BASE, MODEL_FILE, SHOTS = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(SHOTS, exist_ok=True)
PAGES = []  # (name, path) of every screenshot, printed at the end


def browser(width=1280, height=900):
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    # Nothing leaves this machine: every host name but loopback resolves to nothing (nanoidp's
    # login page asks a CDN for its stylesheet), and Chromium's own background traffic is off.
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}", "--no-first-run", "--disable-extensions",
                     "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-domain-reliability", "--no-default-browser-check"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")), options=options)
    driver.set_page_load_timeout(60)
    return driver


def check_console(driver, where, status=None):
    """No console error and no CSP violation since the last check. With `status`, the page itself
    must have been answered with that status (a refused form is a 400, an admin page a user asks
    for a 403): Chromium logs a document's 4xx as an error, which is then the one expected."""
    severe = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    # The browser asks every page for a favicon, which Gantry does not have: not the page's error.
    severe = [message for message in severe if "favicon.ico" not in message]
    if status is not None:
        expected = f"Failed to load resource: the server responded with a status of {status}"
        own = [message for message in severe if message.startswith(driver.current_url.split("#")[0].split("?")[0]) and expected in message]
        assert own, f"{where}: the page was not answered with {status}: {severe}"
        severe = [message for message in severe if message not in own]
    assert not severe, f"{where}: console errors or CSP violations: {severe}"


def shot(driver, name):
    path = os.path.join(SHOTS, f"{name}.png")
    driver.save_screenshot(path)
    PAGES.append((name, driver.current_url, path))


def visit(driver, path, name=None, expect_status_title=None):
    driver.get(BASE + path)
    check_console(driver, path)
    if name:
        shot(driver, name)


def wait_for(what, condition, seconds=120, interval=0.5):
    deadline = time.time() + seconds
    last = None
    while time.time() < deadline:
        try:
            last = condition()
            if last:
                return last
        except WebDriverException as error:  # the page changed under the lookup: look again
            last = error
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last})")


def log_in(driver, username, password, path="/console"):
    driver.get(BASE + path)
    # Gantry sent the browser to nanoidp's login form.
    wait_for("the provider's login form", lambda: driver.find_elements(By.NAME, "username"))
    # The provider's page is not Gantry's: what it logged (its CDN stylesheet, unreachable from
    # here) is not counted.
    driver.get_log("browser")
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.NAME, "password").submit()
    wait_for("the console after login", lambda: driver.current_url.startswith(BASE + "/console"))
    check_console(driver, "after login")


def gone(element):
    """A wait condition: `element` has left the page (the browser went on to the next one).
    Chromium says so as a stale reference or, when the old page is mid-teardown, as a node that
    "does not belong to the document": either means the same here."""
    def check(_):
        try:
            element.is_enabled()
            return False
        except WebDriverException:
            return True
    return check


def submit(driver, form_id, navigates=True):
    """Submits the form and, where it posts to the server, waits for the next page."""
    form = driver.find_element(By.ID, form_id)
    form.find_element(By.CSS_SELECTOR, "button").click()
    if navigates:
        WebDriverWait(driver, 60).until(gone(form))


def fill(driver, form_id, **fields):
    form = driver.find_element(By.ID, form_id)
    for name, value in fields.items():
        element = form.find_element(By.NAME, name)
        if element.tag_name == "select":
            Select(element).select_by_value(value)
        else:
            element.clear()
            element.send_keys(value)
    return form


def scenario_admin():
    driver = browser()
    try:
        log_in(driver, "alice", "alice-pw")
        assert driver.current_url.rstrip("/") == BASE + "/console", driver.current_url
        assert "Nodes and GPUs" in driver.page_source
        shot(driver, "01-overview-empty")

        # A name the API refuses: its message appears by the field, the form keeps what was typed.
        visit(driver, "/console/models")
        fill(driver, "register-model", name="Not A Name", description="bad")
        submit(driver, "register-model")
        error = driver.find_element(By.ID, "error-name").text
        assert "DNS label" in error, error
        assert driver.find_element(By.NAME, "description").get_attribute("value") == "bad"
        check_console(driver, "refused model form", status=400)
        shot(driver, "02-models-refused")

        fill(driver, "register-model", name="smollm2", description="SmolLM2 135M Instruct")
        Select(driver.find_element(By.ID, "register-model").find_element(By.NAME, "task")).select_by_value("chat")
        submit(driver, "register-model")
        wait_for("the model page", lambda: driver.current_url.endswith("/console/models/smollm2"))
        # A context limit that is not a number: the API's message by that field.
        fill(driver, "register-version", format="gguf", context_limit="lots", version="1")
        submit(driver, "register-version")
        error = driver.find_element(By.ID, "error-context_limit").text
        assert "context_limit" in error, error
        check_console(driver, "refused version form", status=400)
        fill(driver, "register-version", format="gguf", context_limit="1024", version="1",
             description="Q4_1 quantisation", input_schema='{"type": "object"}')
        submit(driver, "register-version")
        wait_for("version 1", lambda: driver.find_elements(By.ID, "version-1"))
        check_console(driver, "version registered")

        # Upload the model file from the browser, with its progress bar, then mark it complete.
        driver.find_element(By.CSS_SELECTOR, "form.upload input[type=file]").send_keys(os.path.abspath(MODEL_FILE))
        driver.find_element(By.CSS_SELECTOR, "form.upload button").click()
        name = os.path.basename(MODEL_FILE)
        # The page reloads once every file is stored; the file is then a row of the version's table.
        wait_for("the uploaded file in the version's table",
                 lambda: name in driver.find_element(By.CSS_SELECTOR, "#version-1 table").text, seconds=180)
        check_console(driver, "after upload")
        shot(driver, "03-model-uploaded")
        driver.find_element(By.CSS_SELECTOR, "#version-1 form[action$='/complete'] button").click()
        wait_for("the version to be ready",
                 lambda: "ready" in driver.find_element(By.CSS_SELECTOR, "#version-1 h3").text)
        check_console(driver, "version complete")

        # Create the service on one H100 of the fixture node, API keys and console sessions
        # allowed, at most 100 requests a minute.
        visit(driver, "/console/services")
        assert "Free right now" in driver.page_source
        form = fill(driver, "create-service", name="chat", model="smollm2@1", gpus="1",
                    gpu_name="NVIDIA H100 80GB HBM3", requests_per_minute="100")
        for box in form.find_elements(By.NAME, "method"):
            if not box.is_selected():
                box.click()
        shot(driver, "04-services-create")
        submit(driver, "create-service")
        wait_for("the service page", lambda: driver.current_url.endswith("/console/services/chat"))

        def ready():
            driver.refresh()
            return "ready" in driver.find_element(By.ID, "service-status").text
        wait_for("the service to be ready", ready, seconds=180, interval=1)
        check_console(driver, "service ready")
        assert "requests a minute 100" in driver.page_source
        instances = driver.find_element(By.ID, "instances").text
        assert "1" in instances and "ready" in instances, instances
        # The engine log tail fills in from the page's script.
        wait_for("the engine log", lambda: driver.find_element(By.ID, "engine-log").text not in ("", "loading…"))

        # Chat in the playground, streamed, with tokens and timings.
        visit(driver, "/console/playground?service=chat")
        fill(driver, "playground", message="Say hello.", max_tokens="12")
        submit(driver, "playground", navigates=False)
        wait_for("the streamed answer",
                 lambda: driver.find_element(By.ID, "answer").get_attribute("data-done") in ("true", "error"))
        failure = driver.find_element(By.ID, "answer-error")
        assert not failure.is_displayed(), failure.text
        assert driver.find_element(By.ID, "answer").text.strip(), "an empty answer"
        completion = driver.find_element(By.ID, "stat-completion").text
        assert completion.isdigit() and int(completion) > 0, completion
        assert driver.find_element(By.ID, "stat-ttft").text.endswith("ms")
        check_console(driver, "playground")
        shot(driver, "05-playground")
        # Unstreamed too.
        driver.find_element(By.NAME, "stream").click()
        submit(driver, "playground", navigates=False)
        wait_for("the whole answer", lambda: driver.find_element(By.ID, "stat-latency").text.endswith("ms"))
        check_console(driver, "playground unstreamed")

        # Actions on the service: a limit, then a second replica, then back to one.
        visit(driver, "/console/services/chat")
        fill(driver, "limits", requests_per_minute="50")
        submit(driver, "limits")
        assert "requests a minute 50" in driver.page_source
        check_console(driver, "limit set")
        fill(driver, "scale", replicas="2")
        submit(driver, "scale")

        def two_ready():
            driver.refresh()
            return driver.find_element(By.ID, "instances").text.count("ready") == 2
        wait_for("a second ready instance", two_ready, seconds=120, interval=1)
        fill(driver, "scale", replicas="1")
        submit(driver, "scale")
        wait_for("the scale-down", lambda: "1 of 1" in driver.find_element(By.ID, "service-status").text
                 or driver.refresh(), seconds=60, interval=1)
        check_console(driver, "scaled")

        # A key with limits, and its limits changed by the admin.
        visit(driver, "/console/keys")
        fill(driver, "create-key", name="ci", requests_per_minute="10")
        submit(driver, "create-key")
        assert driver.find_element(By.ID, "new-key").text.startswith("gk_")
        assert "requests a minute 10" in driver.find_element(By.ID, "keys").text
        row = driver.find_element(By.XPATH, "//table[@id='keys']//tr[td[normalize-space()='ci']]")
        row.find_element(By.CSS_SELECTOR, "details.key-limits summary").click()
        limits = row.find_element(By.CSS_SELECTOR, "details.key-limits form")
        field = limits.find_element(By.NAME, "requests_per_minute")
        field.clear()
        field.send_keys("20")
        limits.find_element(By.CSS_SELECTOR, "button").click()
        WebDriverWait(driver, 60).until(gone(limits))
        assert "requests a minute 20" in driver.find_element(By.ID, "keys").text
        check_console(driver, "key limits")

        # Pages with what the service did: its charts, the overview, resources, users, usage.
        visit(driver, "/console/services/chat")
        wait_for("the engine log", lambda: driver.find_element(By.ID, "engine-log").text not in ("", "loading…"))
        assert driver.find_elements(By.ID, "chart-chat-latency")
        shot(driver, "06-service")
        visit(driver, "/console")
        assert driver.find_elements(By.ID, "service-chat")
        assert "service chat" in driver.find_element(By.ID, "nodes").text, "the GPU held by the service"
        shot(driver, "07-overview")
        visit(driver, "/console/resources", "08-resources")
        visit(driver, "/console/users", "09-users")
        visit(driver, "/console/keys", "10-admin-keys")
        visit(driver, "/console/usage", "11-admin-usage")
        assert "chat" in driver.find_element(By.ID, "usage-daily").text

        # A session that is no longer valid goes to the login and back to the page it asked for.
        driver.add_cookie({"name": "gantry_session", "value": "expired-or-forged", "path": "/"})
        driver.get(BASE + "/console/resources")
        wait_for("the provider's login form", lambda: driver.find_elements(By.NAME, "username"))
        driver.get_log("browser")
        driver.find_element(By.NAME, "username").send_keys("alice")
        driver.find_element(By.NAME, "password").send_keys("alice-pw")
        driver.find_element(By.NAME, "password").submit()
        wait_for("the way back", lambda: driver.current_url == BASE + "/console/resources")
        assert driver.find_elements(By.ID, "gpus"), "the page itself after the new login"
        check_console(driver, "after the new login")

        # At a phone's width the pages still work.
        driver.set_window_size(390, 844)
        visit(driver, "/console/services/chat", "12-service-phone")
    finally:
        driver.quit()


def scenario_user():
    driver = browser()
    try:
        log_in(driver, "bob", "bob-pw")
        # A user's home is the services they may use.
        assert driver.current_url == BASE + "/console/services", driver.current_url
        assert "chat" in driver.find_element(By.ID, "services").text
        shot(driver, "13-user-services")
        # Admin pages are refused.
        for path in ("/console/resources", "/console/users", "/console/models"):
            driver.get(BASE + path)
            assert driver.find_elements(By.ID, "forbidden"), path
            check_console(driver, path, status=403)
        shot(driver, "14-user-forbidden")

        visit(driver, "/console/keys")
        fill(driver, "create-key", name="laptop", expires_days="30")
        submit(driver, "create-key")
        key = wait_for("the new key", lambda: driver.find_element(By.ID, "new-key").text)
        assert key.startswith("gk_"), key
        check_console(driver, "key created")
        shot(driver, "15-user-key")

        client = openai.OpenAI(base_url=BASE + "/v1", api_key=key, max_retries=0)
        answer = client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "Hi"}], max_tokens=8)
        assert answer.usage.completion_tokens > 0

        def usage_shown():
            driver.get(BASE + "/console/usage")
            return "chat" in driver.find_element(By.ID, "usage-daily").text \
                and "laptop" in driver.find_element(By.ID, "usage-keys").text
        wait_for("bob's usage", usage_shown, seconds=30, interval=1)
        check_console(driver, "usage")
        shot(driver, "16-user-usage")
        csv = driver.find_element(By.ID, "usage-csv").get_attribute("href")
        assert "/console/usage.csv" in csv
        visit(driver, "/console/playground", "17-user-playground")
    finally:
        driver.quit()


def scenario_key_login(base, key):
    """A server without an identity provider: its console logs in with an API key."""
    driver = browser()
    try:
        driver.get(base + "/console/resources")
        form = wait_for("the key login", lambda: driver.find_element(By.ID, "key-login"))
        check_console(driver, "key login page", status=401)
        shot(driver, "00-key-login")
        form.find_element(By.NAME, "key").send_keys("gk_wrong_0000000000000000000000000000000000000000")
        form.find_element(By.CSS_SELECTOR, "button").click()
        error = wait_for("the refusal", lambda: form.find_element(By.CSS_SELECTOR, ".form-error").text)
        assert "key" in error.lower(), error
        driver.get_log("browser")  # the refused fetch's 401, which the page shows as text
        field = form.find_element(By.NAME, "key")
        field.clear()
        field.send_keys(key)
        form.find_element(By.CSS_SELECTOR, "button").click()
        # The login page was served at the page asked for; after the login it is that page.
        wait_for("the page asked for", lambda: driver.find_elements(By.ID, "nodes"))
        assert driver.current_url == base + "/console/resources", driver.current_url
        assert "NVIDIA A10G" in driver.find_element(By.ID, "gpus").text
        check_console(driver, "after the key login")
        shot(driver, "00-resources-after-key-login")
    finally:
        driver.quit()


if len(sys.argv) > 5:
    scenario_key_login(sys.argv[4], sys.argv[5])
scenario_admin()
scenario_user()
for name, url, path in PAGES:
    print(f"{name}: {url} -> {path}")
print(f"console journeys passed: {len(PAGES)} screenshots in {SHOTS}")
