"""The typed view of a desired-state file.

The classes are records of `mlsync.input.declare`, written as pydantic classes would be (mlsync
used pydantic until importing it cost more than the rest of `validate`); `mlsync.input.validator`
validates a tree into them, `mlsync.input.schema` makes the JSON Schema from them. Annotations must
be objects, not strings: no `from __future__ import annotations` here, and a class used in an
annotation is defined above it.

Every mapping is closed (`extra="forbid"`): ML Commons silently drops unknown fields, so a typo has
to die here. Enum values are accepted in any letter case and normalised to one spelling; that
spelling is the file's conventional one (what the docs show), not the server's: the normaliser in
`mlsync.core.normalize` maps both sides to one comparable form.

These classes are also the source of `schemas/mlsync.schema.json` (see `mlsync.input.schema`):
every field carries a `description` (editors show it on hover), and every custom type declares the
JSON Schema that accepts exactly what its validator accepts. `tests/config/test_schema_agreement.py`
keeps the two in agreement.

What the rest of the code can rely on after validation:
- `Model.versions` holds *effective* versions: model-level fields are defaults that each version
  may override (nested objects such as `model_config` merge key by key), already applied.
- `Model.group_name` is the group a model belongs to: its `model_group`, or its own name when it
  has an implicit group; `StackFile.all_model_groups()` lists declared and implicit groups.
- Version labels and connector versions are strings (a YAML `1.10` stays "1.10" when loaded
  through `mlsync.input.load`, which hands over the source text of numeric labels).
- Connector credential values are `Secret`s.
"""

import difflib
import json
import math
import re
from typing import Annotated, Any, Literal, Optional, Union

