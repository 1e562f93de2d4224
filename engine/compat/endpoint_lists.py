"""The seed library's (pyautogen 0.1.x) endpoint-list helpers, with their signatures and meaning.

Code written for 0.1.x builds its `config_list` with these; here they return the same lists, so that code runs
with a changed import. Unlike 0.1.x they never write a key anywhere (0.1.x wrote keys to a temporary file and
into `os.environ`): keys are read from the files or environment the caller points to and stay in the list, in
memory; the engine redacts them from everything it writes (`engine.core.redaction`).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional

from dotenv import dotenv_values, find_dotenv

logger = logging.getLogger("engine")

AOAI_API_VERSION = "2023-07-01-preview"  # what 0.1.14's config_list_openai_aoai puts in its Azure entries
DEFAULT_DOTENV_MODELS = ("gpt-4", "gpt-3.5-turbo")


def filter_config(config_list: List[Dict], filter_dict: Optional[Dict]) -> List[Dict]:
    """The entries whose every `filter_dict` key has one of the listed values (None: the key may be missing)."""
    if not filter_dict:
        return config_list
    return [c for c in config_list if all(c.get(key) in values for key, values in filter_dict.items())]


def config_list_from_json(env_or_file: str, file_location: Optional[str] = "",
                          filter_dict: Optional[Dict] = None) -> List[Dict]:
    """A list from the JSON in the environment variable `env_or_file`, else in the file of that name under
    `file_location`; filtered by `filter_dict`. A missing file gives [] and a warning, as in 0.1.x."""
    text = os.environ.get(env_or_file)
    if text:
        config_list = json.loads(text)
    else:
        path = os.path.join(file_location or "", env_or_file)
        try:
            with open(path) as f:
                config_list = json.load(f)
        except FileNotFoundError:
            logger.warning("The specified config_list file %r does not exist.", path)
            return []
    if not isinstance(config_list, list) or not all(isinstance(c, dict) for c in config_list):
        raise ValueError(f"{env_or_file}: a config list must be a JSON list of objects")
    return filter_config(config_list, filter_dict)


def get_config(api_key: str, api_base: Optional[str] = None, api_type: Optional[str] = None,
               api_version: Optional[str] = None) -> Dict:
    """One entry: the key plus whichever of api_base, api_type, api_version are set."""
    config = {"api_key": api_key}
    for name, value in (("api_base", api_base), ("api_type", api_type), ("api_version", api_version)):
        if value:
            config[name] = value
    return config


def get_config_list(api_keys: List, api_bases: Optional[List] = None, api_type: Optional[str] = None,
                    api_version: Optional[str] = None) -> List[Dict]:
    """One entry per non-blank key (with the api_base of the same index)."""
    out = []
    for i, api_key in enumerate(api_keys):
        if not api_key or not api_key.strip():
            continue
        out.append(get_config(api_key, api_bases[i] if api_bases else None, api_type, api_version))
    return out


def _read(env: str, folder: str, name: str) -> str:
    """The environment variable, else the content of the file (0.1.x's key_openai.txt & co), else ''."""
    if env in os.environ:
        return os.environ[env]
    try:
        return Path(folder or ".", name).read_text().strip()
    except FileNotFoundError:
        return ""


def config_list_openai_aoai(key_file_path: Optional[str] = ".", openai_api_key_file: Optional[str] = "key_openai.txt",
                            aoai_api_key_file: Optional[str] = "key_aoai.txt",
                            aoai_api_base_file: Optional[str] = "base_aoai.txt",
                            exclude: Optional[str] = None) -> List[Dict]:
    """OpenAI entries (OPENAI_API_KEY or key_openai.txt, one key a line) then Azure ones (AZURE_OPENAI_API_KEY /
    key_aoai.txt with AZURE_OPENAI_API_BASE / base_aoai.txt, line by line); `exclude` is "openai" or "aoai"."""
    openai_list = [] if exclude == "openai" else get_config_list(
        _read("OPENAI_API_KEY", key_file_path, openai_api_key_file).split("\n"))
    aoai_list = [] if exclude == "aoai" else get_config_list(
        _read("AZURE_OPENAI_API_KEY", key_file_path, aoai_api_key_file).split("\n"),
        api_bases=_read("AZURE_OPENAI_API_BASE", key_file_path, aoai_api_base_file).split("\n"),
        api_type="azure", api_version=AOAI_API_VERSION)
    return openai_list + aoai_list


def config_list_from_models(key_file_path: Optional[str] = ".", openai_api_key_file: Optional[str] = "key_openai.txt",
                            aoai_api_key_file: Optional[str] = "key_aoai.txt",
                            aoai_api_base_file: Optional[str] = "base_aoai.txt", exclude: Optional[str] = None,
                            model_list: Optional[list] = None) -> List[Dict]:
    """`config_list_openai_aoai`, repeated for each model of `model_list` (model-major order)."""
    config_list = config_list_openai_aoai(key_file_path, openai_api_key_file, aoai_api_key_file, aoai_api_base_file,
                                          exclude)
    if model_list:
        config_list = [{**config, "model": model} for model in model_list for config in config_list]
    return config_list


def config_list_gpt4_gpt35(key_file_path: Optional[str] = ".", openai_api_key_file: Optional[str] = "key_openai.txt",
                           aoai_api_key_file: Optional[str] = "key_aoai.txt",
                           aoai_api_base_file: Optional[str] = "base_aoai.txt",
                           exclude: Optional[str] = None) -> List[Dict]:
    return config_list_from_models(key_file_path, openai_api_key_file, aoai_api_key_file, aoai_api_base_file,
                                   exclude, model_list=list(DEFAULT_DOTENV_MODELS))


def config_list_from_dotenv(dotenv_file_path: Optional[str] = None, model_api_key_map: Optional[dict] = None,
                            filter_dict: Optional[dict] = None) -> List[Dict]:
    """One entry per model of `model_api_key_map` (model -> the variable holding its key, or a dict with
    `api_key_env_var` and api_base/api_type/api_version), keys from the .env file, else the environment.
    gpt-4 and gpt-3.5-turbo on OPENAI_API_KEY are always considered; a model without a key is skipped.
    The .env file is read, not loaded into os.environ."""
    if dotenv_file_path:
        path = Path(dotenv_file_path)
        if not path.exists():
            logger.warning("The specified .env file %s does not exist.", path)
        values = dotenv_values(path) if path.exists() else {}
    else:
        found = find_dotenv(usecwd=True)
        if not found:
            logger.warning("No .env file found. Loading configurations from environment variables.")
        values = dotenv_values(found) if found else {}

    def lookup(name: str) -> Optional[str]:
        return os.environ.get(name) or values.get(name)

    key_map = dict(model_api_key_map or {})
    for model in DEFAULT_DOTENV_MODELS:
        key_map.setdefault(model, "OPENAI_API_KEY")
    config_list = []
    for model, spec in key_map.items():
        if isinstance(spec, str):
            entry = get_config(api_key=lookup(spec))
        elif isinstance(spec, dict):
            rest = {k: v for k, v in spec.items() if k != "api_key_env_var"}
            entry = get_config(api_key=lookup(spec.get("api_key_env_var", "OPENAI_API_KEY")), **rest)
        else:
            logger.warning("Unsupported type %s for model %s configuration", type(spec), model)
            continue
        if not entry["api_key"] or not entry["api_key"].strip():
            logger.warning("API key not found or empty for model %s. Please ensure path to .env file is correct.",
                           model)
            continue
        entry["model"] = model
        config_list.append(entry)
    config_list = filter_config(config_list, filter_dict)
    if not config_list:
        logger.error("No configurations loaded.")
    return config_list
