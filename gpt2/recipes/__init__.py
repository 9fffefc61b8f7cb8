"""Recipes: the flags of `python -m gpt2.train` for each stage of a training run, in a TOML file
beside this one (`shakespeare.toml`: the bundled model).

Top-level keys apply to every stage; a stage's table adds and overrides. Each key is a flag's name
without its dashes, so a recipe reads like the commands it stands for.
"""

from pathlib import Path

RECIPES_DIR = Path(__file__).resolve().parent


def bundled() -> list[str]:
    return sorted(path.stem for path in RECIPES_DIR.glob("*.toml"))


def stage_flags(name: str, stage: str | None) -> list[str]:
    """The command-line flags of `stage` of the recipe `name` (bundled) or of a .toml file."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise SystemExit("error: reading a recipe needs Python 3.11 or the tomli package") from None
    path = Path(name) if name.endswith(".toml") else RECIPES_DIR / f"{name}.toml"
    if not path.is_file():
        raise SystemExit(f"error: no recipe {name!r} (bundled: {', '.join(bundled())})")
    recipe = tomllib.loads(path.read_text(encoding="utf-8"))
    stages = [key for key, value in recipe.items() if isinstance(value, dict)]
    if stage not in stages:
        raise SystemExit(f"error: recipe {name!r} has the stages {', '.join(stages)}; pick one with --stage")
    settings = {key: value for key, value in recipe.items() if key not in stages} | recipe[stage]
    flags = []
    for key, value in settings.items():
        if value is not False:  # true: a switch such as --resume; false: left out
            flags += [f"--{key}"] if value is True else [f"--{key}", str(value)]
    return flags
