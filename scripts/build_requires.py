"""Print pyproject.toml's [build-system] requires, one per line, for `pip install` before a build.

`pip install --no-build-isolation` (how this project builds, so the extension links against the installed
torch) installs none of the build requirements itself; the Makefile installs them with this list, so
pyproject.toml stays the only place they are named. `--except NAME` leaves a requirement out (the Makefile
installs torch from TORCH_SPEC instead).
"""

from __future__ import annotations

import argparse
import pathlib
import re

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pip vendors the same parser
    from pip._vendor import tomli as tomllib

PYPROJECT = pathlib.Path(__file__).resolve().parent.parent / "pyproject.toml"


def requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;@]", requirement, maxsplit=1)[0].lower()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--except", dest="excluded", action="append", default=[], metavar="NAME")
    args = parser.parse_args()
    excluded = {name.lower() for name in args.excluded}
    requires = tomllib.loads(PYPROJECT.read_text())["build-system"]["requires"]
    for requirement in requires:
        if requirement_name(requirement) not in excluded:
            print(requirement)


if __name__ == "__main__":
    main()
