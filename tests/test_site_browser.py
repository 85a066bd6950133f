"""The published sites in a real browser (headless Chromium from the distribution's packages):
sorting works from a header's button (focusable from the keyboard), nothing overflows the page at
1280 px or in a narrow window (500 px, the narrowest headless Chromium opens; wide tables scroll
inside their own container), with every folded table open, and every image loads.

Each page is copied beside itself with a probe script appended, which does the checks in the
page and writes what it found into the DOM; `chromium --dump-dom` prints that DOM. No driver,
no network. Skipped, saying why, where no Chromium is installed (`.ci/run` installs it where it can).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from iclbench.site import write_site

ROOT = Path(__file__).resolve().parent.parent
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
BROWSER = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)

pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (apt-get install chromium)")

PROBE = """
<script>
window.addEventListener("load", function () {
  var out = {};
  document.querySelectorAll("details").forEach(function (d) { d.open = true; });  // folded tables too
  var images = Array.prototype.slice.call(document.images);
  images.forEach(function (img) { img.loading = "eager"; });
  Promise.all(images.map(function (img) {
    return img.complete ? Promise.resolve() : new Promise(function (done) { img.onload = img.onerror = done; });
  })).then(function () {
    out.images = images.length;
    out.broken = images.filter(function (img) { return !(img.naturalWidth > 0); }).map(function (img) { return img.src; });
    out.width = window.innerWidth;
    out.scrollWidth = document.documentElement.scrollWidth;
    var sorted = [];
    document.querySelectorAll("table.sortable").forEach(function (table) {
      var heads = table.tHead.rows[0].cells;
      for (var i = 0; i < heads.length; i++) {
        var cells = Array.prototype.slice.call(table.tBodies[0].rows).map(function (r) { return r.cells[i]; });
        var numbers = cells.filter(function (c) { return c && c.hasAttribute("data-sort"); });
        if (numbers.length < 2) { continue; }
        var button = heads[i].querySelector("button");
        function column() {
          return Array.prototype.slice.call(table.tBodies[0].rows).map(function (r) { return r.cells[i]; })
            .filter(function (c) { return c && c.hasAttribute("data-sort"); })
            .map(function (c) { return parseFloat(c.getAttribute("data-sort")); });
        }
        button.focus();
        var focused = document.activeElement === button;
        button.click();
        var up = column();
        button.click();
        var down = column();
        sorted.push({focused: focused, up: up, down: down, aria: heads[i].getAttribute("aria-sort")});
        break;
      }
    });
    out.sorted = sorted;
    var pre = document.createElement("pre");
    pre.id = "probe-result";
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  });
});
</script>
"""


def probe(page: Path, width: int) -> dict:
    """Load `page` at `width` px with the probe and return what it found."""
    copy = page.with_name(page.stem + ".probe.html")
    copy.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    try:
        done = subprocess.run([BROWSER, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                               "--allow-file-access-from-files", f"--window-size={width},900",
                               "--virtual-time-budget=20000", "--dump-dom", copy.as_uri()],
                              capture_output=True, text=True, timeout=120)
    finally:
        copy.unlink()
    found = re.search(r'<pre id="probe-result">(.*?)</pre>', done.stdout, re.S)
    assert found, (page.name, done.stderr[-2000:])
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The committed garg board re-rendered into its site (figures, tables, findings), in a copy."""
    folder = tmp_path_factory.mktemp("browser") / "garg"
    shutil.copytree(ROOT / "leaderboard" / "garg", folder, ignore=shutil.ignore_patterns("site"))
    write_site(folder)
    return folder / "site"


@pytest.mark.parametrize("width", [1280, 500])
def test_pages_fit_sort_and_show_every_image(site, width):
    pages = sorted(p for p in site.glob("*.html"))
    assert len(pages) >= 2
    for page in pages:
        found = probe(page, width)
        assert found["width"] == width, (page.name, found["width"])
        assert found["scrollWidth"] <= width, (page.name, width, found["scrollWidth"])  # tables scroll inside
        assert not found["broken"], (page.name, found["broken"])
        assert found["sorted"], (page.name, found)
        for column in found["sorted"]:
            assert column["focused"], page.name  # the header's button takes the keyboard focus
            assert column["up"] == sorted(column["up"]) and column["down"] == sorted(column["down"], reverse=True)
            assert column["aria"] == "descending"
    index = probe(site / "index.html", width)
    assert index["images"] >= 1  # the figures of no single suite are on the index
