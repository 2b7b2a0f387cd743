"""Trained models kept after a run, and reading them back into exactly the model that produced the record.

A saved model is one folder (default runs/models/<suite>/<method>/<hash12>-seed<k>/, laid out like the record):
    model.json          what rebuilds the network: the run's resolved config (suite, method and options, lr),
                        seed, config hash, backbone and the sha256 of its pretrained weights file, and the
                        record's metrics (so a re-evaluation can say whether it reproduces them)
    model.safetensors   what training changed: the trainable parameters (method + decoder) and the buffers
                        (BatchNorm statistics; a few KB)
    peft/               peft-based methods only: adapter_config.json + adapter_model.safetensors as
                        PeftModel.save_pretrained writes them, so `PeftModel.from_pretrained(clip, "peft")` puts
                        the trained adapter into the same CLIP (the decoder stays in model.safetensors); a
                        combination of peft methods (lora+loha) has one such folder per adapter, peft/<name>/
    selected/           runs that selected a checkpoint (suite key select_every) at another step than the last:
                        the selected weights, as model.safetensors (+ peft/) again
The top-level weights are the last step's, which the record's `results` (and leaderboards) report; model.json's
`selection` says which step was selected and where its weights are (`selected`, or `.` when the last step was
the best), with the metrics the record's `selection` reports for them.
The frozen backbone is not copied: it is rebuilt from the pretrained weights the sha256 identifies. The folder
is written under a temporary name and renamed, so it is either complete or absent.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from benchmarks import validate
from benchmarks.build import backbone_config, build_model
from benchmarks.checkpoint import trained_weights, weights_loaded
from benchmarks.store import ResultStore, RunSpec, read_json
from benchmarks.suites import Suite
from methods.backbone import pretrained_file
from methods.model import RISModel
from methods.registry import get_method
from riscore.errors import UserError

FORMAT = "risbench-model/1"
CONFIG_FILE = "model.json"
WEIGHTS_FILE = "model.safetensors"
PEFT_DIR = "peft"
SELECTED_DIR = "selected"
WEIGHTS = ("last", "selected")  # which weights of a saved model to use
DEFAULT_WEIGHTS = "last"  # what a record's `results`, its headline, report
SHA256 = re.compile(r"[0-9a-f]{64}")
MODELS_ENV = "RISBENCH_MODELS"  # where saved models go when --models-dir is not given
REPO = Path(__file__).resolve().parent.parent
_UMASK = os.umask(0)
os.umask(_UMASK)


def default_models_root() -> Path:
    return Path(os.environ.get(MODELS_ENV) or REPO / "runs" / "models")


def folder_for(root: Path, store: ResultStore, spec: RunSpec) -> Path:
    """The saved model of `spec` under `root`, named like its record: <suite>/<method>/<hash12>-seed<k>/."""
    return Path(root) / store.path_for(spec).relative_to(store.root).with_suffix("")


def backbone_sha256(suite: Suite) -> str | None:
    """sha256 of the suite's pretrained weights file (None for a randomly initialised backbone)."""
    path = pretrained_file(backbone_config(suite))
    if path is None:
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _peft_adapters(model: RISModel) -> dict[str, Any]:
    """adapter name -> peft config of the adapters peft injected into the CLIP module (none for other methods)."""
    return dict(getattr(model.backbone.clip, "peft_config", None) or {})


