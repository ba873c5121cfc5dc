"""Loading a checkpoint for generation: the device, the dtype, and a LoRA adapter checked against its
base before peft touches it (peft would fail deep inside, or silently leave a module unadapted)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Union

from common.jsonl import read_json_object
from train.config import quiet_known_warnings
from train.generate.decoding import GenerateError

PathLike = Union[str, "os.PathLike[str]"]
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def stored_chat_template(folder: PathLike) -> str | None:
    """The chat template saved with a tokenizer in ``folder`` (``chat_template`` of tokenizer_config.json,
    or transformers 5's chat_template.jinja), if any."""
    folder = Path(folder)
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8") or None
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return None
    template = read_json_object(config, GenerateError, "tokenizer config").get("chat_template")
    if isinstance(template, list):  # several named templates: the default one
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) and template else None


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GenerateError(f"device {device!r}: no CUDA device is visible")
    return device


def pick_dtype(device: str, dtype: str = "auto") -> Any:
    """fp32 on CPU; bf16 on a GPU that has it, else fp16."""
    import torch

    names = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if dtype != "auto":
        if dtype not in names:
            raise GenerateError(f"dtype must be auto, {', '.join(names)}; got {dtype!r}")
        return names[dtype]
    if device == "cpu":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _same_base(recorded: str, base: Path) -> bool:
    """An adapter records the base as the path (or hub name) it was trained from; the same model
    may sit elsewhere on this machine, so the folder name is what has to match."""
    rec = Path(recorded)
    try:
        if rec.exists() and os.path.samefile(rec, base):
            return True
    except OSError:
        pass
    return rec.name.lower() == base.resolve().name.lower()


def check_base_identity(lora_dir: Path, base_dir: Path, recorded: Any) -> None:
    """The base is the one the adapter was trained on: by its fingerprint where the adapter records one
    (``base_model.json``, :mod:`train.base_identity`), so a moved or copied base is found and another
    model of the same shapes refused; by the folder name for adapters written before that."""
    from train.base_identity import RECORD, BaseIdentityError, read_record, same_base

    try:
        record = read_record(lora_dir)
        if record is None:
            if recorded and not _same_base(str(recorded), base_dir):
                raise GenerateError(
                    f"--lora {lora_dir} was made for the base model {recorded!r}, not {str(base_dir)!r} "
                    f"(base_model_name_or_path in {ADAPTER_CONFIG}); pass --ignore-base-name if it is the same "
                    "model under another name")
            return
        same, mine = same_base(record, base_dir)
    except BaseIdentityError as exc:
        raise GenerateError(f"--lora {lora_dir}: {exc}") from None
    if not same:
        where = f" (trained at {record['path']})" if record.get("path") else ""
        theirs = record["fingerprint"] if record["method"] == mine["method"] else record["sampled"]
        ours = mine["fingerprint"] if record["method"] == mine["method"] else mine["sampled"]
        raise GenerateError(
            f"--lora {lora_dir} was made for the base model with fingerprint {theirs}{where}, but --base {base_dir} "
            f"has fingerprint {ours} ({RECORD}): another model, even if its shapes are the same; pass "
            "--ignore-base-name to apply the adapter anyway")


