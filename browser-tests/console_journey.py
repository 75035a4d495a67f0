#!/usr/bin/env python3
"""The directory console in a real browser (issue 15): Debian's Chromium, driven through WebDriver
(chromedriver) by Selenium, against a live `certbound up`.

The seed's whole certificate journey, by a person who has only the console and a terminal: sign in
(a wrong token first), create an organisation and an application with roles, make a key and CSR
with the command the page shows, upload it (a CSR for another software first: refused by the
field), download the signed chain and check it with `openssl verify` against ca.pem, do the same
for the signing certificate, take the Postman variables from the page, and use them with
`certbound` to register and get a token that creates a card. Then revoke the transport certificate
in the console and see the Cards API refuse the token. Also: a form posted without its CSRF token,
the pages' response headers, the page at 400 px wide. axe-core runs on every page; a serious or
critical violation fails. A screenshot of each page goes to the screenshots directory.

Usage: console_journey.py BASE DATA_DIR CERTBOUND_BIN WORK SHOTS AUTHZ CARDS
"""

import json
import os
import pathlib
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.support.ui import WebDriverWait

BASE, DATA, BIN, WORK, SHOTS, AUTHZ, CARDS = sys.argv[1:8]
WORK = pathlib.Path(WORK)
SHOTS = pathlib.Path(SHOTS)
SHOTS.mkdir(parents=True, exist_ok=True)
CA = pathlib.Path(DATA) / "ca.pem"
ADMIN = (pathlib.Path(DATA) / "admin.token").read_text().strip()
AXE = (pathlib.Path(__file__).parent / "node_modules/axe-core/axe.min.js").read_text()
DOWNLOADS = WORK / "downloads"
DOWNLOADS.mkdir(parents=True, exist_ok=True)
KEYS = WORK / "keys"
KEYS.mkdir(parents=True, exist_ok=True)
TLS = ssl.create_default_context(cafile=str(CA))

shot_number = 0
axe_checked = []


def step(text):
    print(f"--- {text}", flush=True)


def fail(text):
    print(f"FAIL: {text}", flush=True)
    sys.exit(1)


def check(condition, text):
    if not condition:
        fail(text)


options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"]:
    options.add_argument(argument)
options.add_experimental_option(
    "prefs", {"download.default_directory": str(DOWNLOADS), "download.prompt_for_download": False}
)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(DOWNLOADS)})
driver.implicitly_wait(2)


