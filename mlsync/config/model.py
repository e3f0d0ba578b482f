"""The typed view of a desired-state file (pydantic v2).

Every mapping is closed (`extra="forbid"`): ML Commons silently drops unknown fields, so a typo has
to die here. Enum values are accepted in any letter case and normalised to one spelling; that
spelling is the file's conventional one (what the docs show), not the server's: the normaliser in
`mlsync.normalize` maps both sides to one comparable form.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StrictBool,
    StrictInt,
    WithJsonSchema,
    field_validator,
)

from mlsync.secrets import Secret

# --- enums (any letter case in, one spelling out) ----------------------------------------------

FUNCTION_NAMES = ("TEXT_EMBEDDING", "SPARSE_ENCODING", "SPARSE_TOKENIZE", "TEXT_SIMILARITY", "QUESTION_ANSWERING", "REMOTE")
SPARSE_FUNCTIONS = ("SPARSE_ENCODING", "SPARSE_TOKENIZE")
MODEL_FORMATS = ("TORCH_SCRIPT", "ONNX")
FRAMEWORK_TYPES = ("sentence_transformers", "huggingface_transformers", "huggingface_transformers_neuron")
POOLING_MODES = ("mean", "mean_sqrt_len", "max", "weightedmean", "cls", "lasttoken")
PROTOCOLS = ("http", "aws_sigv4")
ACCESS_MODES = ("public", "private", "restricted")
ACTION_TYPES = ("predict", "execute", "batch_predict", "cancel_batch_predict", "batch_predict_status")
HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
TIME_UNITS = ("NANOSECONDS", "MICROSECONDS", "MILLISECONDS", "SECONDS", "MINUTES", "HOURS", "DAYS")
BACKOFF_POLICIES = ("constant", "exponential_equal_jitter", "exponential_full_jitter")
GUARDRAIL_TYPES = ("local_regex", "model")
CLIENT_CONFIG_KEYS = ("max_connection", "connection_timeout", "read_timeout", "retry_backoff_millis",
                      "retry_timeout_seconds", "max_retry_times", "retry_backoff_policy")


def _enum(allowed: tuple[str, ...], description: str):
    """A string enum that accepts any letter case and yields the spelling in `allowed`."""
    by_fold = {a.casefold(): a for a in allowed}

    def check(value: Any) -> Any:
        if isinstance(value, str) and value.casefold() in by_fold:
            return by_fold[value.casefold()]
        raise ValueError(f"{value!r} is not one of: {', '.join(allowed)} (any letter case)")

    return Annotated[
        str,
        BeforeValidator(check),
        WithJsonSchema({"type": "string", "description": description, "enum": list(allowed),
                        "x-case-insensitive": True}),
    ]


FunctionName = _enum(FUNCTION_NAMES, "What the model does; `remote` for a model served through a connector.")
ModelFormat = _enum(MODEL_FORMATS, "Artifact format of a local model.")
FrameworkType = _enum(FRAMEWORK_TYPES, "Framework the model was exported from.")
PoolingMode = _enum(POOLING_MODES, "How token embeddings are pooled into one vector.")
Protocol = _enum(PROTOCOLS, "How ML Commons authenticates to the remote endpoint.")
AccessMode = _enum(ACCESS_MODES, "Who may use the object (only with model/connector access control on).")
ActionType = _enum(ACTION_TYPES, "What this connector action is for.")
HttpMethod = _enum(HTTP_METHODS, "HTTP method of the remote call.")
TimeUnit = _enum(TIME_UNITS, "Java TimeUnit name.")
BackoffPolicy = _enum(BACKOFF_POLICIES, "Retry back-off policy of the connector's HTTP client.")
GuardrailType = _enum(GUARDRAIL_TYPES, "Guardrail kind.")

# A secret string: masks itself everywhere; the JSON schema sees a plain string.
SecretValue = Annotated[
    Secret,
    PlainValidator(lambda v: v if isinstance(v, Secret) else Secret(_require_str(v))),
    PlainSerializer(lambda s: str(s), return_type=str),
    WithJsonSchema({"type": "string", "description": "Write-only secret; never printed or stored."}),
]


def _require_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {type(value).__name__}")
    return value


def _nonempty_name(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise ValueError("must not be empty")
    return value


Name = Annotated[str, BeforeValidator(_nonempty_name), Field(strict=True, min_length=1)]
PositiveInt = Annotated[StrictInt, Field(gt=0)]
NonNegativeInt = Annotated[StrictInt, Field(ge=0)]


def _minify_json(value: Any) -> Any:
    """`all_config` and interface schemas: a mapping becomes the minified JSON string the server stores."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=False, ensure_ascii=False)
    return value


