"""What a credential looks like, so that one is refused where it would be written and redacted where it is.

Keys come from the environment only. Anything key-shaped that arrives elsewhere is caught by its shape: a
field whose name says credential in any spelling (`api_key`, `API_KEY`, `apikey`, `api-key`), a value that is
a provider's key (`sk-...`), a URL with a password in it (`https://user:key@host`), an environment variable
for a credential set through Hydra (`hydra.job.env_set.OPENAI_API_KEY`).
"""
from __future__ import annotations

import re

from .errors import ConfigError

CREDENTIAL_NAMES = frozenset({"apikey", "azureadtoken", "organization", "apikeyvalue", "token", "accesstoken",
                              "secret", "secretkey", "password", "bearer"})
KEY_VALUE = re.compile(r"\b(sk|rk|pk)-[A-Za-z0-9_-]{16,}|\bBearer\s+\S{16,}")  # OpenAI-style keys, bearer tokens
URL_PASSWORD = re.compile(r"(://[^:/@\s]+):[^@/\s]+@")  # scheme://user:PASSWORD@host
CREDENTIAL_VARIABLE = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL)", re.IGNORECASE)
VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENDPOINT_FIELDS = ("base_url", "api_base", "azure_endpoint", "api_type", "api_version", "config_list")


def refuse_endpoints(config: dict, source: str) -> None:
    """A config read from a file or the registry may not say where requests go: the key from the environment
    would follow it to any host. Where a model is served is the model file's to say (conf/model/NAME.yaml)."""
    found = [k for k in ENDPOINT_FIELDS if isinstance(config, dict) and config.get(k) is not None]
    if found:
        model = config.get("model", "NAME")
        raise ConfigError(f"{source} sets {', '.join(found)}: a saved or registered config cannot choose where "
                          "requests, and the API key from your environment, are sent. Say where the model is "
                          f"served in conf/model/{model}.yaml (base_url, api_key_env), or pass a config_list in "
                          "code; then remove it from the config")


def is_credential_name(name: str) -> bool:
    """`api_key`, `API_KEY`, `apikey`, `api-key`: a field that holds a credential, in any spelling."""
    return re.sub(r"[^a-z]", "", str(name).lower()) in CREDENTIAL_NAMES


def redact_text(text: str) -> str:
    """Key-shaped values and URL passwords replaced by *** (for values written to logs, MLflow, files)."""
    return URL_PASSWORD.sub(r"\1:***@", KEY_VALUE.sub("***", text))


def command_line_refusal(arg: str) -> str | None:
    """Why a Hydra override must not be taken (it would be written to .hydra/*.yaml first), or None."""
    if "=" not in arg:
        return None
    key, value = arg.split("=", 1)
    key = key.lstrip("+~")
    field = key.rsplit(".", 1)[-1]
    if is_credential_name(field):
        return f"{key}: credentials are never taken from the command line"
    if key.startswith("hydra.job.env_set.") and CREDENTIAL_VARIABLE.search(field):
        return f"{key}: a credential variable is never set from the command line"
    if field == "api_key_env" and value and not VARIABLE_NAME.match(value.strip("'\"")):
        return f"{key}: takes the NAME of an environment variable (e.g. OPENAI_API_KEY), and this is not one"
    if KEY_VALUE.search(value):
        return f"{key}: its value looks like a key"
    if URL_PASSWORD.search(value):
        return f"{key}: its value is a URL with a password in it"
    return None