def page_done(name):
    """A screenshot of the page, and axe-core over it: serious or critical violations fail."""
    global shot_number
    shot_number += 1
    path = SHOTS / f"{shot_number:02d}-{name}.png"
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, max(700, min(height + 140, 2400)))
    driver.save_screenshot(str(path))
    driver.execute_script(AXE)
    violations = driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        axe.run(document).then(
          (result) => done(result.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
                                                          nodes: v.nodes.map((n) => n.target.join(' '))}))),
          (error) => done([{id: 'axe-error', impact: 'critical', help: String(error), nodes: []}]));
        """
    )
    bad = [v for v in violations if v["impact"] in ("serious", "critical")]
    for violation in violations:
        print(f"    axe {violation['impact']}: {violation['id']} ({violation['help']}) {violation['nodes'][:3]}")
    check(not bad, f"axe-core found serious or critical violations on {name}")
    axe_checked.append(name)
    driver.set_window_size(width, 1000)
    print(f"    page {name}: {driver.title!r}, screenshot {path.name}, axe clean", flush=True)


def fill(field_id, text):
    element = driver.find_element(By.ID, field_id)
    element.clear()
    element.send_keys(text)


def gone(element):
    """A wait condition: `element` no longer belongs to the page. Chromium reports that either as
    a stale element or (some versions) as an inspector error saying the node is not in the
    document; both mean the page was replaced."""
    def check(_):
        try:
            element.is_enabled()
            return False
        except (StaleElementReferenceException, WebDriverException):
            return True
    return check


def navigating(click):
    """Clicks, then waits until the next page has replaced this one and finished loading."""
    old = driver.find_element(By.TAG_NAME, "html")
    click()
    WebDriverWait(driver, 10).until(gone(old))
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return document.readyState") == "complete")


def submit(form_action_suffix):
    forms = driver.find_elements(By.CSS_SELECTOR, "form")
    for form in forms:
        if form.get_attribute("action").endswith(form_action_suffix):
            navigating(form.find_element(By.CSS_SELECTOR, "button[type=submit]").click)
            return
    fail(f"no form posting to {form_action_suffix} on {driver.current_url}")


def follow(link_text):
    navigating(driver.find_element(By.LINK_TEXT, link_text).click)


def text_of(element_id):
    return driver.find_element(By.ID, element_id).text.strip()


def api(method, path, body=None):
    """The admin API, for what the journey needs from outside the console."""
    request = urllib.request.Request(
        BASE + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, context=TLS) as response:
        return json.loads(response.read())


def run(command, cwd=None, expect=0):
    result = subprocess.run(command, cwd=cwd, shell=isinstance(command, str), capture_output=True, text=True)
    if expect is not None and result.returncode != expect:
        fail(f"{command} exited {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}")
    return result


def wait_for_download(name_suffix, before):
    for _ in range(100):
        found = [p for p in DOWNLOADS.iterdir() if p.name.endswith(name_suffix) and p not in before]
        if found:
            return found[0]
        time.sleep(0.1)
    fail(f"no download ending in {name_suffix}")


def certificate(kind, statement_url, organisation_id, statement_id):
    """'New certificate': run the page's command, upload the CSR, download and verify the chain."""
    driver.get(statement_url)
    follow(f"New {kind} certificate")
    command = text_of("csr-command")
    check(command.startswith("openssl req -new -newkey rsa:2048"), f"CSR command: {command}")
    check(f"CN={statement_id}" in command and f"OU={organisation_id}" in command, "the command's subject")
    page_done(f"new-{kind}-certificate")
    step(f"{kind}: the page's command, run in a terminal")
    run(command, cwd=KEYS)
    csr = KEYS / f"{statement_id}_{kind}.csr"
    key = KEYS / f"{statement_id}_{kind}.key"
    check(csr.exists() and key.exists(), "the command wrote the key and the CSR")
    driver.find_element(By.ID, "CsrFile").send_keys(str(csr))
    submit(f"/certificates/new/{kind}")
    check(driver.title.startswith("Certificate rts"),
          f"after upload: {driver.title}: {driver.find_element(By.TAG_NAME, 'main').text}")
    kid = text_of("kid")
    page_done(f"{kind}-certificate")
    before = set(DOWNLOADS.iterdir())
    driver.find_element(By.LINK_TEXT, "Download the PEM chain").click()
    chain = wait_for_download(f"_{kind}.pem", before)
    time.sleep(0.2)
    verified = run(["openssl", "verify", "-CAfile", str(CA), "-untrusted", str(chain), str(chain)])
    check(": OK" in verified.stdout, f"openssl verify: {verified.stdout}")
    step(f"{kind}: downloaded {chain.name}, openssl verify against ca.pem: OK")
    return key, chain, kid, driver.current_url


