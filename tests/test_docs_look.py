"""The built site looks right in a browser: math typeset, images present, API pages filled.

``tests/test_docs.py`` reads the HTML that Sphinx wrote; this module opens the same site
(the session fixture ``site`` of ``tests/conftest.py``, built once) in headless Chromium,
which runs the pages' JavaScript, and checks what a reader would see:

* the DOM after JavaScript (``--dump-dom``) of the landing page, one tutorial and the API
  page of ``sysid.fit``: MathJax typeset every equation, every ``<img>`` is a PNG or SVG
  file of the site that is not empty, the tutorial shows an output figure, and the API
  page lists the parameters of the docstring;
* screenshots (``--screenshot``, 1280 x 1600) of the same pages, which must not be blank.

It needs a Chromium binary (Debian: ``apt-get install chromium``) and a local MathJax
(Debian's ``libjs-mathjax``: the site is then built against it, see ``conftest.py``,
because the browser here has no network to reach MathJax's CDN). Where either is missing
(e.g. a fresh CI machine), the tests are skipped with the reason. The screenshots are
written to pytest's temporary folder; the path is printed (``pytest -s``) to look at them.
"""

from __future__ import annotations

import base64
import html
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

import sysid

#: The names under which Chromium (or Chrome) is installed.
BROWSERS = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
CHROMIUM = next((path for path in map(shutil.which, BROWSERS) if path), None)
#: Milliseconds of virtual time the pages get to run their JavaScript (MathJax) before the
#: DOM is dumped or the screenshot taken; virtual time runs faster than the clock when idle.
VIRTUAL_TIME_MS = 20000
#: Seconds one browser run may take on a loaded machine.
BROWSER_TIMEOUT = 180
WINDOW = (1280, 1600)
#: The API page that is opened, and the object whose docstring it renders.
API_PAGE, API_OBJECT = "api/generated/sysid.fit.html", sysid.fit

# Checked here, before any fixture builds the site, so that a machine without a browser
# skips at once.
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium binary (" + ", ".join(BROWSERS) + ") on PATH: "
    "install Debian's chromium (and libjs-mathjax) to check how the site looks")