def save_model(folder: Path, model: RISModel, spec: RunSpec, record: dict[str, Any],
               selected_weights: dict[str, torch.Tensor] | None = None) -> Path:
    """Write the saved model of a finished run to `folder` atomically (a previous one there is replaced):
    `model`'s weights, and `selected_weights` when the record's `selection` chose another step than the last."""
    weights = {name: tensor.clone() for name, tensor in trained_weights(model).items()}  # no shared storage
    adapters = _peft_adapters(model)
    selection = record.get("selection")
    separate = selection is not None and selection["step"] != record["train_info"]["steps_done"]
    if separate and selected_weights is None:
        raise ValueError(f"the record selected step {selection['step']}, but its weights were not given")
    config = {
        "format": FORMAT,
        "method": spec.method,
        "method_config": spec.config()["method_config"],
        "suite": spec.suite.name,
        "backbone": spec.suite.backbone,
        "pretrained": spec.suite.pretrained,
        "backbone_sha256": backbone_sha256(spec.suite),
        "lr": spec.lr,
        "seed": spec.seed,
        "config_hash": spec.config_hash,
        "off_budget": spec.off_budget,
        "parameters_saved": sum(t.numel() for t in weights.values()),
        "peft_adapter": PEFT_DIR if adapters else None,
        "recorded_results": record.get("results", {}),
        "selection": None if selection is None else {
            "split": selection["split"], "step": selection["step"], "score": selection["score"],
            "weights": SELECTED_DIR if separate else ".", "recorded_results": selection["results"]},
        "config": spec.config(),
    }
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        os.chmod(staging, 0o777 & ~_UMASK)  # mkdtemp makes 0700; published folders get the usual permissions
        _write_weights(weights, model, adapters, staging)
        if separate:
            with weights_loaded(model, selected_weights):
                _write_weights(trained_weights(model), model, adapters, staging / SELECTED_DIR)
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        for written in staging.rglob("*"):  # safetensors writes 0600
            os.chmod(written, (0o777 if written.is_dir() else 0o666) & ~_UMASK)
        _publish(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def _write_weights(weights: dict[str, torch.Tensor], model: RISModel, adapters: dict[str, Any], out: Path) -> None:
    """model.safetensors (+ peft/) into `out`: `weights`, which `model` holds."""
    out.mkdir(exist_ok=True)
    save_file(weights, str(out / WEIGHTS_FILE), metadata={"format": FORMAT})
    if adapters:
        _save_peft(model, adapters, out / PEFT_DIR)


def _save_peft(model: RISModel, adapters: dict[str, Any], out: Path) -> None:
    """peft's adapter format (what PeftModel.save_pretrained writes for one adapter), relative to the CLIP module:
    in `out` itself for one adapter; one subfolder per adapter name for a combination of peft methods."""
    if len(adapters) == 1:
        (name, peft_config), = adapters.items()
        _save_one_adapter(model, name, peft_config, out)
        return
    out.mkdir()
    for name, peft_config in adapters.items():
        _save_one_adapter(model, name, peft_config, out / name)


def _save_one_adapter(model: RISModel, name: str, peft_config: Any, out: Path) -> None:
    from peft import get_peft_model_state_dict

    out.mkdir()
    peft_config.save_pretrained(str(out))
    state = get_peft_model_state_dict(model.backbone.clip, adapter_name=name)
    # PeftModel.save_pretrained's layout: the wrapped module is `base_model.model`, so that
    # PeftModel.from_pretrained(clip, folder) finds every adapter weight.
    save_file({f"base_model.model.{k}": v.detach().cpu().contiguous().clone() for k, v in state.items()},
              str(out / "adapter_model.safetensors"), metadata={"format": "pt"})


def _publish(staging: Path, folder: Path) -> None:
    """Rename the complete staging folder into place; a folder already there is moved aside first, then removed."""
    old = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        os.replace(folder, old)
    os.replace(staging, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _check_fields(config: dict[str, Any]) -> None:
    """The fields of model.json that its config hash does not cover (the seed, the backbone's sha256, the
    recorded metrics and the selection): a garbled one must be refused before it becomes a run identity or a
    weights path. The hashed `config` itself is checked by rebuilding it."""
    if not isinstance(config.get("config"), dict) or not isinstance(config["config"].get("suite"), dict):
        raise UserError(f"config={config.get('config')!r}: expected the run's resolved config with its suite table")
    validate.seed(config.get("seed"), "seed")
    validate.boolean(config.get("off_budget", False), "off_budget")
    sha = config.get("backbone_sha256")
    if sha is not None and not (isinstance(sha, str) and SHA256.fullmatch(sha)):
        raise UserError(f"backbone_sha256={sha!r}: expected 64 hex digits or null")
    if not isinstance(config.get("recorded_results", {}), dict):
        raise UserError(f"recorded_results={config['recorded_results']!r}: expected a table of splits")
    selection = config.get("selection")
    if selection is None:
        return
    if not isinstance(selection, dict):
        raise UserError(f"selection={selection!r}: expected a table or null")
    if selection.get("weights") not in (".", SELECTED_DIR):
        raise UserError(f"selection.weights={selection.get('weights')!r}: expected '.' or '{SELECTED_DIR}'")
    if not isinstance(selection.get("split"), str):
        raise UserError(f"selection.split={selection.get('split')!r}: expected a split name")
    validate.integer(selection.get("step"), "selection.step")
    validate.number(selection.get("score"), "selection.score", 0.0, 100.0)
    if not isinstance(selection.get("recorded_results"), dict):
        raise UserError(f"selection.recorded_results={selection.get('recorded_results')!r}: expected a table")


@dataclass(frozen=True)
class SavedModel:
    """A saved model's folder, its config and the run identity that config rebuilds."""

    folder: Path
    config: dict[str, Any]
    spec: RunSpec

    @classmethod
    def open(cls, path: str | Path) -> SavedModel:
        """Read and check a saved model folder (or its model.json); bad paths and foreign files are UserErrors."""
        path = Path(path)
        folder = path.parent if path.name == CONFIG_FILE else path
        config_path = folder / CONFIG_FILE
        if not folder.exists():
            raise UserError(f"--model {path}: no such folder; give a saved model folder such as "
                            "runs/models/<suite>/<method>/<hash>-seed<k>")
        if not config_path.is_file() or not (folder / WEIGHTS_FILE).is_file():
            raise UserError(f"--model {path}: not a saved model (needs {CONFIG_FILE} and {WEIGHTS_FILE}); "
                            "bench saves one per finished run under runs/models/")
        try:
            config = read_json(config_path, "model config")
        except ValueError as exc:
            raise UserError(f"--model {path}: {CONFIG_FILE} is {exc}") from None
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise UserError(f"--model {path}: {CONFIG_FILE} is not a {FORMAT} config")
        try:
            _check_fields(config)
        except UserError as exc:
            raise UserError(f"--model {path}: {CONFIG_FILE} field {exc}; re-run bench to save it again") from None
        try:
            resolved = config["config"]
            suite = Suite.from_dict(resolved["suite"])
            method = get_method(resolved["method"])
            spec = RunSpec(suite=suite, method=method.name, method_config=method.make_config(resolved["method_config"]),
                           lr=resolved["lr"], seed=config["seed"], off_budget=config.get("off_budget", False))
        except (KeyError, TypeError) as exc:
            raise UserError(f"--model {path}: {CONFIG_FILE} lacks or garbles {exc}") from None
        if spec.config_hash != config.get("config_hash"):
            raise UserError(f"--model {path}: its config no longer hashes to {config.get('config_hash', '?')[:12]} "
                            "(saved by another version of risbench's configs); re-run bench to save it again")
        return cls(folder, config, spec)

    def check_suite(self, suite: Suite) -> None:
        """Refuse a suite whose model differs from the one this was trained in (backbone, weights, input sizes)."""
        trained = self.spec.suite
        for key in ("backbone", "pretrained", "image_size", "text_len", "decoder_scale", "quick_gelu", "attnpool",
                    "gate", "decoder_options"):
            if getattr(suite, key) != getattr(trained, key):
                raise UserError(f"model {self.folder} was trained with {key} {getattr(trained, key)!r}; suite "
                                f"'{suite.name}' has {getattr(suite, key)!r}: use a suite on the same backbone")
        sha = backbone_sha256(suite)
        if sha != self.config["backbone_sha256"]:
            raise UserError(f"model {self.folder} was trained on {trained.backbone} weights with sha256 "
                            f"{str(self.config['backbone_sha256'])[:12]}; {suite.pretrained_source()} has "
                            f"{str(sha)[:12]}: not the backbone it was trained on")

    def weights_folder(self, weights: str = DEFAULT_WEIGHTS) -> Path:
        """Where the `weights` ("last" or "selected") are; a model whose run did not select has no selected ones."""
        if weights not in WEIGHTS:
            raise ValueError(f"weights {weights!r}: expected one of {WEIGHTS}")
        if weights == "last":
            return self.folder
        selection = self.config.get("selection")
        if not selection:
            raise UserError(f"model {self.folder}: its run did not select a checkpoint (suite key select_every = 0); "
                            "use --weights last")
        return self.folder / selection["weights"]

    def recorded_results(self, weights: str = DEFAULT_WEIGHTS) -> dict[str, Any]:
        """The metrics the record reports for `weights`: its `results` (last), or its `selection`'s (selected)."""
        self.weights_folder(weights)  # refuses "selected" without a selection
        return (self.config.get("recorded_results") if weights == "last" else
                self.config["selection"]["recorded_results"]) or {}

    def describe(self, weights: str = DEFAULT_WEIGHTS) -> str:
        """Which weights, in words: 'last step 30' or 'selected step 20 (val mIoU 41.20)'."""
        if weights == "last":
            return f"last step {self.spec.suite.steps}"
        selection = self.config["selection"]
        return f"selected step {selection['step']} ({selection['split']} mIoU {selection['score']:.2f})"

    def load_into(self, model: RISModel, weights: str = DEFAULT_WEIGHTS) -> RISModel:
        """Put the saved `weights` into `model` (built from `spec`); everything that trained must be covered."""
        path = self.weights_folder(weights) / WEIGHTS_FILE
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise UserError(f"model {self.folder}: cannot read {path.relative_to(self.folder)}: {exc}") from None
        expected = set(trained_weights(model))
        if set(state) != expected:
            extra, missing = sorted(set(state) - expected), sorted(expected - set(state))
            raise UserError(f"model {self.folder} does not fit {self.spec.method}: extra {extra[:3]}, "
                            f"missing {missing[:3]}; if an older risbench saved it, save it again with "
                            f"`bench ... --force`")
        with torch.no_grad():
            model.load_state_dict(state, strict=False)
        return model

    def build(self, device: torch.device, suite: Suite | None = None, weights: str = DEFAULT_WEIGHTS) -> RISModel:
        """The run's model with its trained `weights` ("last" or "selected"), in eval mode, for `suite` (default:
        the one it trained in)."""
        suite = suite or self.spec.suite
        self.check_suite(suite)
        model = build_model(suite, self.spec.method, self.spec.method_config)
        return self.load_into(model, weights).to(device).eval()