try:
    step("sign in: a wrong admin token first")
    driver.get(BASE + "/console/")
    check(driver.current_url.endswith("/console/sign-in"), f"not sent to sign in: {driver.current_url}")
    page_done("sign-in")
    fill("AdminToken", "not-the-admin-token")
    submit("/console/sign-in")
    check("admin token is wrong" in text_of("AdminToken-error"), "the wrong token's refusal by its field")
    page_done("sign-in-refused")
    fill("AdminToken", ADMIN)
    submit("/console/sign-in")
    check(driver.current_url.endswith("/console/organisations"), f"after sign-in: {driver.current_url}")
    cookie = driver.get_cookie("__Host-certbound_console")
    check(cookie and cookie["httpOnly"] and cookie["secure"] and cookie.get("sameSite") == "Strict",
          f"session cookie: {cookie}")
    page_done("organisations")

    step("a form posted without its CSRF token is refused")
    fill("OrganisationName", "Forged Ltd")
    driver.execute_script("document.querySelector('main form input[name=csrf]').remove()")
    submit("/console/organisations")
    check(driver.title.startswith("Form refused"), f"no CSRF refusal: {driver.title}")
    check(not any(o["OrganisationName"] == "Forged Ltd" for o in api("GET", "/organisations")), "it was created")

    step("create an organisation")
    driver.get(BASE + "/console/organisations")
    fill("OrganisationName", "Test Company 1")
    fill("RegistrationNumber", "00000001")
    fill("Country", "GB")
    submit("/console/organisations")
    organisation_id = text_of("org_id")
    page_done("organisation")

    step("New application, with roles")
    follow("New application")
    fill("ClientName", "Test Company App 1")
    fill("Version", "1.0")
    fill("HomepageUri", "https://example.com")
    fill("LogoUri", "https://example.com/logo.png")
    fill("RedirectUri", "https://example.com/callback")
    fill("Description", "Test Company App 1")
    for role in ("programme-manager", "ws"):
        driver.find_element(By.ID, f"role-{role}").click()
    page_done("new-application")
    submit("/applications")
    statement_url = driver.current_url
    statement_id = text_of("ssa_id")
    check(statement_url.endswith(statement_id), f"statement page: {statement_url}")
    page_done("software-statement")

    step("a CSR for another software is refused, by the CSR field")
    other = api("POST", f"/organisations/{organisation_id}/softwarestatements", {
        "ClientName": "Other App", "Version": "1", "HomepageUri": "https://example.com",
        "LogoUri": "https://example.com/logo.png", "RedirectUri": ["https://example.com/cb"], "Roles": ["card-reader"]})
    foreign = KEYS / "foreign.csr"
    run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(KEYS / "foreign.key"),
         "-out", str(foreign), "-subj", f"/C=GB/O=Test Company 1/OU={organisation_id}/CN={other['SoftwareStatementId']}"])
    driver.get(statement_url)
    follow("New transport certificate")
    driver.find_element(By.ID, "CsrFile").send_keys(str(foreign))
    submit("/certificates/new/transport")
    refusal = text_of("Csr-error")
    check(other["SoftwareStatementId"] in refusal or statement_id in refusal, f"the refusal: {refusal}")
    page_done("csr-refused")

    transport_key, transport_chain, transport_kid, transport_url = certificate(
        "transport", statement_url, organisation_id, statement_id)
    signing_key, signing_chain, signing_kid, _ = certificate(
        "signing", statement_url, organisation_id, statement_id)

    step("the Postman variables, from the page")
    driver.get(statement_url)
    variables = {name: text_of(name) for name in ("org_id", "ssa_id", "client_id", "kid")}
    print("    " + json.dumps(variables))
    check(variables["org_id"] == organisation_id and variables["ssa_id"] == statement_id, "ids")
    check(variables["kid"] == signing_kid, "kid is the signing certificate's")
    copy = driver.find_element(By.CSS_SELECTOR, "button[data-copy-from=kid]")
    check(copy.is_displayed(), "the copy buttons' script did not run under the page's CSP")
    page_done("postman-variables")

    step("certbound with those variables: register, token, a card")
    profile = WORK / "profile"
    profile.mkdir(exist_ok=True)
    for source, name in ((transport_chain, "transport.pem"), (transport_key, "transport.key"),
                         (signing_chain, "signing.pem"), (signing_key, "signing.key")):
        (profile / name).write_bytes(source.read_bytes())
        os.chmod(profile / name, 0o600)
    (profile / "ca.pem").write_bytes(CA.read_bytes())
    (profile / "profile.toml").write_text("\n".join([
        f'org_id = "{variables["org_id"]}"',
        f'ssa_id = "{variables["ssa_id"]}"',
        f'client_id = "{variables["client_id"]}"',
        f'kid = "{variables["kid"]}"',
        f'directory = "{BASE}"',
        f'authz = "{AUTHZ}"',
        f'cards = "{CARDS}"',
        'ca = "ca.pem"',
        'transport_certificate = "transport.pem"',
        'transport_key = "transport.key"',
        'signing_certificate = "signing.pem"',
        'signing_key = "signing.key"',
    ]) + "\n")
    os.chmod(profile / "profile.toml", 0o600)
    run([BIN, "register", "--profile", str(profile)])
    run([BIN, "token", "--profile", str(profile)])
    card = json.loads(run([BIN, "call", "--profile", str(profile), "POST", "/cards", "--data", json.dumps({
        "cardType": "Virtual", "cardProduct": 10001, "customerReference": "console",
        "cardHolder": {"firstName": "Ada", "lastName": "Lovelace", "dateOfBirth": "1990-12-10"},
        "address": {"addressLine1": "1 High Street", "city": "London", "postCode": "EC1A 1BB", "country": "GBR"}})]).stdout)
    public_token = card["publicToken"]
    run([BIN, "call", "--profile", str(profile), "GET", f"/cards/{public_token}"])
    step(f"card {public_token} made and read with the token")

    step("revoke the transport certificate in the console; the token is refused")
    driver.get(transport_url)
    follow("Revoke")
    page_done("revoke-confirmation")
    submit("/revoke")
    check("Revoked" in driver.find_element(By.CSS_SELECTOR, ".status-Revoked").text, "not shown revoked")
    page_done("certificate-revoked")
    refused = None
    for _ in range(30):
        refused = run([BIN, "call", "--profile", str(profile), "GET", f"/cards/{public_token}"], expect=None)
        if refused.returncode != 0:
            break
        time.sleep(0.1)
    check(refused.returncode == 1 and "401" in refused.stderr, f"after revocation: {refused.stderr}")
    print("    " + refused.stderr.strip().splitlines()[0])

    step("the organisation page shows the trail's events")
    driver.get(f"{BASE}/console/organisations/{organisation_id}")
    events = driver.find_element(By.ID, "audit").find_element(By.XPATH, "following-sibling::*[1]").text
    check("certificate_revoked" in events and "software_statement_created" in events, f"events: {events}")
    page_done("organisation-events")

    step("the page at 400 px wide")
    driver.set_window_size(400, 1000)
    driver.get(statement_url)
    overflow = driver.execute_script("return document.documentElement.scrollWidth")
    check(overflow <= 400, f"the page is {overflow} px wide at 400")
    driver.save_screenshot(str(SHOTS / f"{shot_number + 1:02d}-software-statement-400px.png"))
    driver.set_window_size(1280, 1000)

    step("keyboard: the first Tab reaches the skip link")
    driver.get(statement_url)
    driver.find_element(By.TAG_NAME, "body").send_keys("\t")
    check(driver.switch_to.active_element.text == "Skip to the content", "skip link not first")

    step("response headers")
    with urllib.request.urlopen(BASE + "/console/sign-in", context=TLS) as response:
        csp = response.headers["Content-Security-Policy"]
        check("frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, f"CSP: {csp}")
        check(response.headers["X-Content-Type-Options"] == "nosniff", "nosniff")

    step("sign out")
    submit("/console/sign-out")
    driver.get(BASE + "/console/organisations")
    check(driver.current_url.endswith("/console/sign-in"), "still signed in after sign-out")
    print(f"console journey: OK ({len(axe_checked)} pages checked by axe-core, screenshots in {SHOTS})")
finally:
    driver.quit()
