"""`pip install .` gives a package that works from any directory: the bundled model, the tokenizer,
the command line and the app's console script and front-end files, with no file of the repository
in reach; the library works without the web app's packages."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
WITHOUT_THE_APP = """
import importlib.abc, sys

class NoWebApp(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("gradio", "plotly"):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)")

sys.meta_path.insert(0, NoWebApp())
"""


def readme_library_example() -> str:
    """The README's library example (its first Python block after "## The library")."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## The library", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_library_works_without_the_web_app():
    """`import gpt2`, the README's library example and the lab need neither gradio nor plotly
    (`pip install .` without `[app]`)."""
    code = (
        WITHOUT_THE_APP
        + readme_library_example()
        + (
            "\nimport gpt2.lab, gpt2.train, gpt2.quantize\n"
            "from gpt2.analysis import analyze\n"
            "print(gpt2.lab.token_losses(model, analyze(model, idx[0].tolist()))[0].shape)\n"
            "try:\n    import gradio\nexcept ModuleNotFoundError:\n    print('gradio hidden')\n"
        )
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "gradio hidden" in result.stdout


def test_every_package_of_the_tree_is_installed():
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    in_tree = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "gpt2").rglob("__init__.py")}
    assert declared == in_tree | {"gpt2.explorer.assets"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    source, target = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("site")
    for name in ("gpt2", "assets", "pyproject.toml", "README.md"):  # a copy, so the build leaves the tree alone
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, source / name)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return target


def run_elsewhere(installed, tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(installed)}
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_the_installed_package_loads_the_bundled_model_anywhere(installed, tmp_path):
    code = "import gpt2; m = gpt2.GPT2.from_pretrained('shakespeare'); print(gpt2.__file__, m.config.num_layers)"
    result = run_elsewhere(installed, tmp_path, "-c", code)
    assert result.returncode == 0, result.stderr
    path, layers = result.stdout.split()
    assert path.startswith(str(installed)) and layers == "6"


@pytest.mark.slow
def test_the_installed_package_carries_the_training_recipe(installed, tmp_path):
    code = "from gpt2.recipes import stage_flags; print(' '.join(stage_flags('shakespeare', 'copy')))"
    result = run_elsewhere(installed, tmp_path, "-c", code)
    assert result.returncode == 0, result.stderr
    assert "--batch copy=256" in result.stdout


@pytest.mark.slow
def test_the_installed_command_line_generates(installed, tmp_path):
    result = run_elsewhere(installed, tmp_path, "-m", "gpt2", "generate", "--prompt", "ROMEO:", "--max-new-tokens", "5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ROMEO:") and len(result.stdout) > len("ROMEO:\n")


@pytest.mark.slow
def test_the_console_script_is_declared_and_rejects_a_bad_model_directory(installed, tmp_path):
    assert (installed / "bin" / "gpt2-explorer").is_file()
    result = run_elsewhere(installed, tmp_path, "-m", "gpt2.explorer", "--model", str(tmp_path / "nothing-here"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: --model ")


@pytest.mark.slow
def test_the_installed_app_has_its_front_end_and_help_anywhere(installed, tmp_path):
    code = 'from gpt2.explorer import ui; print(ui.assets_dir()); print(\'"heatmap": "#query-panels"\' in ui.page_script())'
    result = run_elsewhere(installed, tmp_path, "-c", code)
    assert result.returncode == 0, result.stderr
    folder, has_script = result.stdout.split()
    assert folder.startswith(str(installed)) and has_script == "True"
    assert (
        "__CLICK_TARGETS__"
        not in run_elsewhere(installed, tmp_path, "-c", "from gpt2.explorer import ui; print(ui.page_script())").stdout
    )
    result = run_elsewhere(installed, tmp_path, str(installed / "bin" / "gpt2-explorer"), "--help")
    assert result.returncode == 0 and "--model DIR" in result.stdout, result.stderr
