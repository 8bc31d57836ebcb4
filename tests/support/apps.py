"""Local sites whose pages need JavaScript (or not), and the exact result a crawl of each gives.

- `spa_site()`: a single-page app. Every route answers the same shell (an empty `#root`, a
  `<noscript>` asking for JavaScript); /app.js draws each route's content and links, one of them
  from JSON it fetches, one link added after a delay, and the /router route moves the page with
  history.pushState before drawing a relative link (which resolves against the new location).
- `hybrid_site()`: half the pages are static HTML, half are shells drawn by /hybrid.js.
- `static_site()`: static pages only, some with scripts (analytics, a server-rendered `#app`
  with content): none of them is an application shell.
Each `AppSite` knows its pages (path -> title, a phrase only its content has, rendered or not).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from tests.support.site import LocalSite, Page, html_page

SHELL = (
    b'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>App</title></head><body>'
    b"<noscript>You need to enable JavaScript to run this app.</noscript>"
    b'<div id="root"></div><script src="%s"></script></body></html>'
)
JS = "application/javascript"

# route -> (title, text, links). Drawn by the script; links are what the page shows.
SPA_ROUTES: dict[str, tuple[str, str, list[str]]] = {
    "/": ("Home", "Welcome to the orchard handbook.", ["/docs", "/about", "/router"]),
    "/docs": ("Docs", "", ["/docs/install", "/docs/usage"]),  # text from /api/docs.json
    "/docs/install": ("Install", "Plant the saplings in spring.", ["/"]),
    "/docs/usage": ("Usage", "Prune the branches every winter.", ["/docs"]),
    "/about": ("About", "A handbook written by orchard keepers.", []),
    "/late": ("Late", "This page is linked only after a delay.", []),
    "/router/home": ("Router home", "The router moved here with pushState.", ["guide"]),
    "/router/guide": ("Router guide", "Reached through a relative link of a pushed route.", []),
}

SPA_JS = """
const routes = %s;
function draw(path) {
  const r = routes[path];
  if (r) document.title = r[0];
  const root = document.getElementById("root");
  if (!r) { root.innerHTML = "<h1>Not found</h1>"; return; }
  const links = r[2].map(h => `<li><a href="${h}">${h}</a></li>`).join("");
  root.innerHTML = `<main><h1>${r[0]}</h1><p id="text">${r[1]}</p><ul>${links}</ul></main>`;
}
let path = location.pathname;
if (path === "/router") { history.pushState({}, "", "/router/home"); path = "/router/home"; }
draw(path);
if (path === "/docs") {
  fetch("/api/docs.json").then(r => r.json()).then(d => { document.getElementById("text").textContent = d.text; });
}
if (path === "/") {
  setTimeout(() => {
    const a = document.createElement("a"); a.href = "/late"; a.textContent = "Late page";
    document.querySelector("main ul").appendChild(a);
  }, 150);
}
"""


@dataclass
class AppSite:
    site: LocalSite
    # path -> (title, a phrase of its content, whether render: auto renders it)
    expected: dict[str, tuple[str, str, bool]] = field(default_factory=dict)

    def urls(self) -> set[str]:
        return {self.site.url(p) for p in self.expected}


def spa_site() -> AppSite:
    site = LocalSite()
    shell = Page(body=SHELL % b"/app.js")
    for path in [*SPA_ROUTES, "/router"]:
        if path != "/router/home":  # only ever reached by pushState
            site.pages[path] = shell
    site.pages["/app.js"] = Page(body=(SPA_JS % json.dumps(SPA_ROUTES)).encode(), content_type=JS)
    site.pages["/api/docs.json"] = Page(
        body=json.dumps({"text": "Everything about growing apples, fetched as JSON."}).encode(),
        content_type="application/json",
    )
    expected = {
        path: (title, text or "Everything about growing apples", True)
        for path, (title, text, _) in SPA_ROUTES.items()
        if path != "/router/home"
    }
    expected["/router"] = ("Router home", "The router moved here with pushState.", True)
    return AppSite(site, expected)


HYBRID_JS = """
const pages = %s;
const p = pages[location.pathname];
document.title = p[0];
document.getElementById("app").innerHTML =
  `<main><h1>${p[0]}</h1><p>${p[1]}</p><ul>${p[2].map(h => `<li><a href="${h}">${h}</a></li>`).join("")}</ul></main>`;
"""


def hybrid_site() -> AppSite:
    site = LocalSite()
    static = {
        "/": ("Hybrid home", "A home page served as plain HTML.", ["/s/1", "/app/1", "/app/2"]),
        "/s/1": ("Static one", "Static pages need no script at all.", ["/s/2", "/app/3"]),
        "/s/2": ("Static two", "Another static page about pears.", []),
    }
    drawn = {
        "/app/1": ("App one", "Drawn by a script about plums.", ["/s/2", "/app/2"]),
        "/app/2": ("App two", "Drawn by a script about cherries.", ["/app/3"]),
        "/app/3": ("App three", "Drawn by a script about quinces.", ["/s/1"]),
    }
    for path, (title, text, links) in static.items():
        site.pages[path] = Page(body=html_page(title, links, text))
    shell = SHELL.replace(b'id="root"', b'id="app"') % b"/hybrid.js"
    for path in drawn:
        site.pages[path] = Page(body=shell)
    site.pages["/hybrid.js"] = Page(body=(HYBRID_JS % json.dumps(drawn)).encode(), content_type=JS)
    expected = {p: (t, x, False) for p, (t, x, _) in static.items()}
    expected.update({p: (t, x, True) for p, (t, x, _) in drawn.items()})
    return AppSite(site, expected)


def static_site() -> AppSite:
    site = LocalSite()
    analytics = '<script>window.dataLayer = [];</script><script src="/analytics.js"></script>'
    pages = {
        "/": ("Static home", "A short page.", ["/a", "/b", "/ssr"]),
        "/a": ("Page A", "Very little text.", ["/b"]),
        "/b": ("Page B", "Also brief.", []),
    }
    for path, (title, text, links) in pages.items():
        body = html_page(title, links, text).replace(b"</body>", analytics.encode() + b"</body>")
        site.pages[path] = Page(body=body)
    # Server-rendered into the app's root: content and links are there without scripts.
    site.pages["/ssr"] = Page(
        body=(
            b'<!doctype html><html lang="en"><head><title>Server rendered</title></head><body>'
            b'<div id="app"><main><h1>Server rendered</h1><p>Rendered on the server already.</p>'
            b'<a href="/a">A</a></main></div><script src="/hydrate.js"></script></body></html>'
        )
    )
    site.pages["/analytics.js"] = Page(body=b"window.tracked = true;", content_type=JS)
    site.pages["/hydrate.js"] = Page(body=b"window.hydrated = true;", content_type=JS)
    expected = {p: (t, x, False) for p, (t, x, _) in pages.items()}
    expected["/ssr"] = ("Server rendered", "Rendered on the server already.", False)
    return AppSite(site, expected)
