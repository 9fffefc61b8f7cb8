"""Checkpoints: names → files, Hugging Face's GPT-2 layout ↔ our state dict, safetensors only.

Hugging Face's GPT-2 stores its projection weights as Conv1D, (in_features, out_features); our
Linear layers hold (out, in), so those four weights are transposed on the way in and out. This
module knows files and tensors, not the model class: `GPT2.from_pretrained` and
`GPT2.save_pretrained` (in `gpt2.model`) build on it.
"""

import json
import os
import re
import socket
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlparse

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import GPT2Config
from .paths import BUNDLED_MODEL_DIR, BUNDLED_MODEL_NAME

HUB_REPOS = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
    "distilgpt2": "distilbert/distilgpt2",
}
HUB_ALIASES = {repo: name for name, repo in HUB_REPOS.items()} | {"openai-community/distilgpt2": "distilgpt2"}
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
IGNORED_BUFFERS = (".attn.bias", ".attn.masked_bias")  # the HF causal-mask buffers, not weights
PICKLE_FILES = ("pytorch_model.bin", "model.bin", "model.pt", "model.pth", "model.ckpt", "tf_model.h5")
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class ModelLoadError(RuntimeError):
    """Base class: a model could not be loaded; the message says why, in one line."""


class UnknownModelError(ModelLoadError, ValueError):
    """Neither a known Hub name nor an existing checkpoint directory."""


class HubUnavailableError(ModelLoadError, ConnectionError):
    """The Hub could not be reached and the files are not in the local cache."""


class CheckpointError(ModelLoadError, ValueError):
    """The checkpoint's files are missing, unsafe, corrupt or inconsistent."""


class ModelTooLargeError(ModelLoadError, MemoryError):
    """The model would not fit in the memory this machine has free."""


def canonical_hub_name(name: str) -> str | None:
    """`gpt2`, `openai-community/gpt2`, ... → `gpt2`; None for anything else."""
    name = name.strip()
    if name in HUB_REPOS:
        return name
    return HUB_ALIASES.get(name)


def resolve_checkpoint(name_or_path: str | os.PathLike) -> tuple[Path, Path]:
    """(config.json, model.safetensors) for the bundled model's name, a Hub name (downloaded or
    cached) or a local directory."""
    text = str(name_or_path)
    if not text.strip():
        raise UnknownModelError("no model name given")
    if isinstance(name_or_path, str) and text.strip() == BUNDLED_MODEL_NAME:
        return _local_files(BUNDLED_MODEL_DIR)
    hub_name = canonical_hub_name(text) if isinstance(name_or_path, str) else None
    if hub_name is not None:
        return _download(HUB_REPOS[hub_name], hub_name)
    path = Path(text).expanduser()
    if path.is_dir():
        return _local_files(path)
    known = ", ".join([BUNDLED_MODEL_NAME, *HUB_REPOS])
    raise UnknownModelError(
        f"unknown model {text!r}: use one of {known}, or a directory with {CONFIG_FILE} and {WEIGHTS_FILE}"
    )


def _local_files(directory: Path) -> tuple[Path, Path]:
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not weights_path.is_file():
        pickles = [name for name in PICKLE_FILES if (directory / name).exists()]
        if pickles:
            raise CheckpointError(
                f"{directory} holds only {pickles[0]}, a pickle checkpoint; refusing to load it: only {WEIGHTS_FILE} is read"
            )
        raise CheckpointError(f"{directory} has no {WEIGHTS_FILE}")
    if not config_path.is_file():
        raise CheckpointError(f"{directory} has no {CONFIG_FILE}")
    return config_path, weights_path


def _download(repo_id: str, name: str) -> tuple[Path, Path]:
    """The files from the local Hub cache if they are there, else from the Hub (with its progress bar)."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    try:
        return tuple(Path(hf_hub_download(repo_id, f, local_files_only=True)) for f in (CONFIG_FILE, WEIGHTS_FILE))
    except LocalEntryNotFoundError:
        pass
    unreachable = HubUnavailableError(
        f"cannot load {name!r}: the Hugging Face Hub could not be reached and {repo_id} is not in the local cache; "
        f"download it once while online (`hf download {repo_id} {CONFIG_FILE} {WEIGHTS_FILE}`) "
        "or point HF_HUB_CACHE at a cache that has it"
    )
    if constants.HF_HUB_OFFLINE or not _reachable(constants.ENDPOINT):
        raise unreachable  # one clear error instead of the client's retries
    try:
        config_path = hf_hub_download(repo_id, CONFIG_FILE)
        weights_path = hf_hub_download(repo_id, WEIGHTS_FILE)
    except LocalEntryNotFoundError:  # a subclass of EntryNotFoundError: the network failed mid-way
        raise unreachable from None
    except EntryNotFoundError:
        raise CheckpointError(f"{repo_id} has no {WEIGHTS_FILE}; only safetensors checkpoints are loaded") from None
    except (HfHubHTTPError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise HubUnavailableError(f"cannot download {name!r} from the Hugging Face Hub: {reason}") from None
    return Path(config_path), Path(weights_path)


def _reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hub's host opens within `timeout` seconds."""
    url = urlparse(endpoint)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def read_config(config_path: Path) -> GPT2Config:
    try:
        hf_config = json.loads(config_path.read_text(encoding="utf-8"))
        return GPT2Config.from_hf_dict(hf_config)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{config_path} is not a readable JSON config: {exc}") from None
    except KeyError as exc:
        raise CheckpointError(f"{config_path} lacks the key {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{config_path}: {exc}") from None