def _chromium(tmp_path_factory, *args: str) -> subprocess.CompletedProcess:
    """Run headless Chromium with a fresh profile; fail with its stderr if it fails."""
    profile = tmp_path_factory.mktemp("chromium_profile")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--allow-file-access-from-files",      # MathJax loads its fonts from file://
           f"--user-data-dir={profile}", f"--virtual-time-budget={VIRTUAL_TIME_MS}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BROWSER_TIMEOUT)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """The Chromium binary, once it has shown that it runs (a stub, such as Ubuntu's
    snap launcher without snapd, is a reason to skip, not a failure of the site)."""
    try:
        proc = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True,
                              timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"{CHROMIUM} does not run: {err}")
    if proc.returncode != 0 or "chrom" not in proc.stdout.lower():
        pytest.skip(f"{CHROMIUM} does not run: {(proc.stdout + proc.stderr)[-300:]}")
    return CHROMIUM


@pytest.fixture(scope="module")
def local_mathjax(site) -> Path:
    """The local MathJax that the site loads; skip when it loads MathJax from elsewhere
    (its CDN: without Debian's libjs-mathjax, see conftest.py), out of a browser's reach
    in a sandbox without network."""
    index = (site[0] / "index.html").read_text(encoding="utf-8")
    sources = re.findall(r'<script[^>]*src="([^"]*MathJax[^"]*)"', index, flags=re.I)
    assert sources, "the landing page loads no MathJax"
    url = urlparse(html.unescape(sources[0]))
    if url.scheme != "file" or not Path(unquote(url.path)).is_file():
        pytest.skip(f"the site loads MathJax from {sources[0]}, not from a local copy "
                    "(install Debian's libjs-mathjax: /usr/share/javascript/mathjax)")
    return Path(unquote(url.path))


@pytest.fixture(scope="module")
def tutorial_page(site) -> str:
    """The first tutorial page with executed outputs (a tutorial whose data are missing
    here is shown without them)."""
    for page in sorted((site[0] / "tutorials").glob("[0-9][0-9]_*.html")):
        if "cell_output" in page.read_text(encoding="utf-8"):
            return f"tutorials/{page.name}"
    raise AssertionError("no tutorial page shows executed outputs")


@pytest.fixture(scope="module")
def rendered(site, browser, local_mathjax, tutorial_page, tmp_path_factory):
    """``{page: (DOM after JavaScript, screenshot path)}`` for the three pages."""
    html_dir = site[0]
    shots = tmp_path_factory.mktemp("screenshots")
    out = {}
    for page in ["index.html", tutorial_page, API_PAGE]:
        url = (html_dir / page).as_uri()
        dom = _chromium(tmp_path_factory, "--dump-dom", url).stdout
        shot = shots / (page.replace("/", "_").removesuffix(".html") + ".png")
        _chromium(tmp_path_factory, f"--screenshot={shot}",
                  f"--window-size={WINDOW[0]},{WINDOW[1]}", url)
        out[page] = (dom, shot)
    print(f"screenshots of the site: {shots}")
    return out


class _Images(HTMLParser):
    """Collects the ``src`` of every ``<img>``."""

    def __init__(self):
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs).get("src") or "")


def _image_bytes(page: Path, src: str) -> bytes:
    """The bytes an ``<img src>`` of ``page`` shows: a data: URI or a file of the site."""
    if src.startswith("data:"):
        header, _, payload = src.partition(",")
        return base64.b64decode(payload) if header.endswith(";base64") else \
            unquote(payload).encode()
    url = urlparse(src)
    assert url.scheme in ("", "file"), f"{page.name}: image {src} is not part of the site"
    path = Path(unquote(url.path)) if url.scheme else page.parent / unquote(url.path)
    assert path.is_file(), f"{page.name}: image {src} does not exist ({path})"
    return path.read_bytes()


def _math_count(static_html: str) -> int:
    """Math elements that Sphinx and myst-nb wrote for MathJax to typeset."""
    return len(re.findall(r'class="math notranslate', static_html))


def _typeset_count(dom: str) -> int:
    """Equations MathJax typeset: MathJax 2 keeps each source in a ``math/tex`` script
    beside its output; MathJax 3 and 4 write one ``mjx-container`` each."""
    return (len(re.findall(r'<script type="math/tex', dom))
            + len(re.findall(r"<mjx-container", dom)))


def test_mathjax_typesets_every_equation(rendered, site):
    # Checked over the three pages together: today only the landing page has math.
    for page, (dom, _) in rendered.items():
        expected = _math_count((site[0] / page).read_text(encoding="utf-8"))
        if page == "index.html":
            assert expected > 0, "the landing page has no math to typeset (the model)"
        assert _typeset_count(dom) >= expected, (
            f"{page}: MathJax typeset {_typeset_count(dom)} of {expected} equations")
        # A TeX error: MathJax 2 (with or without its noErrors extension), 3 and 4.
        for error in ['class="merror"', 'class="noError"', "<mjx-merror", "data-mjx-error"]:
            assert error not in dom, f"{page}: MathJax shows a TeX error ({error})"


def test_every_image_is_a_png_or_svg_that_is_not_empty(rendered, site):
    # Checked over the three pages together: the tutorial has figures, the others may not.
    count = 0
    for page, (dom, _) in rendered.items():
        images = _Images()
        images.feed(dom)
        for src in images.sources:
            assert src, f"{page}: an <img> without src"
            data = _image_bytes(site[0] / page, html.unescape(src))
            assert len(data) > 100, f"{page}: image {src} is empty ({len(data)} bytes)"
            assert data.startswith(b"\x89PNG\r\n\x1a\n") or b"<svg" in data[:4000], (
                f"{page}: image {src} is neither PNG nor SVG")
            count += 1
    assert count > 0, "the pages show no image at all"


def test_the_tutorial_shows_an_output_figure(rendered, site, tutorial_page):
    from PIL import Image

    dom, _ = rendered[tutorial_page]
    # myst-nb puts the outputs of each code cell in a "cell_output" container, inside
    # the cell's "cell ..." container; a chunk runs from one to the next cell.
    outputs = re.findall(r'class="cell_output[^"]*"(.*?)(?=class="cell[ "]|\Z)', dom,
                         flags=re.S)
    assert outputs, f"{tutorial_page} shows no cell outputs"
    figures = [src for chunk in outputs
               for src in re.findall(r'<img[^>]*src="([^"]+)"', chunk)]
    assert figures, f"{tutorial_page} shows no figure among its outputs"
    for src in figures:
        data = _image_bytes(site[0] / tutorial_page, html.unescape(src))
        if data.startswith(b"\x89PNG"):
            with Image.open(io.BytesIO(data)) as figure:
                assert min(figure.size) > 50, f"figure {src} is {figure.size} pixels"


def test_the_api_page_lists_the_parameters(rendered):
    from numpydoc.docscrape import FunctionDoc

    dom, _ = rendered[API_PAGE]
    documented = [p.name for p in FunctionDoc(API_OBJECT)["Parameters"]]
    assert len(documented) >= 2, "sysid.fit's docstring lists no parameters"
    assert ">Parameters<" in dom, f"{API_PAGE} has no Parameters section"
    missing = [name for name in documented
               if not re.search(rf"<strong>\**{re.escape(name.lstrip('*'))}</strong>", dom)]
    assert not missing, f"{API_PAGE} does not list the parameters {missing}"


@pytest.mark.parametrize("page", ["index.html", "tutorial", API_PAGE])
def test_screenshots_are_not_blank(rendered, tutorial_page, page):
    from PIL import Image

    page = tutorial_page if page == "tutorial" else page
    _, shot = rendered[page]
    assert shot.is_file() and shot.stat().st_size > 0, f"no screenshot of {page}"
    with Image.open(shot) as image:
        assert image.size == WINDOW, f"{shot.name} is {image.size}, not {WINDOW}"
        colours = image.convert("RGB").getcolors(maxcolors=WINDOW[0] * WINDOW[1])
    most = max(count for count, _ in colours)
    assert len(colours) > 50, f"{shot.name} has {len(colours)} colours: blank?"
    assert most < 0.98 * WINDOW[0] * WINDOW[1], f"{shot.name} is almost one colour"
