"""The README, .ci/run and the packaging agree with each other."""

import pathlib
import re

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _quickstart_commands():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_quickstart_has_two_commands():
    commands = _quickstart_commands()
    assert len(commands) == 2
    assert "python -m skml demo" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_commands_verbatim():
    install, test_command = _quickstart_commands()
    ci_lines = [
        line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
    ]
    assert test_command in ci_lines
    # the first command minus its venv step (CI makes its venv outside the clone)
    venv_step = "python -m venv .venv && . .venv/bin/activate && "
    assert install.startswith(venv_step)
    assert install[len(venv_step) :] in ci_lines
    assert "torch==2.13.0" in (ROOT / ".ci" / "run").read_text()


def test_torch_requirement_admits_2_13():
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs = {req.name.lower(): req for req in reqs}
    assert "2.13.0" in reqs["torch"].specifier
    assert reqs["scikit-learn"].specifier.contains("1.6")


def test_setup_cfg_holds_no_metadata_or_pytest_config():
    text = (ROOT / "setup.cfg").read_text()
    for section in ("[metadata]", "[options]", "[tool:pytest]"):
        assert section not in text


def test_readme_usage_example_runs():
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})


def test_readme_table_lists_exactly_the_estimators():
    from skml.utils import all_estimators

    readme = (ROOT / "README.md").read_text()
    table = readme.split("| estimator | subpackage | paper |", 1)[1].split("\n\n")[0]
    rows = re.findall(r"^\| `(\w+)` \| `(skml\.\w+)` \|", table, re.M)
    found = {name: cls.__module__.rsplit(".", 1)[0] for name, cls in all_estimators()}
    assert dict(rows) == found
