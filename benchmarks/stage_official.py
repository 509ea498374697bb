"""Stage the official modules ``benchmarks/gpu.py`` compares with, for a machine without network.

For every spec of ``gpu.OFFICIAL`` whose repository was fetched (a git directory, bare or a checkout's
``.git``), copy the Python files of the folder that holds the spec's file (its sibling imports, e.g.
RNL's ``ops/depthwise_conv.py``) at the fetched commit into ``OUT/<spec>/<folder>/``, and write
``OUT/<spec>/SOURCE`` (repository and commit). Nothing is copied into this repository: ``OUT`` is
meant to be an ignored folder (``.official/``) carried to the GPU machine, where
``scripts/device_session.sh --official OUT`` passes ``--official <spec>=OUT/<spec>`` for each.

    python benchmarks/stage_official.py --mirrors /work/.mirror --out .official
    python benchmarks/stage_official.py --repo nl=/path/to/temporal-shift-module/.git --out .official

``--mirrors DIR`` finds a repository ``owner/name`` under ``DIR/owner+name/repo`` (bare or with ``.git``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path, PurePosixPath

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu import OFFICIAL  # noqa: E402


def repository_name(spec) -> str:
    """``owner/name`` of a spec (the first word of its ``source``)."""
    return spec.source.split()[0]


def git_dir(path: Path) -> Path | None:
    """``path`` itself when it is a git directory, ``path/.git`` when that is, else None."""
    for candidate in (path, path / ".git"):
        if candidate.is_dir() and subprocess.run(["git", "--git-dir", str(candidate), "rev-parse", "HEAD"],
                                                 capture_output=True).returncode == 0:
            return candidate
    return None


def stage(name: str, repo: Path, out: Path) -> list[str]:
    """Copy the spec's folder's ``*.py`` files at HEAD of ``repo`` into ``out/name``; returns their paths."""
    spec = OFFICIAL[name]
    git = ["git", "--git-dir", str(repo)]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    folder = str(PurePosixPath(spec.path).parent)
    where = [] if folder == "." else [f"{folder}/"]
    listing = subprocess.run([*git, "ls-tree", "--name-only", "HEAD", *where],
                             check=True, capture_output=True, text=True).stdout.split()
    package_init = "__init__.py" if folder == "." else f"{folder}/__init__.py"
    files = [path for path in listing if path.endswith(".py") and path != package_init]
    if spec.path not in files:
        raise SystemExit(f"stage_official: {name}: {spec.path} is not in {repo} at {commit[:7]}")
    for path in files:
        target = out / name / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(subprocess.run([*git, "show", f"HEAD:{path}"], check=True, capture_output=True).stdout)
    (out / name / "SOURCE").write_text(f"{repository_name(spec)} {commit}\n")
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mirrors", help="folder of fetched repositories named owner+name/repo")
    parser.add_argument("--repo", action="append", default=[], metavar="SPEC=GITDIR",
                        help=f"a fetched repository for one spec ({', '.join(OFFICIAL)}); repeatable")
    parser.add_argument("--out", required=True, help="folder to write (e.g. .official, ignored by git)")
    args = parser.parse_args(argv)
    repos: dict[str, Path] = {}
    if args.mirrors:
        for name, spec in OFFICIAL.items():
            found = git_dir(Path(args.mirrors) / repository_name(spec).replace("/", "+") / "repo")
            if found is not None:
                repos[name] = found
    for value in args.repo:
        name, _, path = value.partition("=")
        if name not in OFFICIAL:
            parser.error(f"--repo {value!r}: unknown spec {name!r}; expected one of {', '.join(OFFICIAL)}")
        found = git_dir(Path(path))
        if found is None:
            parser.error(f"--repo {value!r}: {path} is not a git directory")
        repos[name] = found
    if not repos:
        parser.error("no fetched repository found (give --mirrors DIR or --repo SPEC=GITDIR)")
    out = Path(args.out)
    for name, repo in sorted(repos.items()):
        files = stage(name, repo, out)
        print(f"{name}: {repository_name(OFFICIAL[name])} -> {out / name} ({len(files)} files)")
    missing = sorted(set(OFFICIAL) - set(repos))
    if missing:
        print(f"not staged (no fetched repository): {', '.join(missing)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
