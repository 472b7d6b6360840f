"""The page of `hubcat emulator --ui`, driven in headless Chromium through ChromeDriver's
WebDriver protocol (W3C WebDriver, spoken with urllib: no client library needed).

    python3 check.py PAGE_URL CONNECTION_STRING HUBCAT SCREENSHOT

The emulator serves hubs eh1 (2 partitions, consumer group audit) and orders (3), with
a throttle fault. Prints PASS/FAIL lines; exits non-zero if any check failed.
"""

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

PAGE, CS, HUBCAT, SCREENSHOT = sys.argv[1:5]
failed = 0


def check(name, ok, why=""):
    global failed
    if ok:
        print(f"PASS {name}")
    else:
        failed += 1
        print(f"FAIL {name}: {why}")


def http(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """One WebDriver session on a ChromeDriver of its own."""

    def __init__(self):
        self.port = free_port()
        self.profile = tempfile.mkdtemp(prefix="ui-check-")
        self.driver = subprocess.Popen(
            ["chromedriver", f"--port={self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        self.wait_for(lambda: self._ready(), "chromedriver to listen")
        # The flags that keep Chromium off the (closed) network and out of first-run UI.
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1400,900", f"--user-data-dir={self.profile}"]
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}}}
        self.session = http("POST", f"{self.base}/session", caps)["value"]["sessionId"]

    def _ready(self):
        try:
            return http("GET", f"{self.base}/status")["value"]["ready"]
        except OSError:
            return False

    def call(self, method, path, body=None):
        return http(method, f"{self.base}/session/{self.session}{path}", body)["value"]

    def js(self, script, *args):
        return self.call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def click(self, css):
        el = self.call("POST", "/element", {"using": "css selector", "value": css})
        key = next(iter(el))
        self.call("POST", f"/element/{el[key]}/click", {})

    @staticmethod
    def wait_for(test, what, seconds=15):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            value = test()
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"waited {seconds}s for {what}")

    def close(self):
        try:
            http("DELETE", f"{self.base}/session/{self.session}")
        finally:
            self.driver.terminate()
            self.driver.wait()
            shutil.rmtree(self.profile, ignore_errors=True)


def send(hub, lines, *flags):
    out = subprocess.run([HUBCAT, "send", "--connection-string", CS, "--hub", hub,
                          "--key-field", "customer", "--quiet", *flags],
                         input="".join(json.dumps(l) + "\n" for l in lines),
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"hubcat send failed: {out.stderr}")


def partition_of(hub, seq_at_least=0):
    """The partition of `hub` whose last sequence number is at least the one given."""
    state = http("GET", PAGE + "api/state")
    for h in state["hubs"]:
        if h["name"] == hub:
            for p in h["partitions"]:
                if p["last_sequence_number"] >= seq_at_least:
                    return p["id"]
    return None


def body_texts(b):
    return b.js("return [...document.querySelectorAll('.event pre.body')]"
                ".map(e => e.textContent)")


b = Browser()
try:
    b.call("POST", "/url", {"url": PAGE})
    rows = b.wait_for(lambda: b.js(
        "return [...document.querySelectorAll('tr.partition')]"
        ".map(r => r.dataset.hub + '/' + r.dataset.partition)"), "partition rows")
    check("the page loads and lists each hub's partitions",
          rows == ["eh1/0", "eh1/1", "orders/0", "orders/1", "orders/2"], rows)
    groups = b.js("return document.querySelector('.hub[data-hub=eh1] .groups').textContent")
    check("it lists the consumer groups", "$Default" in groups and "audit" in groups, groups)
    faults = b.js("return document.getElementById('faults').textContent")
    check("it lists the faults in force", "throttle,every=1000" in faults, faults)

    # An event published after the page opened, idempotently: the page shows it,
    # with its key and the producer's numbers, once its partition is chosen.
    marker = f"ui-check-{os.getpid()}"
    send("eh1", [{"customer": "c-42", "note": marker}], "--idempotent")
    partition = b.wait_for(lambda: partition_of("eh1"), "the event to be stored")
    b.click(f"tr.partition[data-hub='eh1'][data-partition='{partition}']")
    try:
        texts = b.wait_for(lambda: [t for t in body_texts(b) if marker in t],
                           "the event on the page")
        check("it shows an event that hubcat send just published", True)
    except TimeoutError as e:
        check("it shows an event that hubcat send just published", False, e)
    annotations = b.js("return [...document.querySelectorAll('.event dt')]"
                       ".map(e => e.textContent)")
    check("the event's annotations: partition key and producer sequence number",
          "x-opt-partition-key" in annotations
          and "com.microsoft:producer-sequence-number" in annotations, annotations)
    address = b.js("return location.search")
    check("the chosen partition is kept in the address",
          address == f"?hub=eh1&partition={partition}", address)

    # Live: a second event appears without a reload.
    second = marker + "-second"
    send("eh1", [{"customer": "c-42", "note": second}])
    try:
        b.wait_for(lambda: any(second in t for t in body_texts(b)), "the second event")
        check("the page refreshes live", True)
    except TimeoutError as e:
        check("the page refreshes live", False, e)
    last = b.js("return document.querySelector('tr.partition.selected').children[2].textContent")
    check("the partition's last sequence number follows", last == "1", last)

    # Bodies as hex and as JSON.
    b.click("input[name=body][value=hex]")
    hexed = second.encode().hex()
    try:
        b.wait_for(lambda: any(hexed in t for t in body_texts(b)), "hex bodies")
        check("bodies show as hex", True)
    except TimeoutError as e:
        check("bodies show as hex", False, e)
    b.click("input[name=body][value=json]")
    try:
        b.wait_for(lambda: any('"note": "' + second + '"' in t for t in body_texts(b)),
                   "JSON bodies")
        check("bodies show as indented JSON", True)
    except TimeoutError as e:
        check("bodies show as indented JSON", False, e)
    b.click("input[name=body][value=text]")
    b.wait_for(lambda: any(second in t and "\n" not in t for t in body_texts(b)), "text")

    # Some traffic on the other hub, for the picture.
    send("orders", [{"customer": f"c-{i % 7}", "item": i} for i in range(30)])
    b.wait_for(lambda: "30" == b.js(
        "return String([...document.querySelectorAll('tr.partition[data-hub=orders]')]"
        ".reduce((n, r) => n + Number(r.children[3].textContent), 0))"), "orders' events")
    shot = base64.b64decode(b.call("GET", "/screenshot"))
    with open(SCREENSHOT, "wb") as f:
        f.write(shot)
    check("a screenshot is taken", shot[:8] == b"\x89PNG\r\n\x1a\n", shot[:8])
finally:
    b.close()

sys.exit(1 if failed else 0)