JsonText = Annotated[
    str,
    BeforeValidator(_minify_json),
    WithJsonSchema({"description": "A mapping (minified to JSON by mlsync) or the JSON string itself.",
                    "type": ["object", "string"]}),
]


class Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Lifecycle(Closed):
    prevent_destroy: StrictBool = Field(False, description="A plan that would delete this resource fails.")


class AccessFields(Closed):
    access_mode: Optional[AccessMode] = None
    backend_roles: Optional[list[Annotated[str, Field(strict=True)]]] = Field(
        None, description="Backend roles that may use the object (access_mode restricted).")
    add_all_backend_roles: Optional[StrictBool] = Field(
        None, description="Grant all of the caller's backend roles (access_mode restricted).")


# --- connectors --------------------------------------------------------------------------------

class ConnectorAction(Closed):
    action_type: ActionType
    method: HttpMethod
    url: Annotated[str, Field(strict=True, min_length=1, description="Endpoint URL; may use ${parameters.x}.")]
    headers: Optional[dict[str, Annotated[str, Field(strict=True)]]] = Field(
        None, description="HTTP headers; may reference ${credential.x}.")
    request_body: Optional[Annotated[str, Field(strict=True)]] = Field(
        None, description="Request body template (a string, usually JSON with ${parameters.x}).")
    pre_process_function: Optional[Annotated[str, Field(strict=True)]] = None
    post_process_function: Optional[Annotated[str, Field(strict=True)]] = None


class ClientConfig(Closed):
    max_connection: Optional[PositiveInt] = None
    connection_timeout: Optional[NonNegativeInt] = Field(None, description="Seconds.")
    read_timeout: Optional[NonNegativeInt] = Field(None, description="Seconds.")
    retry_backoff_millis: Optional[NonNegativeInt] = None
    retry_timeout_seconds: Optional[NonNegativeInt] = None
    max_retry_times: Optional[Annotated[StrictInt, Field(ge=-1)]] = None
    retry_backoff_policy: Optional[BackoffPolicy] = None


