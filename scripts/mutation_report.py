"""Mutation testing of the modules whose numbers users act on (docs/testing.md, "Mutation testing").

    python scripts/mutation_report.py run [MODULE ...] [--max-children N]
    python scripts/mutation_report.py report [--equivalent FILE] [--survivors]

`run` gives each module of `[tool.mutmut.modules]` in pyproject.toml its own mutmut 3 run, in its own folder
mutants/runs/<stem>/, against that module's own fast tests (`tests`). One test selection for all modules would
not do: mutmut runs each mutant against every selected test that reaches its function, and the connector calls
system_state and batch, so their mutants would rebuild a city in every connector test (hours on 2 cores). A
module with `sample = "[05]"` runs only the mutants whose number within their function matches that glob
(`[05]`: numbers ending in 0 or 5, every 5th); the rest stay "not checked" and are counted as not run. Each run
folder holds a copy of pyproject.toml whose [tool.mutmut] names the one module and its tests, and links to
hamburg_mamba/, csrc/ and tests/. Every run starts afresh (mutmut's copy of the package is deleted first: it only
adds files, so a module moved or deleted since the last run would still be imported from the stale copy).

`report` reads `mutmut results --all true` in every run folder, counts each module's mutants by status and prints a
Markdown table. The score is killed / (mutants that ran, less those judged equivalent): a timeout counts as killed
(the mutant made a test hang, which a test run notices), "no tests" (no selected test reaches the function)
counts as not killed. --equivalent names mutants that behave exactly like the original (one name a line, then `#`
and the reason); they are listed but left out of the score. --survivors also lists every mutant not killed.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
RUNS = Path("mutants") / "runs"
LINKED = ("hamburg_mamba", "csrc", "tests")

# `hamburg_mamba.eval.news2.x_news2_score__mutmut_3`, methods as `...connector.xǁ_EventColumnsǁkey_of__mutmut_2`
NAME = re.compile(r"^(?P<module>[\w.]+?)\.x(?:_|ǁ)(?P<function>.+)__mutmut_(?P<k>\d+)$")
KILLED = {"killed", "timeout", "segfault", "caught by type check"}
NOT_RUN = {"not checked", "skipped"}
COLUMNS = ("mutants", "killed", "survived", "timeout", "no tests", "equivalent", "not run", "score")
# [tool.mutmut] keys that describe the per-module runs; mutmut itself never reads them.
DRIVER_KEYS = ("modules",)


# --- run: one mutmut folder per module -------------------------------------------------------------------------


def read_pyproject(root: Path = ROOT) -> tuple[str, dict]:
    text = (root / "pyproject.toml").read_text()
    return text, tomllib.loads(text)


def module_config(text: str, mutmut: dict, module: str) -> str:
    """pyproject.toml for one module's run folder: the repository's, with [tool.mutmut] narrowed to `module`."""
    spec = mutmut["modules"][module]
    table = {k: v for k, v in mutmut.items() if k not in DRIVER_KEYS}
    table["only_mutate"] = [module]
    table["pytest_add_cli_args_test_selection"] = list(spec["tests"])
    # JSON strings and arrays of strings are valid TOML basic strings and arrays (backslashes escaped alike).
    body = "\n".join(f"{key} = {json.dumps(value)}" for key, value in table.items())
    return replace_table(text, "tool.mutmut", "[tool.mutmut]\n" + body + "\n")


def replace_table(text: str, name: str, new: str) -> str:
    """`text` with the TOML table `name` and its sub-tables replaced by `new` (no other table moves)."""
    lines = text.splitlines(keepends=True)
    header = re.compile(r"^\[+\s*([^\]]+?)\s*\]+\s*$")
    out, inside, done = [], False, False
    for line in lines:
        m = header.match(line)
        if m:
            inside = m[1] == name or m[1].startswith(name + ".")
            if inside and not done:
                out.append(new + "\n")
                done = True
        if not inside:
            out.append(line)
    if not done:
        raise ValueError(f"pyproject.toml has no [{name}] table")
    return "".join(out)


def dotted(module: str) -> str:
    return module.removesuffix(".py").replace("/", ".")


def prepare(folder: Path, config: str, root: Path = ROOT) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        link = folder / name
        if not link.is_symlink():
            link.symlink_to(root / name)
    target = folder / "pyproject.toml"
    if not target.exists() or target.read_text() != config:
        target.write_text(config)


def run_module(module: str, spec: dict, config: str, max_children: int) -> int:
    folder = ROOT / RUNS / Path(module).stem
    prepare(folder, config)
    shutil.rmtree(folder / "mutants", ignore_errors=True)
    cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children)]
    if spec.get("sample"):
        cmd.append(f"{dotted(module)}.*__mutmut_*{spec['sample']}")
    print(f"== {module}: {' '.join(cmd[1:])} (in {folder.relative_to(ROOT)})", flush=True)
    return subprocess.run(cmd, cwd=folder).returncode


def run(modules: list[str], max_children: int) -> int:
    text, data = read_pyproject()
    mutmut = data["tool"]["mutmut"]
    known = mutmut["modules"]
    unknown = [m for m in modules if m not in known]
    if unknown:
        raise SystemExit(f"run: {unknown} not in [tool.mutmut.modules] (known: {sorted(known)})")
    failed = 0
    for module in modules or list(known):
        failed |= run_module(module, known[module], module_config(text, mutmut, module), max_children) != 0
    return int(failed)


# --- report ------------------------------------------------------------------------------------------------------


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
        if status in NOT_RUN:
            c["not run"] += 1
        elif status in KILLED:
            c["killed"] += 1
            c["timeout"] += status == "timeout"
        elif name in equivalent:
            c["equivalent"] += 1
        elif status == "no tests":
            c["no tests"] += 1
        else:
            c["survived"] += 1
    return [{"module": module, **by_module[module], "score": score(by_module[module])} for module in sorted(by_module)]


def score(c: Counter) -> float:
    scored = c["killed"] + c["survived"] + c["no tests"]
    return c["killed"] / scored if scored else float("nan")


def markdown(rows: list[dict]) -> str:
    total = Counter()
    for r in rows:
        total.update({k: r.get(k, 0) for k in COLUMNS[:-1]})
    lines = ["| module | " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for r in [*rows, {"module": "**all**", **total, "score": score(total)}]:
        cells = [str(r.get(k, 0)) for k in COLUMNS[:-1]] + [f"{100 * r['score']:.0f} %"]
        lines.append(f"| {r['module']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def survivors(results: dict[str, str], equivalent: dict[str, str]) -> str:
    lines = []
    for name, status in sorted(results.items()):
        if status in KILLED or status in NOT_RUN:
            continue
        fate = f"equivalent: {equivalent[name]}" if name in equivalent else status
        lines.append(f"- `{name}`: {fate}")
    return "\n".join(lines)


def report(runs: Path, equivalent_file: Path | None, with_survivors: bool) -> int:
    folders = sorted(p for p in runs.glob("*") if (p / "mutants").is_dir())
    if not folders:
        raise SystemExit(f"report: no run folders under {runs} (run `scripts/mutation_report.py run` first)")
    results = {}
    for folder in folders:
        results.update(read_results(folder))
    equivalent = read_equivalent(equivalent_file)
    print(markdown(table(results, equivalent)))
    if with_survivors:
        print()
        print(survivors(results, equivalent))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="one mutmut run per module of [tool.mutmut.modules], against its own tests")
    r.add_argument("modules", nargs="*", help="paths as in [tool.mutmut.modules] (default: all, in table order)")
    r.add_argument("--max-children", type=int, default=1, help="mutmut worker processes (default 1)")
    p = sub.add_parser("report", help="per-module table of the runs")
    p.add_argument("--runs", type=Path, default=ROOT / RUNS, help="folder of the per-module run folders")
    p.add_argument("--equivalent", type=Path, help="file of mutants judged equivalent: `name  # reason` a line")
    p.add_argument("--survivors", action="store_true", help="also list every mutant not killed")
    args = ap.parse_args(argv)
    if args.command == "run":
        return run(args.modules, args.max_children)
    return report(args.runs, args.equivalent, args.survivors)


if __name__ == "__main__":
    sys.exit(main())
