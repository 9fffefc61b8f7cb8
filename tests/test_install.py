"""`pip install .` gives a package that works from any directory: the bundled model, the tokenizer,
the command line and the app's console script, with no file of the repository in reach."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    source, target = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("site")
    for name in ("gpt2", "pyproject.toml", "README.md"):  # a copy, so the build leaves the tree alone
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


def test_the_installed_package_loads_the_bundled_model_anywhere(installed, tmp_path):
    code = "import gpt2; m = gpt2.GPT2.from_pretrained('shakespeare'); print(gpt2.__file__, m.config.num_layers)"
    result = run_elsewhere(installed, tmp_path, "-c", code)
    assert result.returncode == 0, result.stderr
    path, layers = result.stdout.split()
    assert path.startswith(str(installed)) and layers == "6"


def test_the_installed_package_carries_the_training_recipe(installed, tmp_path):
    code = "from gpt2.recipes import stage_flags; print(' '.join(stage_flags('shakespeare', 'copy')))"
    result = run_elsewhere(installed, tmp_path, "-c", code)
    assert result.returncode == 0, result.stderr
    assert "--batch copy=256" in result.stdout


def test_the_installed_command_line_generates(installed, tmp_path):
    result = run_elsewhere(installed, tmp_path, "-m", "gpt2", "generate", "--prompt", "ROMEO:", "--max-new-tokens", "5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ROMEO:") and len(result.stdout) > len("ROMEO:\n")


def test_the_console_script_is_declared_and_rejects_a_bad_model_directory(installed, tmp_path):
    assert (installed / "bin" / "gpt2-explorer").is_file()
    result = run_elsewhere(installed, tmp_path, "-m", "gpt2.explorer", "--model", str(tmp_path / "nothing-here"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: --model ")
