"""WCXB: how much of a page's main content the parse step keeps, and how much boilerplate leaks.

Scores `parse_page` on the development split of the Web Content eXtraction Benchmark (a folder
with `html/NNNN.html.gz`, `ground-truth/NNNN.json` and WCXB's own `evaluate.py`), with
trafilatura side by side in the same run. The scoring rules are WCXB's: its `evaluate.py` is
imported from the split's folder and its `word_f1` (word-level F1 over lower-cased `\\w+`
tokens) and `snippet_check` (the share of `with` snippets found and of `without` snippets
leaked) score every page. Quaero's Markdown is scored after stripping its syntax, since the
ground truth is plain text. CPU per page is `time.process_time` around the extraction only.

Results are given per page type and overall, and for the even- and odd-numbered files apart,
and for a held-aside slice (a fifth of the files, chosen by a hash of the file name, `held_aside`)
against the rest: tune on the rest, check on the slice; a gap means rules fitted to these files.

The folder is `QUAERO_BENCH_WCXB_DIR` (default `../shared/wcxb-dev` beside the repository);
when it is absent the scenario says so and is skipped. The data is never copied into the repo.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import json
import os
import re
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIR = ROOT.parent / "shared" / "wcxb-dev"
TYPES = ("article", "forum", "product", "collection", "listing", "documentation", "service")


@dataclass
class Page:
    file_id: str
    url: str
    page_type: str
    html: bytes
    truth: str
    with_snippets: list[str]
    without_snippets: list[str]


@dataclass
class Score:
    file_id: str
    page_type: str
    f1: float
    with_rate: float
    without_rate: float
    cpu_ms: float


def held_aside(file_id: str) -> bool:
    """Whether a file is in the fifth of the split kept aside from tuning (by a hash of its name)."""
    return hashlib.sha256(file_id.encode()).digest()[0] % 5 == 0


def wcxb_dir() -> Path:
    return Path(os.environ.get("QUAERO_BENCH_WCXB_DIR") or DEFAULT_DIR).resolve()


def load_evaluate(folder: Path) -> ModuleType:
    """WCXB's own scorer, imported from the split's folder (it is not a package)."""
    spec = importlib.util.spec_from_file_location("wcxb_evaluate", folder / "evaluate.py")
    if spec is None or spec.loader is None:
        raise FileNotFoundError(folder / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_pages(folder: Path, evaluate: ModuleType, ids: Iterable[str] | None = None) -> Iterator[Page]:
    wanted = set(ids) if ids is not None else None
    for path in sorted((folder / "ground-truth").glob("*.json")):
        if wanted is not None and path.stem not in wanted:
            continue
        data = json.loads(path.read_text())
        truth = data.get("ground_truth")
        if not isinstance(truth, dict):
            continue
        yield Page(
            file_id=path.stem,
            url=data.get("url") or f"https://wcxb.invalid/{path.stem}",
            page_type=evaluate.get_page_type(data),
            html=gzip.decompress((folder / "html" / f"{path.stem}.html.gz").read_bytes()),
            truth=truth.get("main_content") or "",
            with_snippets=truth.get("with") or [],
            without_snippets=truth.get("without") or [],
        )


# Markdown syntax that is not text: images, link targets, heading and list markers, emphasis,
# code fences (with their language), table pipes and rules, block quotes.
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]*)\]\((?:[^()\s]|\([^)]*\))*(?:\s+\"[^\"]*\")?\)")
_FENCE = re.compile(r"^\s*(```|~~~).*$", re.MULTILINE)
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$", re.MULTILINE)
_LINE_MARKERS = re.compile(r"^\s*(?:#{1,6}\s+|>\s?|[-*+]\s+|\d+[.)]\s+|:\s+)", re.MULTILINE)
_EMPHASIS = re.compile(r"(\*{1,3}|_{2,3}|~~|`+)")
_RULE = re.compile(r"^\s*(?:[-*_]\s*){3,}$", re.MULTILINE)


def strip_markdown(markdown: str) -> str:
    """Plain text of Markdown, for scoring against WCXB's plain-text ground truth."""
    text = _IMAGE.sub(" ", markdown)
    text = _LINK.sub(r"\1", text)
    text = _FENCE.sub("", text)
    text = _TABLE_RULE.sub("", text)
    text = _RULE.sub("", text)
    for _ in range(3):  # nested markers: "> - item"
        text = _LINE_MARKERS.sub("", text)
    text = _EMPHASIS.sub("", text)
    return text.replace("|", " ").replace("\\", "")


