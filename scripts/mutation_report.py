"""Per-module table of a mutmut run (`make mutants`), for docs/testing.md.

Reads `mutmut results --all true` (one `<module>.<function>__mutmut_<k>: <status>` line per mutant) from the
folder the run was made in, counts each module's mutants by status and prints a Markdown table:

    python scripts/mutation_report.py [--dir DIR] [--equivalent FILE] [--survivors]

The score is killed / (mutants that ran, less those judged equivalent): a timeout counts as killed (the mutant
made a test hang, which a test run notices), "no tests" (no selected test reaches the function) counts as not
killed. --equivalent names mutants that behave exactly like the original (one name a line, then `#` and the
reason); they are listed but left out of the score. --survivors also lists every mutant not killed.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

# `hamburg_mamba.eval.news2.x_news2_score__mutmut_3`, methods as `...connector.xǁ_EventColumnsǁkey_of__mutmut_2`
NAME = re.compile(r"^(?P<module>[\w.]+?)\.x(?:_|ǁ)(?P<function>.+)__mutmut_(?P<k>\d+)$")
KILLED = {"killed", "timeout", "segfault", "caught by type check"}
NOT_RUN = {"not checked", "skipped"}
COLUMNS = ("mutants", "killed", "survived", "timeout", "no tests", "equivalent", "score")


def read_results(folder: Path) -> dict[str, str]:
    """mutant name -> status, from `mutmut results --all true` run in `folder`."""
    out = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return parse_results(out)


def parse_results(text: str) -> dict[str, str]:
    results = {}
    for line in text.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and NAME.match(name):
            results[name] = status.strip()
    return results


def read_equivalent(path: Path | None) -> dict[str, str]:
    """mutant name -> reason, from lines `name  # reason` (blank lines and lines starting with # skipped)."""
    if path is None:
        return {}
    out = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, reason = line.partition("#")
        out[name.strip()] = reason.strip()
    return out


def module_of(name: str) -> str:
    return NAME.match(name)["module"]


def table(results: dict[str, str], equivalent: dict[str, str]) -> list[dict]:
    by_module: dict[str, Counter] = defaultdict(Counter)
    for name, status in results.items():
        c = by_module[module_of(name)]
        c["mutants"] += 1
        if name in equivalent and status not in KILLED:
            c["equivalent"] += 1
        elif status in KILLED:
            c["killed"] += 1
            c["timeout"] += status == "timeout"
        elif status == "no tests":
            c["no tests"] += 1
        elif status not in NOT_RUN:
            c["survived"] += 1
        c["not run"] += status in NOT_RUN
    rows = []
    for module in sorted(by_module):
        c = by_module[module]
        scored = c["killed"] + c["survived"] + c["no tests"]
        rows.append(
            {
                "module": module,
                **{k: c[k] for k in COLUMNS[:-1]},
                "not run": c["not run"],
                "score": c["killed"] / scored if scored else float("nan"),
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    total = Counter()
    for r in rows:
        total.update({k: r[k] for k in (*COLUMNS[:-1], "not run")})
    scored = total["killed"] + total["survived"] + total["no tests"]
    all_rows = rows + [{"module": "**all**", **total, "score": total["killed"] / scored if scored else float("nan")}]
    lines = ["| module | " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for r in all_rows:
        cells = [str(r[k]) for k in COLUMNS[:-1]] + [f"{100 * r['score']:.0f} %"]
        lines.append(f"| {r['module']} | " + " | ".join(cells) + " |")
    not_run = total["not run"]
    if not_run:
        lines.append(f"\n{not_run} mutants not run yet (an interrupted run); they are in `mutants` only.")
    return "\n".join(lines)


def survivors(results: dict[str, str], equivalent: dict[str, str]) -> str:
    lines = []
    for name, status in sorted(results.items()):
        if status in KILLED or status in NOT_RUN:
            continue
        fate = f"equivalent: {equivalent[name]}" if name in equivalent else status
        lines.append(f"- `{name}`: {fate}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("."), help="folder the mutmut run was made in (holds mutants/)")
    ap.add_argument("--equivalent", type=Path, help="file of mutants judged equivalent: `name  # reason` a line")
    ap.add_argument("--survivors", action="store_true", help="also list every mutant not killed")
    args = ap.parse_args(argv)
    if not (args.dir / "mutants").is_dir():
        ap.error(f"--dir: {args.dir} holds no mutants/ folder (run `make mutants` there first)")
    results = read_results(args.dir)
    equivalent = read_equivalent(args.equivalent)
    print(markdown(table(results, equivalent)))
    if args.survivors:
        print()
        print(survivors(results, equivalent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
