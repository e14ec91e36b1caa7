"""The documentation site: ``mkdocs build --strict`` succeeds (every page in the nav, every link and anchor
resolves, mkdocstrings finds every ``:::`` target), every local link and image of the built HTML points at a
file of the site, and a real headless browser (Debian's ``chromium``) renders the index, a strategy page and
the "Which strategy?" page with their code blocks and images.

The site is built once per session (about 10 s on 2 cores). Without the docs extras the tests skip
(``pip install -e '.[docs]'``); without chromium the browser test skips (``apt-get install chromium``, or
``make docs-check``, which installs it).
"""

import os
import re
import shutil
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS_MODULES = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
#: pages the browser renders: the index, one strategy page and the decision guide (the page with a figure)
RENDERED = ("index.html", "strategies/canonicalization/index.html", "which-strategy/index.html")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """The site as ``mkdocs build --strict`` writes it (built once per test session)."""
    for module in DOCS_MODULES:
        pytest.importorskip(module, reason=f"the docs need {module}: pip install -e '.[docs]'")
    site = tmp_path_factory.mktemp("docs") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return site


def mkdocs_config() -> dict:
    """``mkdocs.yml`` as plain strings, lists and dicts."""
    yaml = pytest.importorskip("yaml")
    return yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)


class _Tags(HTMLParser):
    """The tags of one HTML page: ``(tag, attributes)`` in document order, and every ``id``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        self.tags.append((tag, attributes))
        if "id" in attributes:
            self.ids.add(attributes["id"])


def parse(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    return parser


def local_target(page: Path, url: str, site: Path, root: str = "/") -> tuple[Path, str] | None:
    """The file of the site (and the fragment) a link of ``page`` points at; ``None`` for external links.

    ``root`` is the path of the site's URL: absolute links (``404.html`` has them) start with it.
    """
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or url.startswith(("mailto:", "javascript:", "data:")):
        return None
    path = unquote(parts.path)
    if path.startswith("/"):
        assert path.startswith(root), f"{page.relative_to(site)}: {url!r} is outside the site's path {root}"
        target = (site / path.removeprefix(root)).resolve()
    else:
        target = (page.parent / path).resolve() if path else page
    if parts.path.endswith("/") or target.is_dir():
        target = target / "index.html"
    assert target.is_relative_to(site.resolve()), f"{page.relative_to(site)}: {url!r} leaves the site"
    return target, unquote(parts.fragment)


def links(page: Path) -> list[str]:
    """Every ``href`` and ``src`` of a page (``<a>``, ``<link>``, ``<script>``, ``<img>``...)."""
    return [attributes[name] for _, attributes in parse(page.read_text()).tags
            for name in ("href", "src") if attributes.get(name)]


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's header (raises if the file is not a PNG)."""
    header = path.read_bytes()[:24]
    assert header[:8] == PNG_SIGNATURE and header[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


@pytest.mark.slow  # the session's site build
def test_mkdocs_build_is_strict_clean(site):
    assert (site / "index.html").is_file()
    for page in ("strategies/remul", "groups-and-actions", "which-strategy", "api/wrap", "api/metrics",
                 "api/compare", "api/lightning", "api/progress", "api/training"):
        assert (site / page / "index.html").is_file(), page
    rendered = {
        "api/wrap": "symwrap.wrap.wrap",
        "api/compare": "symwrap.compare.compare",
        "api/lightning": "symwrap.lightning.SymmetricLightningModule",
        "api/progress": "symwrap.progress.progress_bar",
        "api/training": "symwrap.training.callbacks.EarlyStopping",
    }
    for page, identifier in rendered.items():
        html = (site / page / "index.html").read_text()
        assert f'id="{identifier}"' in html, f"mkdocstrings rendered no {identifier} on {page}"


def test_every_public_module_has_an_api_page():
    """The modules of the public API (``tests/test_layout.py``), ``symwrap.compare`` and ``symwrap.diagnosis``
    are each rendered by a ``:::`` block of a page of the API reference that is in the nav."""
    from test_layout import PUBLIC_MODULES

    nav = str(mkdocs_config()["nav"])
    documented = set()
    for page in (ROOT / "docs" / "api").glob("*.md"):
        if f"api/{page.name}" in nav:
            documented |= set(re.findall(r"^::: ([\w.]+)", page.read_text(), re.M))
    missing = {module for module in PUBLIC_MODULES | {"symwrap.compare", "symwrap.diagnosis"}
               if not any(name == module or name.startswith(module + ".") for name in documented)}
    assert not missing, f"no page of docs/api renders {sorted(missing)}"


def test_the_site_is_hosted_where_the_project_says():
    tomllib = pytest.importorskip("tomllib")
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    config = mkdocs_config()
    assert urls["Documentation"] == config["site_url"], "pyproject's Documentation URL is not mkdocs' site_url"
    assert urls["Source"] == config["repo_url"]
    nav = str(config["nav"])
    assert "which-strategy.md" in nav and "which-strategy.md" in (ROOT / "docs" / "index.md").read_text()


@pytest.mark.slow  # the session's site build
def test_every_local_link_and_image_of_the_site_exists(site):
    root = urlsplit(mkdocs_config()["site_url"]).path
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 20, pages
    ids = {}
    broken = []
    checked = 0
    for page in pages:
        for url in links(page):
            found = local_target(page, url, site, root)
            if found is None:
                continue
            target, fragment = found
            checked += 1
            if not target.is_file():
                broken.append(f"{page.relative_to(site)}: {url} (no {target.relative_to(site.resolve())})")
            elif fragment and target.suffix == ".html":
                if target not in ids:
                    ids[target] = parse(target.read_text()).ids
                if fragment not in ids[target]:
                    broken.append(f"{page.relative_to(site)}: {url} (no id {fragment!r} there)")
    assert checked > 1000, checked
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_walk_finds_a_broken_link(tmp_path):
    """The link walk itself: a missing page, a missing image and a missing anchor are all found."""
    (tmp_path / "a").mkdir()
    page = tmp_path / "a" / "index.html"
    page.write_text('<p id="here"><a href="../b/">b</a><img src="x.png"><a href="#there">t</a><a href="#here">h</a>'
                    '<a href="https://example.org/">e</a></p>')
    targets = [local_target(page, url, tmp_path) for url in links(page)]
    assert targets[-1] is None
    assert [t.relative_to(tmp_path.resolve()).as_posix() for t, _ in targets[:-1]] == [
        "b/index.html", "a/x.png", "a/index.html", "a/index.html"]
    assert not any(t.is_file() for t, _ in targets[:2])
    assert {"there", "here"} - parse(page.read_text()).ids == {"there"}


def browser() -> str:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    reason = "no headless browser: apt-get install chromium (make docs-check installs it)"
    if os.environ.get("SYMWRAP_REQUIRE_BROWSER"):
        pytest.fail(reason)
    pytest.skip(reason)


def rendered_dom(executable: str, page: Path, profile: Path) -> str:
    """The DOM after the page's scripts ran, as chromium serialises it."""
    result = subprocess.run(
        [executable, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}",
         "--virtual-time-budget=3000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0 and "<html" in result.stdout, result.stderr[-2000:]
    return result.stdout


@pytest.mark.slow  # the site build, then one chromium per page
@pytest.mark.parametrize("page", RENDERED)
def test_a_headless_browser_renders_code_blocks_and_images(site, page, tmp_path):
    executable = browser()
    dom = parse(rendered_dom(executable, site / page, tmp_path / "profile"))
    tags = [tag for tag, _ in dom.tags]
    assert tags.count("pre") >= 1 and "code" in tags, f"{page}: no code block in the rendered DOM"
    # mkdocs-material's JavaScript adds a copy button to every code block (the built HTML has none): the page's
    # scripts ran in the browser
    copy_buttons = [a for tag, a in dom.tags if tag == "button" and a.get("data-md-type") == "copy"]
    assert 'data-md-type="copy"' not in (site / page).read_text()
    blocks = tags.count("pre")
    assert len(copy_buttons) == blocks, f"{page}: {len(copy_buttons)} copy buttons for {blocks} code blocks"
    assert "md-search__input" in " ".join(a.get("class", "") for _, a in dom.tags), f"{page}: no theme header"
    images = [a["src"] for tag, a in dom.tags if tag == "img"]
    if page.startswith("which-strategy"):
        assert images, f"{page}: the figure is missing from the rendered DOM"
    for src in images:
        target, _ = local_target(site / page, src, site)
        width, height = png_size(target)
        assert width > 100 and height > 100, (src, width, height)