def quaero_extract(page: Page) -> tuple[str, float]:
    """The plain text of Quaero's Markdown for the page, and the CPU milliseconds of parse_page."""
    from services.crawler.parse import parse_page

    start = time.process_time()
    markdown = parse_page(page.url, page.html).markdown
    cpu_ms = (time.process_time() - start) * 1000
    return strip_markdown(markdown), cpu_ms


def trafilatura_extract(page: Page) -> tuple[str, float]:
    import trafilatura

    start = time.process_time()
    text = trafilatura.extract(page.html, url=page.url) or ""
    return text, (time.process_time() - start) * 1000


Extractor = Callable[[Page], tuple[str, float]]


def score(evaluate: ModuleType, pages: Iterable[Page], extract: Extractor) -> list[Score]:
    scores = []
    for page in pages:
        text, cpu_ms = extract(page)
        _, _, f1 = evaluate.word_f1(text, page.truth)
        scores.append(
            Score(
                file_id=page.file_id,
                page_type=page.page_type,
                f1=f1,
                with_rate=evaluate.snippet_check(text, page.with_snippets),
                without_rate=evaluate.snippet_check(text, page.without_snippets),
                cpu_ms=cpu_ms,
            )
        )
    return scores


def _summary(scores: list[Score]) -> str:
    if not scores:
        return "| – | – | – | – |"
    f1 = statistics.fmean(s.f1 for s in scores)
    found = statistics.fmean(s.with_rate for s in scores)
    leaked = statistics.fmean(s.without_rate for s in scores)
    cpu = statistics.fmean(s.cpu_ms for s in scores)
    return f"{f1:.3f} | {found:.1%} | {leaked:.1%} | {cpu:.1f} ms"


def report(results: dict[str, list[Score]]) -> list[str]:
    """A Markdown table: per page type, overall, and the even and odd files apart."""
    tools = list(results)
    head = "| pages | n | " + " | ".join(f"{t} F1 | {t} with | {t} without | {t} CPU/page" for t in tools) + " |"
    lines = [head, "|---|---|" + "---|---|---|---|" * len(tools)]
    groups: dict[str, Callable[[Score], bool]] = {t: (lambda s, t=t: s.page_type == t) for t in TYPES}
    groups["all"] = lambda s: True
    groups["all, even files"] = lambda s: int(s.file_id) % 2 == 0
    groups["all, odd files"] = lambda s: int(s.file_id) % 2 == 1
    groups["all, tuned on (4/5)"] = lambda s: not held_aside(s.file_id)
    groups["all, held aside (1/5)"] = lambda s: held_aside(s.file_id)
    groups["documentation, tuned on"] = lambda s: s.page_type == "documentation" and not held_aside(s.file_id)
    groups["documentation, held aside"] = lambda s: s.page_type == "documentation" and held_aside(s.file_id)
    for name, keep in groups.items():
        columns = [_summary([s for s in results[t] if keep(s)]) for t in tools]
        n = sum(1 for s in results[tools[0]] if keep(s))
        if n:
            lines.append(f"| {name} | {n} | " + " | ".join(columns) + " |")
    return lines


def run(folder: Path, *, with_trafilatura: bool = True, ids: Iterable[str] | None = None) -> list[str]:
    """The report's lines, or one line saying why the scenario was skipped."""
    if not (folder / "evaluate.py").is_file() or not (folder / "ground-truth").is_dir():
        return [f"WCXB: skipped, no split at {folder} (set QUAERO_BENCH_WCXB_DIR)"]
    evaluate = load_evaluate(folder)
    pages = list(load_pages(folder, evaluate, ids))
    extractors: dict[str, Extractor] = {"Quaero": quaero_extract}
    if with_trafilatura:
        extractors["trafilatura"] = trafilatura_extract
    results = {name: score(evaluate, pages, extract) for name, extract in extractors.items()}
    title = f"WCXB at {folder}: {len(pages)} pages; mean word F1, snippets found, boilerplate leaked, CPU per page"
    return [title, "", *report(results)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=None, help="the WCXB split (default: QUAERO_BENCH_WCXB_DIR)")
    parser.add_argument("--no-trafilatura", action="store_true", help="score Quaero alone")
    parser.add_argument("--ids", nargs="*", help="only these file ids")
    args = parser.parse_args()
    print("\n".join(run(args.dir or wcxb_dir(), with_trafilatura=not args.no_trafilatura, ids=args.ids)))


if __name__ == "__main__":
    main()
