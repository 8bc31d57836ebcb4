"""Where WCXB's F1 and leaks are lost: per page type, the weight of lost precision (boilerplate
kept) and lost recall (content dropped), the leaked snippets, and the worst pages.

    .venv/bin/python -m bench.wcxb_analysis [--type documentation] [--worst 15] [--half even|odd]

Weights are sums over pages of (1 - F1) split in proportion to (1 - precision) and (1 - recall):
the type and the kind of loss that cost the most overall come first. Read the worst pages'
leaks and misses to find rules a reader of HTML would agree with; check them on the other half.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict

from bench.wcxb import held_aside, load_evaluate, load_pages, quaero_extract, wcxb_dir


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--type", default=None)
    parser.add_argument("--worst", type=int, default=10)
    parser.add_argument("--half", choices=("even", "odd"), default=None)
    parser.add_argument("--tuned", action="store_true", help="only the files not held aside (bench.wcxb.held_aside)")
    args = parser.parse_args()
    folder = wcxb_dir()
    evaluate = load_evaluate(folder)
    rows = []
    for page in load_pages(folder, evaluate):
        if args.type and page.page_type != args.type:
            continue
        if args.half and int(page.file_id) % 2 != (args.half == "odd"):
            continue
        if args.tuned and held_aside(page.file_id):
            continue
        text, cpu = quaero_extract(page)
        p, r, f1 = evaluate.word_f1(text, page.truth)
        leaks = [s for s in page.without_snippets if s.lower() in text.lower()]
        misses = [s for s in page.with_snippets if s.lower() not in text.lower()]
        rows.append((page, p, r, f1, leaks, misses, cpu))
    by_type: dict[str, list] = defaultdict(list)
    for row in rows:
        by_type[row[0].page_type].append(row)
    print("| type | n | F1 | P | R | loss | from precision | from recall | leaked | CPU |")
    for name, group in sorted(by_type.items(), key=lambda kv: -sum(1 - r[3] for r in kv[1])):
        loss = prec = rec = 0.0
        for _, p, r, f1, *_ in group:
            lost = 1 - f1
            share = (1 - p) / max(1e-9, (1 - p) + (1 - r)) if lost else 0
            loss, prec, rec = loss + lost, prec + lost * share, rec + lost * (1 - share)
        leaked = statistics.fmean(len(r[4]) / len(r[0].without_snippets) if r[0].without_snippets else 1 for r in group)
        print(
            f"| {name} | {len(group)} | {statistics.fmean(r[3] for r in group):.3f} | "
            f"{statistics.fmean(r[1] for r in group):.3f} | {statistics.fmean(r[2] for r in group):.3f} | "
            f"{loss:.1f} | {prec:.1f} | {rec:.1f} | {leaked:.1%} | {statistics.fmean(r[6] for r in group):.1f} |"
        )
    print()
    for page, p, r, f1, leaks, misses, cpu in sorted(rows, key=lambda r: r[3])[: args.worst]:
        print(f"{page.file_id} {page.page_type} F1 {f1:.2f} P {p:.2f} R {r:.2f} {cpu:.0f} ms {page.url}")
        for s in leaks[:4]:
            print(f"   leaked: {s[:100]!r}")
        for s in misses[:3]:
            print(f"   missed: {s[:100]!r}")


if __name__ == "__main__":
    main()
