"""Labelled requests for the fraud model: real user agents, generated header shapes.

User agents are real, from registry packages pinned in package.json / package-lock.json:
  - humans: npm `user-agents` (dist/user-agents.json: 10,000 browser profiles collected from real
    visits, with the browser's language and device category);
  - bots: npm `crawler-user-agents` (crawler-user-agents.json: the `instances` of every pattern).
The headers around them are GENERATED here, by client family, from what each client sends by
default (documented per function below). Header shapes of real traffic are not in any registry;
these generators are the assumption the evaluation rests on, and EVALUATION.md says so.

Each request is a `RequestFacts` JSON object (`method`, `url`, `headers`, `platform`) as the
edge builds it, with `label` (1 = automated), `family` and `ua_source` added for the report.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MODULES = HERE / "node_modules"

HOST = "https://shop.example"
PAGES = ["/", "/products", "/products/42", "/products/42?color=red", "/cart", "/search?q=shoes",
         "/blog/2024/winter-sale", "/checkout", "/account/orders", "/about"]
CRAWLER_PATHS = ["/robots.txt", "/sitemap.xml", "/", "/products", "/products/42", "/blog/2024/winter-sale",
                 "/feed.xml", "/about"]
PROBE_PATHS = ["/wp-login.php", "/.env", "/.git/config", "/xmlrpc.php", "/admin", "/phpmyadmin/",
               "/cgi-bin/test.cgi", "/config.json"]
# Residential and mobile carriers (Deutsche Telekom, Comcast, Orange, BT, Vodafone, Verizon, AT&T,
# Telefonica, Free, KPN) and the hosting providers fraud.rs lists.
RESIDENTIAL_ASNS = [3320, 7922, 3215, 2856, 3209, 701, 7018, 3352, 12322, 1136]
HOSTING_ASNS = [16509, 14618, 15169, 396982, 8075, 14061, 16276, 24940, 63949, 20473, 45102, 31898]
BEACON = "/_stellwerk/feedback"


def load_user_agents() -> tuple[list[dict], list[str]]:
    """(browser profiles, crawler user agents), deduplicated, in file order."""
    browsers = json.loads((MODULES / "user-agents/dist/user-agents.json").read_text())
    seen: set[str] = set()
    humans = []
    for profile in browsers:
        ua = profile["userAgent"]
        if ua not in seen:
            seen.add(ua)
            humans.append(profile)
    crawlers: list[str] = []
    for entry in json.loads((MODULES / "crawler-user-agents/crawler-user-agents.json").read_text()):
        for ua in entry.get("instances", []):
            if ua not in seen:
                seen.add(ua)
                crawlers.append(ua)
    return humans, crawlers


def os_of(ua: str) -> str | None:
    """The `sec-ch-ua-platform` value a UA implies (the same mapping as fraud.rs)."""
    lower = ua.lower()
    if "windows" in lower:
        return "Windows"
    if "android" in lower:
        return "Android"
    if "cros" in lower:
        return "Chrome OS"
    if any(d in lower for d in ("iphone", "ipad", "ipod")):
        return "iOS"
    if "mac os x" in lower or "macintosh" in lower:
        return "macOS"
    if "linux" in lower:
        return "Linux"
    return None


def chromium_major(ua: str) -> int | None:
    match = re.search(r"chrome/(\d+)", ua.lower())
    return int(match.group(1)) if match else None


def accept_language(language: str | None, rng: np.random.Generator) -> str:
    tag = language or "en-US"
    base = tag.split("-")[0]
    forms = [f"{tag},{base};q=0.9", f"{tag},{base};q=0.9,en-US;q=0.8,en;q=0.7", f"{tag}", f"{tag},{base};q=0.5"]
    if base != "en":
        forms.append(f"{tag},{base};q=0.9,en;q=0.8")
    return str(rng.choice(forms))


def brands(ua: str, major: int, headless: bool = False) -> str:
    lower = ua.lower()
    if headless:
        first = f'"HeadlessChrome";v="{major}"'
    elif "edg/" in lower:
        first = f'"Microsoft Edge";v="{major}"'
    elif "opr/" in lower:
        first = f'"Opera";v="{max(major - 15, 1)}"'
    elif "samsungbrowser" in lower:
        first = '"Samsung Internet";v="27.0"'
    else:
        first = f'"Google Chrome";v="{major}"'
    return f'{first}, "Chromium";v="{major}", "Not_A Brand";v="24"'


def platform_facts(rng: np.random.Generator, hosting_share: float) -> dict:
    """ASN and TLS version as Cloudflare reports them; absent for a quarter of requests of every
    class (platforms or local runs that do not report them), so their mere presence means nothing."""
    if rng.random() < 0.25:
        return {}
    hosting = rng.random() < hosting_share
    asn = int(rng.choice(HOSTING_ASNS if hosting else RESIDENTIAL_ASNS))
    return {"asn": asn, "tlsVersion": "TLSv1.3" if rng.random() < 0.85 else "TLSv1.2", "country": "DE"}


def request(method: str, path: str, headers: list[tuple[str, str]], platform: dict, **meta) -> dict:
    return {"method": method, "url": HOST + path, "headers": [[k, v] for k, v in headers], "platform": platform, **meta}


def browser_request(profile: dict, rng: np.random.Generator, *, ua: str | None = None,
                    hosting_share: float = 0.03) -> dict:
    """A real browser: a page navigation (75%) or the page's beacon (25%, sendBeacon or fetch).

    Chromium ≥ 90 outside iOS sends sec-ch-ua / -mobile / -platform consistent with its UA;
    Chromium ≥ 80, Firefox ≥ 90 and Safari ≥ 16.4 send Sec-Fetch-*; Firefox and Safari send no
    client hints. Referer, cookies and the fetch site vary as they do between first and later
    pages of a visit.
    """
    ua = ua or profile["userAgent"]
    lower = ua.lower()
    major = chromium_major(ua)
    chromium = major is not None and not any(d in lower for d in ("iphone", "ipad"))
    firefox = "firefox/" in lower
    headers: list[tuple[str, str]] = []
    hints = []
    if chromium and major >= 90:
        hints = [("sec-ch-ua", brands(ua, major)),
                 ("sec-ch-ua-mobile", "?1" if "mobile" in lower else "?0"),
                 ("sec-ch-ua-platform", f'"{os_of(ua) or "Unknown"}"')]
    language = accept_language(profile.get("language"), rng)
    returning = rng.random() < 0.5
    cookie = "stellwerk_id=" + "".join(rng.choice(list("0123456789abcdef"), 32)) if returning else None
    if returning and rng.random() < 0.5:
        cookie = (cookie + "; " if cookie else "") + "_ga=GA1.1.123.456"
    if rng.random() < 0.25:
        # The beacon: sendBeacon (no-cors, text/plain) or fetch keepalive (cors, JSON).
        beacon_fetch = rng.random() < 0.3
        headers += hints
        headers += [("user-agent", ua), ("accept", "*/*"), ("accept-language", language),
                    ("content-type", "application/json" if beacon_fetch else "text/plain;charset=UTF-8"),
                    ("origin", HOST), ("referer", HOST + str(rng.choice(PAGES))),
                    ("sec-fetch-site", "same-origin"), ("sec-fetch-mode", "cors" if beacon_fetch else "no-cors"),
                    ("sec-fetch-dest", "empty")]
        if cookie:
            headers.append(("cookie", cookie))
        return request("POST", BEACON, headers, platform_facts(rng, hosting_share))
    site = str(rng.choice(["none", "same-origin", "cross-site"], p=[0.4, 0.45, 0.15]))
    if firefox:
        accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    elif chromium:
        accept = ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,"
                  "*/*;q=0.8,application/signed-exchange;v=b3;q=0.7")
    else:
        accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    headers += hints
    if chromium or firefox:
        headers.append(("upgrade-insecure-requests", "1"))
    headers += [("user-agent", ua), ("accept", accept)]
    fetch_metadata = (chromium and major >= 80) or firefox or not (chromium or firefox)
    if fetch_metadata:
        headers += [("sec-fetch-site", site), ("sec-fetch-mode", "navigate")]
        if site == "none" or rng.random() < 0.8:
            headers.append(("sec-fetch-user", "?1"))
        headers.append(("sec-fetch-dest", "document"))
    headers.append(("accept-language", language))
    if site != "none" and rng.random() < 0.9:
        referer = HOST + str(rng.choice(PAGES)) if site == "same-origin" else "https://www.google.com/"
        headers.append(("referer", referer))
    if cookie:
        headers.append(("cookie", cookie))
    if rng.random() < 0.1:
        headers.append(("dnt", "1"))
    return request("GET", str(rng.choice(PAGES)), headers, platform_facts(rng, hosting_share))


def crawler_request(ua: str, rng: np.random.Generator) -> dict:
    """A crawler from the list: its UA with the few headers crawlers send (Accept, sometimes
    Accept-Language and From), or (20%) a rendering crawler's Chrome-like navigation without
    client hints."""
    headers = [("user-agent", ua)]
    if rng.random() < 0.2:
        headers += [("upgrade-insecure-requests", "1"),
                    ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"),
                    ("sec-fetch-site", "none"), ("sec-fetch-mode", "navigate"), ("sec-fetch-dest", "document"),
                    ("accept-language", "en-US")]
    else:
        accept = rng.choice(["*/*", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                             "text/html", "none"])
        if accept != "none":
            headers.append(("accept", str(accept)))
        if rng.random() < 0.3:
            headers.append(("accept-language", str(rng.choice(["en-US,en;q=0.5", "en", "*"]))))
        if rng.random() < 0.1:
            headers.append(("from", "crawler@example.com"))
    method = "HEAD" if rng.random() < 0.05 else "GET"
    return request(method, str(rng.choice(CRAWLER_PATHS)), headers, platform_facts(rng, 0.9))


# HTTP libraries with their default User-Agent and default headers (in the order they send them).
def _libraries(rng: np.random.Generator) -> list[tuple[str, list[tuple[str, str]]]]:
    v = lambda lo, hi: int(rng.integers(lo, hi))  # noqa: E731
    return [
        ("curl", [("user-agent", f"curl/{v(7, 9)}.{v(0, 80)}.{v(0, 3)}"), ("accept", "*/*")]),
        ("wget", [("user-agent", f"Wget/1.{v(19, 25)}.{v(0, 5)}"), ("accept", "*/*"),
                  ("accept-encoding", "identity")]),
        ("python-requests", [("user-agent", f"python-requests/2.{v(20, 33)}.{v(0, 4)}"),
                             ("accept-encoding", "gzip, deflate"), ("accept", "*/*")]),
        ("python-urllib", [("accept-encoding", "identity"), ("user-agent", f"Python-urllib/3.{v(8, 14)}")]),
        ("aiohttp", [("accept", "*/*"), ("accept-encoding", "gzip, deflate"),
                     ("user-agent", f"Python/3.{v(8, 14)} aiohttp/3.{v(8, 12)}.{v(0, 10)}")]),
        ("httpx", [("accept", "*/*"), ("accept-encoding", "gzip, deflate"),
                   ("user-agent", f"python-httpx/0.{v(23, 29)}.{v(0, 3)}")]),
        ("go", [("user-agent", str(rng.choice(["Go-http-client/1.1", "Go-http-client/2.0"]))),
                ("accept-encoding", "gzip")]),
        ("node-fetch", [("accept", "*/*"), ("user-agent", "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)"),
                        ("accept-encoding", "gzip,deflate")]),
        ("node-undici", [("accept", "*/*"), ("accept-language", "*"), ("sec-fetch-mode", "cors"),
                         ("user-agent", "node"), ("accept-encoding", "gzip, deflate")]),
        ("axios", [("accept", "application/json, text/plain, */*"), ("user-agent", f"axios/1.{v(0, 8)}.{v(0, 9)}"),
                   ("accept-encoding", "gzip, compress, deflate, br")]),
        ("okhttp", [("accept-encoding", "gzip"), ("user-agent", f"okhttp/4.{v(9, 13)}.{v(0, 3)}")]),
        ("java", [("user-agent", str(rng.choice([f"Java-http-client/{v(11, 22)}", "Apache-HttpClient/4.5.14 (Java/17.0.9)"])))]),
        ("perl", [("user-agent", f"libwww-perl/6.{v(50, 78)}")]),
        ("scrapy", [("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                    ("accept-language", "en"), ("user-agent", f"Scrapy/2.{v(5, 12)}.0 (+https://scrapy.org)"),
                    ("accept-encoding", "gzip, deflate, br")]),
        ("guzzle", [("user-agent", f"GuzzleHttp/7"), ("accept", "*/*")]),
        ("postman", [("user-agent", f"PostmanRuntime/7.{v(26, 43)}.0"), ("accept", "*/*"),
                     ("cache-control", "no-cache"), ("accept-encoding", "gzip, deflate, br")]),
    ]


def library_request(rng: np.random.Generator, spoof_ua: str | None = None) -> dict:
    """An HTTP library with its defaults; with `spoof_ua`, the same client claiming a browser's UA,
    half the time also copying Accept and Accept-Language from a browser (what scrapers do)."""
    libraries = _libraries(rng)
    name, headers = libraries[int(rng.integers(len(libraries)))]
    family = "library"
    if spoof_ua:
        family = "library-spoofed-ua"
        headers = [(k, spoof_ua if k == "user-agent" else val) for k, val in headers]
        if not any(k == "user-agent" for k, _ in headers):
            headers.append(("user-agent", spoof_ua))
        if rng.random() < 0.5:
            headers = [(k, val) for k, val in headers if k not in ("accept", "accept-language")]
            headers += [("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                        ("accept-language", "en-US,en;q=0.9")]
    roll = rng.random()
    if roll < 0.1:
        method, path = "GET", str(rng.choice(PROBE_PATHS))
    elif roll < 0.2:
        method, path = "POST", BEACON
        headers.append(("content-type", "application/json"))
    else:
        method, path = ("HEAD" if rng.random() < 0.05 else "GET"), str(rng.choice(PAGES))
    return request(method, path, headers, platform_facts(rng, 0.75), family=family, client=name)


def headless_request(rng: np.random.Generator, spoof_ua: str | None = None) -> dict:
    """Headless Chrome driven by Puppeteer or Playwright.

    Defaults: `HeadlessChrome/N` in the UA and in `sec-ch-ua`, platform Linux, Chrome's navigation
    headers; Puppeteer sends no Accept-Language by default, Playwright `en-US`. With `spoof_ua`
    (page.setUserAgent with a desktop browser's UA): the client hints still come from the real
    browser, so they name HeadlessChrome (40%), or the bare Chromium brands on Linux while the UA
    claims another OS or version (35%); 25% also fix the hints (stealth plugins) and differ only in
    Accept-Language and the network they come from.
    """
    major = int(rng.integers(112, 132))
    real_ua = (f"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
               f"HeadlessChrome/{major}.0.0.0 Safari/537.36")
    ua = spoof_ua or real_ua
    playwright = rng.random() < 0.5
    family = "headless-spoofed-ua" if spoof_ua else "headless"
    hints_major = major
    headless_brand = True
    platform = "Linux"
    if spoof_ua:
        roll = rng.random()
        if roll < 0.4:
            pass
        elif roll < 0.75:
            headless_brand = False
        else:
            headless_brand = False
            hints_major = chromium_major(spoof_ua) or major
            platform = os_of(spoof_ua) or "Linux"
    hints = []
    if chromium_major(ua) is not None or not spoof_ua:
        brand_list = (f'"HeadlessChrome";v="{hints_major}", "Chromium";v="{hints_major}", "Not_A Brand";v="24"'
                      if headless_brand else f'"Chromium";v="{hints_major}", "Not_A Brand";v="24"')
        hints = [("sec-ch-ua", brand_list), ("sec-ch-ua-mobile", "?0"), ("sec-ch-ua-platform", f'"{platform}"')]
    headers = hints + [
        ("upgrade-insecure-requests", "1"), ("user-agent", ua),
        ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"),
        ("sec-fetch-site", "none"), ("sec-fetch-mode", "navigate"), ("sec-fetch-user", "?1"),
        ("sec-fetch-dest", "document")]
    if playwright:
        headers.append(("accept-language", "en-US"))
    if rng.random() < 0.2:
        headers = hints + [("user-agent", ua), ("accept", "*/*"), ("content-type", "text/plain;charset=UTF-8"),
                           ("origin", HOST), ("referer", HOST + "/"), ("sec-fetch-site", "same-origin"),
                           ("sec-fetch-mode", "no-cors"), ("sec-fetch-dest", "empty")]
        if playwright:
            headers.append(("accept-language", "en-US"))
        return request("POST", BEACON, headers, platform_facts(rng, 0.8), family=family,
                       client="playwright" if playwright else "puppeteer")
    return request("GET", str(rng.choice(PAGES)), headers, platform_facts(rng, 0.8), family=family,
                   client="playwright" if playwright else "puppeteer")


def selenium_request(profile: dict, rng: np.random.Generator) -> dict:
    """A full, headed browser under WebDriver on a server: headers exactly a real browser's.
    Only the network (hosting ASN, 85%) tells it apart; the model is not expected to catch all."""
    req = browser_request(profile, rng, hosting_share=0.85)
    req["family"] = "webdriver-headed"
    return req


# Share of each bot family among automated requests.
BOT_MIX = {
    "crawler": 0.35,
    "library": 0.22,
    "library-spoofed-ua": 0.13,
    "headless": 0.12,
    "headless-spoofed-ua": 0.12,
    "webdriver-headed": 0.06,
}


def generate(humans: list[dict], crawlers: list[str], n_humans: int, n_bots: int,
             rng: np.random.Generator) -> list[dict]:
    """`n_humans` browser requests and `n_bots` automated ones, drawing UAs from the given pools
    (the train and test pools are disjoint)."""
    out = []
    desktop_chrome = [p for p in humans if chromium_major(p["userAgent"]) and p.get("deviceCategory") == "desktop"]
    for _ in range(n_humans):
        profile = humans[int(rng.integers(len(humans)))]
        req = browser_request(profile, rng)
        req["family"] = "browser"
        req["ua_source"] = "user-agents"
        out.append(req)
    families = list(BOT_MIX)
    shares = np.array([BOT_MIX[f] for f in families])
    for family in rng.choice(families, size=n_bots, p=shares / shares.sum()):
        spoof = lambda: str(desktop_chrome[int(rng.integers(len(desktop_chrome)))]["userAgent"])  # noqa: E731
        if family == "crawler":
            req = crawler_request(crawlers[int(rng.integers(len(crawlers)))], rng)
            req["family"], req["ua_source"] = "crawler", "crawler-user-agents"
        elif family == "library":
            req = library_request(rng)
            req["ua_source"] = "generated"
        elif family == "library-spoofed-ua":
            req = library_request(rng, spoof_ua=spoof())
            req["ua_source"] = "user-agents"
        elif family == "headless":
            req = headless_request(rng)
            req["ua_source"] = "generated"
        elif family == "headless-spoofed-ua":
            req = headless_request(rng, spoof_ua=spoof())
            req["ua_source"] = "user-agents"
        else:
            req = selenium_request(humans[int(rng.integers(len(humans)))], rng)
            req["ua_source"] = "user-agents"
        out.append(req)
    for i, req in enumerate(out):
        req["label"] = 0 if i < n_humans else 1
    return out