def hf_to_ours(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename (and transpose) a Hugging Face GPT-2 state dict into this model's names."""
    state = {}
    for key, tensor in hf_state.items():
        name = key.removeprefix("transformer.")
        if name.endswith(IGNORED_BUFFERS):
            continue
        name = re.sub(r"^h\.(\d+)\.", r"blocks.\1.", name)
        if name.endswith(CONV1D_WEIGHTS):
            tensor = tensor.t().contiguous()  # row-major (out, in): decode's matrix-vector products read it in order
        state[name] = tensor
    return state


def ours_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """This model's state dict in Hugging Face's GPT2LMHeadModel names (tied LM head left out)."""
    hf_state = {}
    for name, tensor in state.items():
        if name == "lm_head.weight":
            continue
        if name.endswith(CONV1D_WEIGHTS):
            tensor = tensor.t()
        hf_name = "transformer." + re.sub(r"^blocks\.(\d+)\.", r"h.\1.", name)
        hf_state[hf_name] = tensor.contiguous()
    return hf_state


def check_state(state: dict[str, torch.Tensor], expected: dict[str, torch.Size], where: Path) -> None:
    """Raise CheckpointError unless `state` holds exactly the `expected` tensors, floating point,
    finite and of the right shapes. A tied `lm_head.weight`, if present, must equal `wte.weight`;
    it is removed from `state` (the model ties the head itself)."""
    lm_head = state.pop("lm_head.weight", None)
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing:
        raise CheckpointError(
            f"{where} is missing the tensor {missing[0]!r}"
            + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
        )
    if extra:
        raise CheckpointError(
            f"{where} has an unexpected tensor {extra[0]!r}" + (f" and {len(extra) - 1} more" if len(extra) > 1 else "")
        )
    for name, shape in expected.items():
        if state[name].shape != shape:
            raise CheckpointError(
                f"{where}: tensor {name!r} has shape {tuple(state[name].shape)}, the config implies {tuple(shape)}"
            )
        if not state[name].is_floating_point():
            raise CheckpointError(f"{where}: tensor {name!r} is not floating point ({state[name].dtype})")
        if not torch.isfinite(state[name]).all():
            raise CheckpointError(f"{where}: tensor {name!r} contains NaN or infinite values")
    if lm_head is not None and not torch.equal(lm_head.to(state["wte.weight"].dtype), state["wte.weight"]):
        raise CheckpointError(f"{where}: lm_head.weight differs from wte.weight, but GPT-2 ties them")


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _check_fits(config: GPT2Config, weights_path: Path, name: str, dtype: torch.dtype) -> None:
    params = (
        config.vocab_size * config.embed_dim
        + config.block_size * config.embed_dim
        + config.num_layers * 12 * config.embed_dim**2
    )
    needed = params * torch.empty((), dtype=dtype).element_size() + weights_path.stat().st_size
    available = _available_memory()
    if available is not None and needed > available:
        raise ModelTooLargeError(
            f"{name!r} needs about {needed / 2**30:.1f} GiB of memory to load and this machine has {available / 2**30:.1f} GiB free"
        )


class Checkpoint(NamedTuple):
    config: GPT2Config
    state: dict[str, torch.Tensor]  # in this model's names, not yet checked against a model
    path: Path  # the weights file, for messages


def read_checkpoint(name_or_path, dtype: torch.dtype = torch.float32) -> Checkpoint:
    """The config and tensors of a checkpoint; refuses one that would not fit in memory in `dtype`."""
    config_path, weights_path = resolve_checkpoint(name_or_path)
    config = read_config(config_path)
    _check_fits(config, weights_path, str(name_or_path), dtype)
    try:
        hf_state = load_file(weights_path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights_path} is not a valid safetensors file ({exc})") from None
    return Checkpoint(config, hf_to_ours(hf_state), weights_path)


def write_checkpoint(config: GPT2Config, state: dict[str, torch.Tensor], directory, dtype=torch.float32) -> None:
    """Write config.json + model.safetensors that both our loader and transformers' GPT2LMHeadModel read."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: t.detach().to("cpu", dtype) for name, t in state.items()}
    save_file(ours_to_hf(state), directory / WEIGHTS_FILE, metadata={"format": "pt"})
    hf_config = config.to_hf_dict() | {"dtype": str(dtype).removeprefix("torch.")}
    (directory / CONFIG_FILE).write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
