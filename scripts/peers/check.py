"""Checks that this Python environment holds exactly the pinned versions of a requirements file.

Run with the environment's own interpreter:

    VENV/bin/python scripts/peers/check.py scripts/peers/test.txt [scripts/peers/test.lock]

Every `name[extras]==version` line of each file must match the installed distribution's version;
anything else (a missing package, another version, a pin that is not `==`) is reported and the
exit status is 1. The interpreter must be a virtual environment's, so that a system package can
never stand in for a pinned one. Prints one line naming the checked peers and their versions.
"""

import importlib.metadata
import re
import sys

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;#]+)\s*(?:#.*)?$")


def pins(path):
    """The (name, version) pairs of a requirements file; raises on a line that is not a pin."""
    result = []
    with open(path, encoding="utf-8") as lines:
        for number, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            match = PIN.match(line)
            if not match:
                raise SystemExit(f"{path}:{number}: not an exact pin (name==version): {line}")
            result.append((match.group(1), match.group(3)))
    return result


def main(paths):
    if sys.prefix == sys.base_prefix:
        print(f"{sys.executable} is not a virtual environment's interpreter", file=sys.stderr)
        return 1
    problems = []
    checked = []
    for index, path in enumerate(paths):
        for name, wanted in pins(path):
            try:
                found = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                problems.append(f"{name}: pinned {wanted} in {path}, not installed")
                continue
            if found != wanted:
                problems.append(f"{name}: pinned {wanted} in {path}, installed {found}")
            elif index == 0:
                checked.append(f"{name} {found}")
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(f"peers in {sys.prefix}: " + ", ".join(checked))
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    sys.exit(main(sys.argv[1:]))