def adapter_tensor_shapes(lora_dir: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name → shape of an adapter's weights, read from the file header (no weights loaded
    for safetensors)."""
    for name in ADAPTER_WEIGHTS:
        path = lora_dir / name
        if not path.is_file():
            continue
        try:
            if name.endswith(".safetensors"):
                from safetensors import safe_open

                with safe_open(str(path), framework="pt") as f:
                    return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
            import torch

            state = torch.load(str(path), map_location="cpu", weights_only=True)
            return {k: tuple(v.shape) for k, v in state.items()}
        except Exception as exc:  # safetensors and torch raise several types for a damaged file
            raise GenerateError(f"{path}: cannot read the adapter weights ({type(exc).__name__}: {exc})") from exc
    raise GenerateError(f"{lora_dir}: no {' or '.join(ADAPTER_WEIGHTS)} (a peft save_pretrained folder has one)")


def check_adapter(lora_dir: PathLike, base_dir: PathLike, model: Any, ignore_base_name: bool = False) -> dict[str, Any]:
    """Refuse an adapter that was not made for ``model`` (loaded from ``base_dir``) before peft
    touches it: peft would otherwise fail deep inside with a size-mismatch traceback, or, for a
    missing module, silently leave it unadapted. Returns the adapter config."""
    lora_dir, base_dir = Path(lora_dir), Path(base_dir)
    if not lora_dir.is_dir():
        raise GenerateError(f"--lora {lora_dir}: not a folder")
    cfg = read_json_object(lora_dir / ADAPTER_CONFIG, GenerateError, "adapter config")
    if str(cfg.get("peft_type", "LORA")).upper() != "LORA":
        raise GenerateError(f"{lora_dir / ADAPTER_CONFIG}: peft_type is {cfg.get('peft_type')!r}, not LORA")
    recorded = cfg.get("base_model_name_or_path")
    if not ignore_base_name:
        check_base_identity(lora_dir, base_dir, recorded)
    shapes = adapter_tensor_shapes(lora_dir)
    modules = dict(model.named_modules())
    for key, shape in sorted(shapes.items()):
        for part in (".lora_A.", ".lora_B."):
            if part not in key:
                continue
            name = key.split(part)[0]
            for prefix in ("base_model.model.", "base_model."):
                if name.startswith(prefix):
                    name = name[len(prefix):]
                    break
            module = modules.get(name)
            if module is None:
                raise GenerateError(f"--lora {lora_dir}: tensor {key} adapts module {name!r}, which the base model "
                                    f"{base_dir} does not have: the adapter was made for another base model")
            in_f, out_f = getattr(module, "in_features", None), getattr(module, "out_features", None)
            if in_f is None or out_f is None:
                raise GenerateError(f"--lora {lora_dir}: tensor {key} adapts {name!r}, which is not a linear layer "
                                    f"in {base_dir}")
            got, want = (shape[1], in_f) if part == ".lora_A." else (shape[0], out_f)
            if len(shape) != 2 or got != want:
                side = "in_features" if part == ".lora_A." else "out_features"
                raise GenerateError(f"--lora {lora_dir}: tensor {key} has shape {list(shape)}, but {name} of the base "
                                    f"model {base_dir} has {side} {want}: the adapter was made for another base model")
    if not any(".lora_A." in k for k in shapes):
        raise GenerateError(f"--lora {lora_dir}: the adapter holds no lora_A/lora_B tensors")
    return cfg


def load_model(base: PathLike, lora: PathLike | None = None, load_8bit: bool = False, device: str = "auto",
               dtype: str = "auto", ignore_base_name: bool = False) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer padding on the left) from an HF checkpoint folder and an
    optional peft LoRA adapter. The tokenizer's chat template is the adapter's when it saved one (the
    template it was tuned with), else the base's."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from train.tokenizer import check_vocab, load_tokenizer

    base = Path(base)
    if not (base / "config.json").is_file():
        raise GenerateError(f"--base {base}: no config.json (expected a Hugging Face checkpoint folder)")
    device = pick_device(device)
    if load_8bit:
        if not device.startswith("cuda"):
            raise GenerateError("--load-8bit needs a CUDA GPU (bitsandbytes' 8-bit kernels do not run on the CPU); "
                                "drop --load-8bit to load in fp32 on the CPU")
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            raise GenerateError("--load-8bit needs the bitsandbytes package, which is not installed")
    torch_dtype = pick_dtype(device, dtype)
    tokenizer = load_tokenizer(base, padding_side="left")
    config = AutoConfig.from_pretrained(str(base))
    check_vocab(tokenizer, config.vocab_size, str(base))
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if load_8bit:
        from transformers import BitsAndBytesConfig

        kwargs.update(quantization_config=BitsAndBytesConfig(load_in_8bit=True), device_map={"": device})
    model = AutoModelForCausalLM.from_pretrained(str(base), **kwargs)
    if not load_8bit:
        model.to(device)
    if lora is not None:
        check_adapter(lora, base, model, ignore_base_name)
        from peft import PeftModel

        with warnings.catch_warnings():
            quiet_known_warnings()  # peft's use of a deprecated transformers API, on every load
            model = PeftModel.from_pretrained(model, str(lora), is_trainable=False)
        tuned_with = stored_chat_template(lora)
        if tuned_with:
            tokenizer.chat_template = tuned_with
    model.eval()  # generate() itself runs without gradients
    return model, tokenizer