def _version_text(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a string or a number")
    if isinstance(value, (int, float)):
        return str(value)
    return value


ConnectorVersion = Annotated[
    str, BeforeValidator(_version_text),
    WithJsonSchema({"type": ["string", "number"], "description": "Connector version (stored as a string)."}),
]


class InlineConnector(Closed):
    """A connector that lives inside one remote model (ML Commons' "internal connector")."""

    name: Optional[Name] = None
    description: Optional[str] = None
    version: Optional[ConnectorVersion] = None
    protocol: Protocol
    parameters: Optional[dict[str, Any]] = Field(None, description="Any scalar, list or mapping; the server stringifies values.")
    credential: Optional[dict[str, SecretValue]] = Field(None, description="Write-only; never printed or stored in clear.")
    actions: Annotated[list[ConnectorAction], Field(min_length=1)]
    client_config: Optional[ClientConfig] = None


class Connector(AccessFields):
    name: Name
    description: Optional[str] = None
    version: ConnectorVersion = Field("1")
    protocol: Protocol
    parameters: Optional[dict[str, Any]] = Field(None, description="Any scalar, list or mapping; the server stringifies values.")
    credential: Annotated[dict[str, SecretValue], Field(min_length=1, description="Write-only; never printed or stored in clear.")]
    actions: Annotated[list[ConnectorAction], Field(min_length=1)]
    client_config: Optional[ClientConfig] = None
    lifecycle: Lifecycle = Lifecycle()


# --- model groups ------------------------------------------------------------------------------

class ModelGroup(AccessFields):
    name: Name
    description: Optional[str] = None
    lifecycle: Lifecycle = Lifecycle()


# --- models ------------------------------------------------------------------------------------

class ModelConfig(Closed):
    model_type: Optional[Annotated[str, Field(strict=True)]] = None
    embedding_dimension: Optional[PositiveInt] = None
    framework_type: Optional[FrameworkType] = None
    all_config: Optional[JsonText] = None
    pooling_mode: Optional[PoolingMode] = None
    normalize_result: Optional[StrictBool] = None
    model_max_length: Optional[PositiveInt] = None
    query_prefix: Optional[str] = None
    passage_prefix: Optional[str] = None


def _limit_text(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a positive number")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ValueError("must be a positive number")
        return str(value)
    if isinstance(value, str):
        try:
            if float(value) <= 0:
                raise ValueError
        except ValueError:
            raise ValueError("must be a positive number") from None
    return value


class RateLimiter(Closed):
    limit: Annotated[str, BeforeValidator(_limit_text),
                     WithJsonSchema({"type": ["number", "string"], "description": "Requests per unit (positive)."})]
    unit: TimeUnit


class Interface(Closed):
    input: Optional[JsonText] = Field(None, description="JSON schema of the predict input.")
    output: Optional[JsonText] = Field(None, description="JSON schema of the predict output.")


class Guardrails(Closed):
    type: GuardrailType
    input_guardrail: Optional[dict[str, Any]] = None
    output_guardrail: Optional[dict[str, Any]] = None


class DeploySetting(Closed):
    is_auto_deploy_enabled: Optional[StrictBool] = None
    model_ttl_minutes: Optional[NonNegativeInt] = None


class VersionFields(Closed):
    """Fields a model sets as defaults and each of its versions may override."""

    description: Optional[str] = None
    model_format: Optional[ModelFormat] = None
    model_config_: Optional[ModelConfig] = Field(None, alias="model_config")
    model_content_hash_value: Optional[Annotated[str, Field(strict=True)]] = Field(
        None, description="SHA-256 of the zip: 64 hex characters.")
    url: Optional[Annotated[str, Field(strict=True)]] = Field(None, description="http, https, ftp or file URL of the zip.")
    path: Optional[Annotated[str, Field(strict=True)]] = Field(
        None, description="Local zip, relative to this file; hashed and uploaded in chunks.")
    is_enabled: Optional[StrictBool] = None
    rate_limiter: Optional[RateLimiter] = None
    interface: Optional[Interface] = None
    guardrails: Optional[Guardrails] = None
    deploy: Optional[StrictBool] = Field(None, description="Whether the version is deployed.")
    deploy_setting: Optional[DeploySetting] = None
    lifecycle: Optional[Lifecycle] = None


class ModelVersion(VersionFields):
    version: Annotated[str, BeforeValidator(_version_text), Field(min_length=1),
                       WithJsonSchema({"type": ["string", "number"],
                                       "description": "Your label; the server numbers versions itself."})]


class Model(VersionFields, AccessFields):
    name: Name
    model_group: Optional[Name] = Field(None, description="A model_groups[].name; omitted: an implicit group named after the model.")
    function_name: FunctionName = "TEXT_EMBEDDING"
    connector: Optional[Union[Name, InlineConnector]] = Field(
        None, description="Remote models: a connectors[].name or an inline connector.")
    versions: Optional[list[ModelVersion]] = None

    @property
    def is_remote(self) -> bool:
        return self.function_name == "REMOTE"


class StackFile(Closed):
    version: Literal[1] = Field(description="Format version of this file (only 1 exists).")
    stack: Name = Field(description="Names what this file manages; state is kept per stack.")
    connectors: list[Connector] = Field(default_factory=list)
    model_groups: list[ModelGroup] = Field(default_factory=list)
    models: list[Model] = Field(default_factory=list)

    @field_validator("version", mode="before")
    @classmethod
    def _only_one(cls, value: Any) -> Any:
        if value != 1 or isinstance(value, bool):
            raise ValueError("only format version 1 exists")
        return value