from mlsync.input.declare import (
    BeforeValidator,
    Discriminator,
    Field,
    PlainValidator,
    PrivateAttr,
    Record,
    Strict,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from mlsync.core.secrets import Secret
from mlsync.core.normalize import CLIENT_CONFIG_DEFAULTS

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
CLIENT_CONFIG_KEYS = tuple(CLIENT_CONFIG_DEFAULTS)   # the API's seven keys
ACCESS_FIELDS = ("access_mode", "backend_roles", "add_all_backend_roles")


def show(value: Any, limit: int = 60) -> str:
    """A short, printable rendering of an input value for an error message (never used for secrets)."""
    if isinstance(value, Secret):
        return str(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _case_insensitive_pattern(allowed: tuple[str, ...]) -> str:
    """An ECMA-262 and Python compatible regex that matches any letter case of the allowed values."""
    def one(word: str) -> str:
        return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)
    return "^(?:" + "|".join(one(a) for a in allowed) + ")$"


def _enum(allowed: tuple[str, ...], description: str):
    """A string enum that accepts any letter case and yields the spelling in `allowed`."""
    by_fold = {a.lower(): a for a in allowed}

    def check(value: Any) -> Any:
        # ASCII letter case only (str.casefold would also fold e.g. the long s "ſ" to "s")
        if isinstance(value, str) and value.isascii() and value.lower() in by_fold:
            return by_fold[value.lower()]
        hint = ""
        if isinstance(value, str):
            close = difflib.get_close_matches(value.lower(), list(by_fold), n=1, cutoff=0.75)
            if close:
                hint = f"; did you mean {by_fold[close[0]]!r}?"
        raise ValueError(f"invalid value {show(value)}{hint} (allowed: {', '.join(allowed)}; any letter case)")

    return Annotated[
        str,
        BeforeValidator(check),
        WithJsonSchema({
            "type": "string",
            "description": description + " Any letter case.",
            "anyOf": [{"enum": list(allowed)}, {"pattern": _case_insensitive_pattern(allowed)}],
        }),
    ]


FunctionName = _enum(FUNCTION_NAMES, "What the model does; `remote` for a model served through a connector.")
ModelFormat = _enum(MODEL_FORMATS, "Artifact format of a local model.")
FrameworkType = _enum(FRAMEWORK_TYPES, "Framework the model was exported from.")
PoolingMode = _enum(POOLING_MODES, "How token embeddings are pooled into one vector.")
Protocol = _enum(PROTOCOLS, "How ML Commons authenticates to the remote endpoint.")
AccessMode = _enum(ACCESS_MODES, "Who may use the object (only when the cluster has access control on).")
ActionType = _enum(ACTION_TYPES, "What this connector action is for.")
HttpMethod = _enum(HTTP_METHODS, "HTTP method of the remote call.")
TimeUnit = _enum(TIME_UNITS, "Java TimeUnit name.")
BackoffPolicy = _enum(BACKOFF_POLICIES, "Retry back-off policy of the connector's HTTP client.")
GuardrailType = _enum(GUARDRAIL_TYPES, "Guardrail kind.")


# --- scalar types ------------------------------------------------------------------------------

def _require_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


# A secret string: masks itself everywhere; the JSON schema sees a plain string.
SecretValue = Annotated[
    Secret,
    PlainValidator(lambda v: v if isinstance(v, Secret) else Secret(_require_str(v))),
    WithJsonSchema({"type": "string", "description": "Write-only secret; never printed or stored."}),
]

_NOT_BLANK = re.compile(r"\S")


def _name(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if not _NOT_BLANK.search(value):
        raise ValueError("must not be empty")
    return value


Name = Annotated[str, BeforeValidator(_name),
                 WithJsonSchema({"type": "string", "minLength": 1, "pattern": r"\S"})]
Text = Annotated[str, Field(strict=True)]


def _integer(value: Any) -> Any:
    # JSON Schema's "integer": an int, or a float with no fractional part (384.0); never a bool or a string.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be an integer, got {show(value)}")
    return value


PositiveInt = Annotated[int, Field(gt=0), BeforeValidator(_integer)]
NonNegativeInt = Annotated[int, Field(ge=0), BeforeValidator(_integer)]


def _minify_json(value: Any) -> Any:
    """`all_config` and interface schemas: a mapping becomes the minified JSON string the server stores."""
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=False, ensure_ascii=False)
    if isinstance(value, str):
        return value
    raise ValueError(f"must be a mapping or a JSON string, got {show(value)}")


JsonText = Annotated[
    str,
    BeforeValidator(_minify_json),
    WithJsonSchema({"type": ["object", "string"]}),
]

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def _sha256(value: Any) -> Any:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise ValueError(f"must be exactly 64 hexadecimal characters (a SHA-256 digest, no prefix), got {show(value)}")
    return value.lower()


Sha256 = Annotated[str, BeforeValidator(_sha256),
                   WithJsonSchema({"type": "string", "pattern": "^[0-9a-fA-F]{64}$", "minLength": 64, "maxLength": 64})]


def _version_text(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"must be a string or a number, got {show(value)}")
    if isinstance(value, (int, float)):
        return str(value)
    return value


ConnectorVersion = Annotated[str, BeforeValidator(_version_text), WithJsonSchema({"type": ["string", "number"]})]
VersionLabel = Annotated[str, Field(min_length=1), BeforeValidator(_version_text),
                         WithJsonSchema({"anyOf": [{"type": "string", "minLength": 1}, {"type": "number"}]})]

_POSITIVE_DECIMAL = re.compile(r"^(?=.*[1-9])[0-9]+(?:\.[0-9]+)?$")
_POSITIVE_DECIMAL_EXACT = re.compile(_POSITIVE_DECIMAL.pattern[:-1] + r"\Z")  # `$` as in ECMA-262


def _limit_text(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isfinite(value) and value > 0:
            return str(value)
    elif isinstance(value, str) and _POSITIVE_DECIMAL_EXACT.search(value):
        return value
    raise ValueError(f"must be a positive number (or a string of digits), got {show(value)}")


RateLimit = Annotated[str, BeforeValidator(_limit_text), WithJsonSchema({
    "anyOf": [{"type": "number", "exclusiveMinimum": 0},
              {"type": "string", "pattern": _POSITIVE_DECIMAL.pattern}]})]


# --- common --------------------------------------------------------------------------------------

StrictBool = Annotated[bool, Strict()]


class Closed(Record):
    """Every mapping of the file: closed (unknown keys are errors) and frozen (mlsync.input.declare)."""


class Lifecycle(Closed):
    """Lifecycle rules for a resource."""

    prevent_destroy: StrictBool = Field(False, description="A plan that would delete this resource fails.")


class AccessFields(Closed):
    access_mode: Optional[AccessMode] = Field(
        None, description="public, private or restricted. Only when the cluster has access control on.")
    backend_roles: Optional[list[Text]] = Field(
        None, description="Backend roles that may use the object (access_mode restricted).")
    add_all_backend_roles: Optional[StrictBool] = Field(
        None, description="Grant all of the caller's backend roles (access_mode restricted).")


# --- connectors --------------------------------------------------------------------------------

class ConnectorAction(Closed):
    """One call the connector can make to the remote endpoint."""

    action_type: ActionType = Field(description="What this action is for: predict, execute, batch_predict, ...")
    method: HttpMethod = Field(description="HTTP method: GET, POST, PUT, ...")
    url: Annotated[str, Field(strict=True, min_length=1)] = Field(
        description="Endpoint URL; may use ${parameters.x}. Must match the cluster's trusted endpoint regexes.")
    headers: Optional[dict[str, Text]] = Field(
        None, description="HTTP headers (a mapping of strings); may reference ${credential.x}.")
    request_body: Optional[Text] = Field(
        None, description="Request body template (a string, usually JSON with ${parameters.x}).")
    pre_process_function: Optional[Text] = Field(
        None, description="Painless script or built-in name (e.g. connector.pre_process.openai.embedding) "
                          "that turns the predict input into parameters.")
    post_process_function: Optional[Text] = Field(
        None, description="Painless script or built-in name that turns the response into the model output.")


class ClientConfig(Closed):
    """Settings of the HTTP client ML Commons uses for this connector (the API's seven keys)."""

    max_connection: Optional[PositiveInt] = Field(None, description="Maximum concurrent connections (server default 30).")
    connection_timeout: Optional[NonNegativeInt] = Field(None, description="Connection timeout in seconds.")
    read_timeout: Optional[NonNegativeInt] = Field(None, description="Read timeout in seconds.")
    retry_backoff_millis: Optional[NonNegativeInt] = Field(None, description="Base back-off between retries, in milliseconds.")
    retry_timeout_seconds: Optional[NonNegativeInt] = Field(None, description="Give up retrying after this many seconds.")
    max_retry_times: Optional[Annotated[int, Field(ge=-1), BeforeValidator(_integer)]] = Field(
        None, description="Maximum retries (0: none, -1: unlimited until retry_timeout_seconds).")
    retry_backoff_policy: Optional[BackoffPolicy] = Field(
        None, description="constant, exponential_equal_jitter or exponential_full_jitter.")


_PARAMETERS_DESCRIPTION = ("Connector parameters for ${parameters.x} placeholders; any scalar, list or mapping "
                           "(the server stores every value as a string).")
_CREDENTIAL_DESCRIPTION = ("Write-only credential values (a non-empty mapping of strings), referenced as "
                           "${credential.x}; never printed, never stored in clear. Use ${env:NAME} or ${file:path}.")


class _ConnectorBody(Closed):
    """What a standalone and an inline connector both declare."""

    description: Optional[str] = Field(None, description="Free text.")
    protocol: Protocol = Field(description="http or aws_sigv4.")
    parameters: Optional[dict[str, Any]] = Field(None, description=_PARAMETERS_DESCRIPTION)
    credential: Annotated[dict[str, SecretValue], Field(min_length=1)] = Field(description=_CREDENTIAL_DESCRIPTION)
    actions: Annotated[list[ConnectorAction], Field(min_length=1)] = Field(
        description="What the connector can call (a non-empty list).")
    client_config: Optional[ClientConfig] = Field(None, description="HTTP client settings.")


class InlineConnector(_ConnectorBody):
    """A connector that lives inside one remote model (ML Commons' "internal connector")."""

    name: Optional[Name] = Field(None, description="Name of the internal connector.")
    version: Optional[ConnectorVersion] = Field(None, description="Connector version (a string or a number; stored as a string).")


class Connector(_ConnectorBody, AccessFields):
    """A standalone connector, shared by remote models that name it."""

    name: Name = Field(description="Unique within the stack; also the server-side name.")
    version: ConnectorVersion = Field("1", description="Connector version (a string or a number; stored as a string).")
    lifecycle: Lifecycle = Field(Lifecycle(), description="Lifecycle rules (prevent_destroy).")


# --- model groups ------------------------------------------------------------------------------

class ModelGroup(AccessFields):
    """A model group: the container of a model's versions, and the unit of access control."""

    name: Name = Field(description="Globally unique on the cluster (a server rule).")
    description: Optional[str] = Field(None, description="Free text.")
    lifecycle: Lifecycle = Field(Lifecycle(), description="Lifecycle rules (prevent_destroy).")

    _implicit_for: Optional[str] = PrivateAttr(default=None)

    @property
    def implicit(self) -> bool:
        """True for the group mlsync makes for a model without `model_group` (named after the model)."""
        return self._implicit_for is not None


# --- models ------------------------------------------------------------------------------------

class ModelConfig(Closed):
    """Model configuration of a local (URL or file) model."""

    model_type: Optional[Text] = Field(None, description="Architecture, e.g. bert, roberta, distilbert.")
    embedding_dimension: Optional[PositiveInt] = Field(None, description="Length of the output vector (a positive integer).")
    framework_type: Optional[FrameworkType] = Field(
        None, description="sentence_transformers, huggingface_transformers or huggingface_transformers_neuron.")
    all_config: Optional[JsonText] = Field(
        None, description="The model's full config: a mapping (minified to JSON by mlsync) or the JSON string itself.")
    pooling_mode: Optional[PoolingMode] = Field(
        None, description="mean, mean_sqrt_len, max, weightedmean, cls or lasttoken.")
    normalize_result: Optional[StrictBool] = Field(None, description="Normalise the output vector to unit length.")
    model_max_length: Optional[PositiveInt] = Field(None, description="Maximum input length in tokens.")
    query_prefix: Optional[str] = Field(None, description="Text prepended to queries (asymmetric models).")
    passage_prefix: Optional[str] = Field(None, description="Text prepended to passages (asymmetric models).")


class RateLimiter(Closed):
    """Per-model request rate limit."""

    limit: RateLimit = Field(description="Requests per unit: a positive number (stored as a string).")
    unit: TimeUnit = Field(description="Java TimeUnit name: NANOSECONDS ... DAYS.")


class Interface(Closed):
    """JSON schemas that predict requests and responses must follow."""

    input: Optional[JsonText] = Field(None, description="JSON schema of the predict input: a mapping or its JSON string.")
    output: Optional[JsonText] = Field(None, description="JSON schema of the predict output: a mapping or its JSON string.")


class StopWords(Closed):
    """An index of prohibited words, matched with a percolator query."""

    index_name: Text = Field(description="Index holding the stop words.")
    source_fields: list[Text] = Field(description="Fields of that index to match.")


class Guardrail(Closed):
    """One side (input or output) of a guardrail: stop words and regexes (local_regex) or a model (model)."""

    stop_words: Optional[list[StopWords]] = Field(None, description="local_regex: indexes of prohibited words.")
    regex: Optional[list[Text]] = Field(None, description="local_regex: regexes that reject a matching text.")
    model_id: Optional[Text] = Field(None, description="model: id of the model that judges the text.")
    response_filter: Optional[Text] = Field(None, description="model: JSON path of the verdict in the judge's response.")
    response_validation_regex: Optional[Text] = Field(
        None, description="model: a verdict matching this regex accepts the text.")


class Guardrails(Closed):
    """Input and output guardrails of a remote model."""

    type: GuardrailType = Field(description="local_regex or model.")
    input_guardrail: Optional[Guardrail] = Field(None, description="Checks applied to the predict input.")
    output_guardrail: Optional[Guardrail] = Field(None, description="Checks applied to the model output.")


class DeploySetting(Closed):
    """Automatic deployment settings."""

    is_auto_deploy_enabled: Optional[StrictBool] = Field(None, description="Deploy automatically on first predict.")
    model_ttl_minutes: Optional[NonNegativeInt] = Field(None, description="Undeploy after this many idle minutes.")


class VersionFields(Closed):
    """Fields a model sets as defaults and each of its versions may override."""

    description: Optional[str] = Field(None, description="Free text.")
    model_format: Optional[ModelFormat] = Field(None, description="TORCH_SCRIPT or ONNX; required for local models.")
    model_config_: Optional[ModelConfig] = Field(
        None, alias="model_config",
        description="Model configuration; required for non-sparse local models (model_type, embedding_dimension, "
                    "framework_type).")
    model_content_hash_value: Optional[Sha256] = Field(
        None, description="SHA-256 of the zip: exactly 64 hex characters; required with url, checked with path.")
    url: Optional[Text] = Field(None, description="http, https, ftp or file URL of the model zip (exactly one of url/path).")
    path: Optional[Text] = Field(
        None, description="Local model zip, relative to this file; mlsync hashes it and uploads it in chunks "
                          "(exactly one of url/path). After loading: an absolute path.")
    is_enabled: Optional[StrictBool] = Field(None, description="Whether predict calls are allowed.")
    rate_limiter: Optional[RateLimiter] = Field(None, description="Request rate limit: {limit, unit}.")
    interface: Optional[Interface] = Field(None, description="JSON schemas of predict input and output.")
    guardrails: Optional[Guardrails] = Field(None, description="Input/output guardrails.")
    deploy: Optional[StrictBool] = Field(None, description="Whether this version should be deployed.")
    deploy_setting: Optional[DeploySetting] = Field(None, description="Automatic deployment settings.")
    lifecycle: Optional[Lifecycle] = Field(None, description="Lifecycle rules (prevent_destroy).")


def _connector_kind(value: Any) -> str:
    return "inline" if isinstance(value, (dict, InlineConnector)) else "name"


# Defined before ModelVersion, which uses it (annotations are evaluated where they are written).
ConnectorRef = Annotated[
    Union[Annotated[Name, Tag("name")], Annotated[InlineConnector, Tag("inline")]],
    Discriminator(_connector_kind),
]


class ModelVersion(VersionFields):
    """One registered version of a model. Fields not set here are taken from the model."""

    version: VersionLabel = Field(
        description="Your label for this version, unique within the model; the server numbers versions itself.")
    connector: Optional[ConnectorRef] = Field(
        None, description="Remote models only: this version's connector (a connectors[].name or an inline "
                          "connector); default: the model's.")


def _merge_set_fields(base: Optional[Record], over: Record) -> Record:
    """`over` with every field it does not set taken from `base` (nested objects merge recursively)."""
    if base is None or type(base) is not type(over):
        return over
    updates: dict[str, Any] = {}
    for field in type(over).model_fields:
        if field not in over.model_fields_set:
            if field in base.model_fields_set:
                updates[field] = getattr(base, field)
            continue
        mine, theirs = getattr(over, field), getattr(base, field)
        if isinstance(mine, Record) and isinstance(theirs, Record):
            updates[field] = _merge_set_fields(theirs, mine)
    return over.model_copy(update=updates) if updates else over


class Model(VersionFields, AccessFields):
    """A model: a remote model (served through a connector), or a local model with its registered versions."""

    name: Name = Field(description="Model name; unique within its group.")
    model_group: Optional[Name] = Field(
        None, description="A model_groups[].name; omitted: an implicit group named after the model, shaped by the "
                          "access fields given on the model.")
    function_name: FunctionName = Field(
        "TEXT_EMBEDDING", description="TEXT_EMBEDDING (default), SPARSE_ENCODING, SPARSE_TOKENIZE, TEXT_SIMILARITY, "
                                      "QUESTION_ANSWERING or remote.")
    connector: Optional[ConnectorRef] = Field(
        None, description="Remote models only: a connectors[].name, or an inline connector object.")
    versions: Optional[list[ModelVersion]] = Field(
        None, description="Each entry is one registered version (a remote model may have several, each with its own "
                          "connector and fields; without versions it has one); model-level fields are defaults that "
                          "a version may override.")

    @model_validator(mode="after")
    def _apply_version_defaults(self) -> "Model":
        if not self.versions:
            return self
        return self.model_copy(update={"versions": [_with_defaults(self, v) for v in self.versions]})

    @property
    def is_remote(self) -> bool:
        return self.function_name == "REMOTE"

    @property
    def is_sparse(self) -> bool:
        return self.function_name in SPARSE_FUNCTIONS

    @property
    def group_name(self) -> str:
        """The model's group: `model_group`, or the model's own name (its implicit group)."""
        return self.model_group if self.model_group is not None else self.name

    def implicit_group(self) -> Optional[ModelGroup]:
        """The group mlsync manages for a model without `model_group`, or None when it names one."""
        if self.model_group is not None:
            return None
        fields: dict[str, Any] = {f: getattr(self, f) for f in ACCESS_FIELDS if getattr(self, f) is not None}
        if self.lifecycle is not None:
            fields["lifecycle"] = self.lifecycle
        group = ModelGroup(name=self.name, **fields)
        group._implicit_for = self.name
        return group


def _with_defaults(model: Model, version: ModelVersion) -> ModelVersion:
    """The effective version: fields it does not set come from the model; nested objects merge key by key."""
    updates: dict[str, Any] = {}
    model_set, version_set = model.model_fields_set, version.model_fields_set
    for field in _VERSION_FIELD_NAMES:
        if field not in model_set:
            continue
        theirs = getattr(model, field)
        if field not in version_set:
            updates[field] = theirs
            continue
        mine = getattr(version, field)
        if isinstance(mine, Record) and isinstance(theirs, Record):
            updates[field] = _merge_set_fields(theirs, mine)
    return version.model_copy(update=updates) if updates else version


_VERSION_FIELD_NAMES = tuple(VersionFields.model_fields)


# --- consumers of models: pipelines and agents (docs/references.md) -----------------------------

AGENT_TYPES = ("flow", "conversational", "conversational_flow")
AgentType = _enum(AGENT_TYPES, "The agent type (ML Commons 2.19).")
_PIPELINE_ID = re.compile(r"[a-z0-9][a-z0-9._-]*")
_REFS = ("References `${model:GROUP/NAME}`, `${model:GROUP/NAME@LABEL}`, `${connector:NAME}` and "
         "`${agent:NAME}` may appear in any string value and resolve to the server's ids.")


def _pipeline_id(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {show(value)}")
    if not _PIPELINE_ID.fullmatch(value) or value == "_none":
        raise ValueError(f"invalid pipeline id {show(value)}: lower-case letters, digits, '.', '_' and '-', starting "
                         "with a letter or digit (the server reads '*' and ',' in ids as patterns)")
    return value


PipelineId = Annotated[str, BeforeValidator(_pipeline_id),
                       WithJsonSchema({"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]*$"})]


def _processor(value: Any) -> Any:
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError("a processor is a mapping with exactly one key, its type (e.g. `ml_inference: {...}`)")
    (ptype, config), = value.items()
    if not isinstance(config, dict):
        raise ValueError(f"the configuration of processor {ptype!r} must be a mapping, got {show(config)}")
    return value


Processor = Annotated[dict[str, Any], BeforeValidator(_processor), WithJsonSchema({
    "type": "object", "minProperties": 1, "maxProperties": 1,
    "additionalProperties": {"type": "object"},
    "description": "One processor: `{TYPE: {config}}`, the body the server takes. " + _REFS})]
PipelineVersion = Annotated[int, BeforeValidator(_integer)]


class IngestPipeline(Closed):
    """An ingest pipeline (PUT _ingest/pipeline/ID: create or replace)."""

    id: PipelineId = Field(description="The pipeline's id on the server, chosen by you (stable across changes).")
    description: Optional[Text] = Field(None, description="Description of the pipeline.")
    version: Optional[PipelineVersion] = Field(None, description="Your version number of the pipeline.")
    processors: list[Processor] = Field(description="The processors, in order. " + _REFS)
    on_failure: Optional[list[Processor]] = Field(None, min_length=1, description="Processors run on a failure.")
    lifecycle: Lifecycle = Field(default_factory=Lifecycle, description="Lifecycle rules.")


class SearchPipeline(Closed):
    """A search pipeline (PUT _search/pipeline/ID: create or replace)."""

    id: PipelineId = Field(description="The pipeline's id on the server, chosen by you (stable across changes).")
    description: Optional[Text] = Field(None, description="Description of the pipeline.")
    version: Optional[PipelineVersion] = Field(None, description="Your version number of the pipeline.")
    request_processors: Optional[list[Processor]] = Field(None, description="Search request processors. " + _REFS)
    response_processors: Optional[list[Processor]] = Field(None, description="Search response processors. " + _REFS)
    phase_results_processors: Optional[list[Processor]] = Field(None, description="Search phase results processors.")
    lifecycle: Lifecycle = Field(default_factory=Lifecycle, description="Lifecycle rules.")


class AgentLLM(Closed):
    """The LLM a conversational agent reasons with."""

    model_id: Text = Field(description="The model the agent reasons with, e.g. `${model:llm/claude}`.")
    parameters: Optional[dict[str, Any]] = Field(None, description="LLM parameters (stored as strings).")


class AgentTool(Closed):
    """One tool of an agent."""

    type: Name = Field(description="The tool type, e.g. MLModelTool, AgentTool, SearchIndexTool.")
    name: Optional[Name] = Field(None, description="The tool's name (defaults to its type); unique in the agent.")
    description: Optional[Text] = Field(None, description="What the tool does.")
    parameters: Optional[dict[str, Any]] = Field(None, description="Tool parameters (stored as strings). " + _REFS)
    include_output_in_agent_response: Optional[StrictBool] = Field(None, description="Default false.")
    config: Optional[dict[str, Any]] = Field(None, description="Tool configuration (stored as strings).")


class AgentMemory(Closed):
    """An agent's conversation memory."""

    type: Name = Field(description="Memory type; 2.19 has `conversation_index`.")
    window_size: Optional[PositiveInt] = Field(None, description="Messages kept in the window.")
    session_id: Optional[Text] = Field(None, description="A fixed memory session id.")


class Agent(Closed):
    """An ML Commons agent. 2.19 has no update API: a changed agent is registered again (new id) and the
    old one deleted; mlsync keeps the id of its agent by name."""

    name: Name = Field(description="The agent's name; mlsync's identity for it within the stack.")
    type: AgentType = Field(description="flow, conversational or conversational_flow.")
    description: Optional[Text] = Field(None, description="Description of the agent.")
    llm: Optional[AgentLLM] = Field(None, description="The agent's LLM (required for conversational agents).")
    tools: Optional[list[AgentTool]] = Field(None, description="The agent's tools, in order.")
    parameters: Optional[dict[str, Any]] = Field(None, description="Agent parameters (stored as strings).")
    memory: Optional[AgentMemory] = Field(None, description="Conversation memory.")
    app_type: Optional[Text] = Field(None, description="A free application type tag.")
    lifecycle: Lifecycle = Field(default_factory=Lifecycle, description="Lifecycle rules.")


class StackFile(Closed):
    """An mlsync desired-state file: the connectors, model groups and models one stack manages."""

    version: Literal[1] = Field(description="Format version of this file (only 1 exists).")
    stack: Name = Field(description="Names what this file manages; state is kept per stack.")
    connectors: list[Connector] = Field(default_factory=list, description="Standalone connectors.")
    model_groups: list[ModelGroup] = Field(default_factory=list, description="Model groups.")
    models: list[Model] = Field(default_factory=list, description="Models: remote models and local models with versions.")
    ingest_pipelines: list[IngestPipeline] = Field(default_factory=list, description="Ingest pipelines (docs/references.md).")
    search_pipelines: list[SearchPipeline] = Field(default_factory=list, description="Search pipelines (docs/references.md).")
    agents: list[Agent] = Field(default_factory=list, description="ML Commons agents (docs/references.md).")

    @field_validator("version", mode="before")
    @classmethod
    def _only_one(cls, value: Any) -> Any:
        if isinstance(value, bool) or value != 1:
            raise ValueError(f"unsupported format version {show(value)} (allowed: 1)")
        return value

    def all_model_groups(self) -> list[ModelGroup]:
        """Declared groups, then the implicit group of each model without `model_group` (`.implicit` is True)."""
        implicit = [g for g in (m.implicit_group() for m in self.models) if g is not None]
        return list(self.model_groups) + implicit
