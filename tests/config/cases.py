"""Bad desired-state inputs, one per rule: the message each must produce and where.

Each case is a set of files. The line a problem must point at is marked in the text with a trailing
`#<` comment (or given as `line=` where a comment cannot go). `kind` says which layer rejects it:

- "yaml":     the loader, before any tree exists (syntax, duplicates, tabs, alias bombs, size, ...)
- "loader":   the loader's interpolation; the tree exists (schema and model must still agree on it)
- "schema":   the JSON Schema and the validator (input/validator.py) both reject it
- "semantic": schema and model both accept it; a cross-field check rejects it

tests/config/test_bad_inputs.py asserts message and location; test_schema_agreement.py asserts
that schema and model agree on every case whose tree loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

HASH = "c15f0d2e62d872be5b5bc6c84d2e0f4921541e29fefbef51d59cc10a8ae30e0f"
MARK = "#<"


@dataclass
class Case:
    id: str
    files: dict                     # name -> text (list of lines joined) or bytes
    message: str                    # a substring of the expected problem's message
    kind: str
    line: Optional[int] = None      # default: the line marked with `#<` in `file`
    file: str = "stack.yaml"
    col: Optional[int] = None
    path: Optional[str] = None      # the expected dotted path, when worth asserting
    args: Optional[list] = None     # -f arguments (default: every file, in order)
    env: dict = field(default_factory=dict)
    absent: tuple = ()              # strings that must appear in no problem (secrets)

    def expected_line(self) -> int:
        if self.line is not None:
            return self.line
        text = self.files[self.file]
        for number, line in enumerate(text.split("\n"), start=1):
            if line.rstrip().endswith(MARK):
                return number
        raise AssertionError(f"case {self.id}: no {MARK} marker in {self.file}")


def y(*lines: str) -> str:
    return "\n".join(lines) + "\n"


HEAD = ("version: 1", "stack: s")

CONNECTOR = (
    "connectors:",
    "  - name: api",
    "    protocol: http",
    "    credential: {api_key: k}",
    "    actions:",
    "      - {action_type: predict, method: POST, url: 'http://127.0.0.1:8089/v1/e'}",
)

GROUP = ("model_groups:", "  - name: g")

REMOTE = (
    "models:",
    "  - name: r",
    "    model_group: g",
    "    function_name: remote",
    "    connector: api",
)


def local_model(*version_lines: str, head: tuple = (), config: tuple = None) -> tuple:
    """A local model in group g: model-level lines, then `versions:` with the given lines."""
    if config is None:
        config = ("    model_config: {model_type: bert, embedding_dimension: 4, framework_type: sentence_transformers}",)
    return ("models:", "  - name: m", "    model_group: g", "    model_format: TORCH_SCRIPT", *config, *head,
            "    versions:", *version_lines)


URL_VERSION = ("      - version: '1'", "        url: http://127.0.0.1:8089/models/a.zip",
               f"        model_content_hash_value: {HASH}")


CASES: list[Case] = [
    # --- YAML ----------------------------------------------------------------------------------------------
    Case("duplicate-key", {"stack.yaml": y("version: 1", "stack: s", "stack: t  #<")},
         "duplicate key 'stack' (first defined at line 2)", "yaml", col=1),
    Case("duplicate-key-nested", {"stack.yaml": y(*HEAD, *GROUP, "    description: a", "    description: b  #<")},
         "duplicate key 'description'", "yaml", col=5),
    Case("tab-indentation", {"stack.yaml": y(*HEAD, "model_groups:", "\t- name: g")},
         "tab character in indentation: YAML indents with spaces only", "yaml", line=4, col=1),
    Case("tab-in-block", {"stack.yaml": y(*HEAD, "model_groups:", "  - name: g", "  \tdescription: x")},
         "tab character in indentation", "yaml", line=5),
    Case("alias-bomb", {"stack.yaml": y(
        "a: &a [x, x, x, x, x, x, x, x, x, x]",
        "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]",
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]",
        "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]",
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]",
        "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]",
        "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]",
        "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]",
        "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]")},
         "limit is 100000 nodes added by aliases (an alias bomb?)", "yaml", line=1),
    Case("recursive-alias", {"stack.yaml": y(*HEAD, "model_groups: &l  #<", "  - *l")},
         "recursive alias", "yaml"),
    Case("two-documents", {"stack.yaml": y(*HEAD, "---  #<", "version: 1")},
         "a second YAML document starts here", "yaml"),
    Case("root-is-list", {"stack.yaml": y("- version: 1  #<")},
         "the top level must be a mapping", "yaml"),
    Case("syntax-unclosed-flow", {"stack.yaml": y(*HEAD, "model_groups: [{name: g}", "models: []  #<")},
         "(while parsing a flow sequence at line 3)", "yaml", col=1),
    Case("undefined-alias", {"stack.yaml": y(*HEAD, "model_groups: *groups  #<")},
         "undefined alias '*groups'", "yaml", col=15),
    Case("oversized-file", {"stack.yaml": "# " + "x" * (10 * 1024 * 1024) + "\n"},
         "file is too large", "yaml", line=1),
    Case("invalid-utf8", {"stack.yaml": b"version: 1\nstack: \xff\xfe\n"},
         "not valid UTF-8", "yaml", line=2, col=8),
    Case("control-character", {"stack.yaml": b"version: 1\nstack: a\x07b\n"},
         "control character U+0007 is not allowed in YAML text", "yaml", line=2, col=9),
    Case("unsupported-tag", {"stack.yaml": y(*HEAD, "model_groups: !!set {a, b}  #<")},
         "unsupported YAML tag !!set", "loader"),
    Case("complex-key", {"stack.yaml": y(*HEAD, "? [a, b]  #<", ": 1")},
         "mapping keys must be plain strings", "yaml"),
    Case("infinite-number", {"stack.yaml": y(*HEAD, *GROUP, *local_model(
        *URL_VERSION, head=("    rate_limiter: {limit: .inf, unit: SECONDS}  #<",)))},
         "is not a finite number", "loader"),
    Case("too-deep", {"stack.yaml": y(*HEAD, "x: " + "[" * 80 + "]" * 80)},
         "nested too deeply", "yaml", line=3),
    Case("no-such-file", {"stack.yaml": y(*HEAD)}, "no such file or directory", "yaml",
         args=["missing.yaml"], file="missing.yaml", line=1),
    Case("empty-directory", {"conf/README.md": "nothing"}, "directory has no *.yaml or *.yml files", "yaml",
         args=["conf"], file="conf", line=1),

    # --- interpolation -------------------------------------------------------------------------------------
    Case("env-missing", {"stack.yaml": y("version: 1", "stack: ${env:STACK_NAME}  #<")},
         "environment variable STACK_NAME is not set", "loader", col=8),
    Case("env-missing-in-credential", {"stack.yaml": y(*HEAD, "connectors:", "  - name: api", "    protocol: http",
                                                       "    credential:",
                                                       "      api_key: Bearer ${env:API_KEY}  #<",
                                                       "    actions:",
                                                       "      - {action_type: predict, method: POST, url: 'http://h/'}")},
         "environment variable API_KEY is not set", "loader", col=23),
    Case("env-bad-name", {"stack.yaml": y("version: 1", "stack: ${env:1ABC}  #<")},
         "invalid environment variable name '1ABC'", "loader"),
    Case("file-missing", {"stack.yaml": y("version: 1", "stack: ${file:secrets/name.txt}  #<")},
         "cannot read secrets/name.txt for ${file:secrets/name.txt}: no such file", "loader"),
    Case("file-absolute-path", {"stack.yaml": y("version: 1", "stack: ${file:/proc/self/environ}  #<")},
         "${file:/proc/self/environ}: an absolute path is not allowed (allowed: a regular file", "loader", col=8),
    Case("file-outside-directory", {"conf/stack.yaml": y("version: 1", "stack: ${file:../secret.txt}  #<"),
                                    "secret.txt": "s3cret-outside\n"},
         "../secret.txt is outside the directory of conf/stack.yaml", "loader", file="conf/stack.yaml",
         args=["conf/stack.yaml"], absent=("s3cret-outside",)),
    Case("file-too-large", {"stack.yaml": y("version: 1", "stack: ${file:big.txt}  #<"),
                            "big.txt": "x" * (1024 * 1024 + 1)},
         "big.txt is larger than 1048576 bytes", "loader", args=["stack.yaml"]),
    Case("file-is-a-directory", {"stack.yaml": y("version: 1", "stack: ${file:sub}  #<"), "sub/x.txt": "x"},
         "${file:sub}: sub is a directory, not a regular file", "loader", args=["stack.yaml"]),
    Case("too-deep-block", {"stack.yaml": y(*HEAD, "x:  #<", "  " + "- " * 6_000 + "a")},  # deeper: test_hardening.py (a subprocess)
         "nested too deeply (more than 64 levels)", "yaml", line=4),
    Case("unterminated", {"stack.yaml": y("version: 1", "stack: ${env:NAME  #<")},
         "unterminated ${env:", "loader"),

    # --- schema: keys --------------------------------------------------------------------------------------
    Case("unknown-top-level-key", {"stack.yaml": y(*HEAD, "model_group:  #<", "  - name: g")},
         "unknown key 'model_group'; did you mean 'model_groups'?", "schema", col=1, path="model_group"),
    Case("typo-embedding-dimension", {"stack.yaml": y(*HEAD, *GROUP, *local_model(*URL_VERSION, config=(
        "    model_config:", "      model_type: bert", "      embeding_dimension: 384  #<",
        "      framework_type: sentence_transformers")))},
         "unknown key 'embeding_dimension'; did you mean 'embedding_dimension'? (allowed: model_type, "
         "embedding_dimension,", "schema", col=7, path="models[0].model_config.embeding_dimension"),
    Case("unknown-version-key", {"stack.yaml": y(*HEAD, *GROUP, *local_model(
        "      - version: '1'", "        urll: http://127.0.0.1:8089/models/a.zip  #<"))},
         "unknown key 'urll'; did you mean 'url'?", "schema", path="models[0].versions[0].urll"),
    Case("version-cannot-override-name", {"stack.yaml": y(*HEAD, *GROUP, *local_model(
        *URL_VERSION, "        name: other  #<"))},
         "unknown key 'name'", "schema"),
    Case("version-cannot-override-function", {"stack.yaml": y(*HEAD, *GROUP, *local_model(
        *URL_VERSION, "        function_name: SPARSE_ENCODING  #<"))},
         "unknown key 'function_name'", "schema"),
    Case("client-config-unknown-key", {"stack.yaml": y(*HEAD, *CONNECTOR,
                                                       "    client_config: {max_connections: 5}  #<")},
         "unknown key 'max_connections'; did you mean 'max_connection'?", "schema"),
    Case("action-unknown-key", {"stack.yaml": y(*HEAD, "connectors:", "  - name: api", "    protocol: http",
                                                "    credential: {k: v}", "    actions:",
                                                "      - action_type: predict", "        method: POST",
                                                "        url: http://h/", "        header: {a: b}  #<")},
         "unknown key 'header'; did you mean 'headers'?", "schema"),

    # --- schema: required and top level -------------------------------------------------------------------
    Case("format-version-2", {"stack.yaml": y("version: 2  #<", "stack: s")},
         "unsupported format version 2 (allowed: 1)", "schema", path="version"),
    Case("missing-stack", {"stack.yaml": y("version: 1  #<", "models: []")},
         "missing required key 'stack'", "schema", col=1),
    Case("empty-stack-name", {"stack.yaml": y("version: 1", "stack: ''  #<")},
         "must not be empty", "schema"),
    Case("blank-model-name", {"stack.yaml": y(*HEAD, "models:", "  - name: '   '  #<", "    function_name: remote",
                                              "    connector: x")},
         "must not be empty", "schema", path="models[0].name"),
    Case("connectors-not-a-list", {"stack.yaml": y(*HEAD, "connectors:  #<", "  api: {protocol: http}")},
         "must be a list, got a mapping", "schema"),
    Case("action-missing-url", {"stack.yaml": y(*HEAD, "connectors:", "  - name: api", "    protocol: http",
                                                "    credential: {k: v}", "    actions:",
                                                "      - action_type: predict  #<", "        method: POST")},
         "missing required key 'url'", "schema", path="connectors[0].actions[0]"),
    Case("connector-missing-protocol", {"stack.yaml": y(*HEAD, "connectors:", "  - name: api  #<",
                                                        "    credential: {k: v}",
                                                        "    actions: [{action_type: predict, method: POST, url: 'http://h/'}]")},
         "missing required key 'protocol'", "schema", path="connectors[0]"),

    # --- schema: enums -------------------------------------------------------------------------------------
    Case("function-name-typo", {"stack.yaml": y(*HEAD, *GROUP, *local_model(
        *URL_VERSION, head=("    function_name: TEXT_EMBEDING  #<",)))},
         "invalid value 'TEXT_EMBEDING'; did you mean 'TEXT_EMBEDDING'? (allowed: TEXT_EMBEDDING, SPARSE_ENCODING",
         "schema"),
    Case("model-format-invalid", {"stack.yaml": y(*HEAD, *GROUP, "models:", "  - name: m", "    model_group: g",
                                                  "    model_format: PYTORCH  #<", "    versions: []")},
         "invalid value 'PYTORCH' (allowed: TORCH_SCRIPT, ONNX; any letter case)", "schema"),
    Case("framework-type-invalid", {"stack.yaml": y(*HEAD, *GROUP, *local_model(*URL_VERSION, config=(
        "    model_config:", "      model_type: bert", "      embedding_dimension: 4",
        "      framework_type: pytorch  #<")))},
         "(allowed: sentence_transformers, huggingface_transformers, huggingface_transformers_neuron; any letter case)",
         "schema"),
    Case("pooling-mode-invalid", {"stack.yaml": y(*HEAD, *GROUP, *local_model(*URL_VERSION, config=(
        "    model_config:", "      model_type: bert", "      embedding_dimension: 4",
        "      framework_type: sentence_transformers", "      pooling_mode: average  #<")))},
         "(allowed: mean, mean_sqrt_len, max, weightedmean, cls, lasttoken", "schema"),
    Case("protocol-invalid", {"stack.yaml": y(*HEAD, "connectors:", "  - name: api", "    protocol: https  #<",
                                              "    credential: {k: v}",
                                              "    actions: [{action_type: predict, method: POST, url: 'http://h/'}]")},
         "invalid value 'https'; did you mean 'http'? (allowed: http, aws_sigv4", "schema"),
    Case("access-mode-invalid", {"stack.yaml": y(*HEAD, *GROUP, "    access_mode: team  #<")},
         "(allowed: public, private, restricted", "schema"),
    Case("action-type-invalid", {"stack.yaml": y(*HEAD, "connectors:", "  - name: api", "    protocol: http",
                                                 "    credential: {k: v}", "    actions:",
                                                 "      - action_type: predicts  #<", "        method: POST",
                                                 "        url: http://h/")},
         "did you mean 'predict'?", "schema"),
    Case("http-method-invalid", {"stack.yaml": y(*HEAD, "connectors:", "  - name: api", "    protocol: http",
                                                 "    credential: {k: v}", "    actions:",
                                                 "      - action_type: predict", "        method: FETCH  #<",
                                                 "        url: http://h/")},
         "(allowed: GET, POST, PUT, DELETE, PATCH, HEAD, OPTIONS", "schema"),
    Case("rate-limiter-unit-invalid", {"stack.yaml": y(*HEAD, *CONNECTOR, *GROUP, *REMOTE,
                                                       "    rate_limiter:", "      limit: 10",
                                                       "      unit: PER_MINUTE  #<")},
         "(allowed: NANOSECONDS, MICROSECONDS, MILLISECONDS, SECONDS, MINUTES, HOURS, DAYS", "schema"),
    Case("backoff-policy-invalid", {"stack.yaml": y(*HEAD, *CONNECTOR,
                                                    "    client_config:", "      retry_backoff_policy: linear  #<")},
         "(allowed: constant, exponential_equal_jitter, exponential_full_jitter", "schema"),
    Case("guardrail-type-invalid", {"stack.yaml": y(*HEAD, *CONNECTOR, *GROUP, *REMOTE,
                                                    "    guardrails: {type: regex}  #<")},
         "(allowed: local_regex, model", "schema"),

    # --- schema: types and ranges --------------------------------------------------------------------------
    Case("embedding-dimension-zero", {"stack.yaml": y(*HEAD, *GROUP, *local_model(*URL_VERSION, config=(
        "    model_config:", "      model_type: bert", "      embedding_dimension: 0  #<",
        "      framework_type: sentence_transformers")))},
         "must be greater than 0, got 0", "schema", path="models[0].model_config.embedding_dimension"),
    Case("embedding-dimension-string", {"stack.yaml": y(*HEAD, *GROUP, *local_model(*URL_VERSION, config=(
        "    model_config:", "      model_type: bert", "      embedding_dimension: '384'  #<",
        "      framework_type: sentence_transformers")))},
         "must be an integer, got '384'", "schema"),
    Case("embedding-dimension-fraction", {"stack.yaml": y(*HEAD, *GROUP, *local_model(*URL_VERSION, config=(
        "    model_config:", "      model_type: bert", "      embedding_dimension: 384.5  #<",
        "      framework_type: sentence_transformers")))},
         "must be a whole number, got 384.5", "schema"),
    Case("deploy-yes-is-a-string", {"stack.yaml": y(*HEAD, *CONNECTOR, *GROUP, *REMOTE, "    deploy: yes  #<")},
         "must be true or false, got 'yes'", "schema", path="models[0].deploy"),
    Case("rate-limit-negative", {"stack.yaml": y(*HEAD, *CONNECTOR, *GROUP, *REMOTE,
                                                 "    rate_limiter: {limit: -5, unit: MINUTES}  #<")},
         "must be a positive number (or a string of digits), got -5", "schema"),
    Case("rate-limit-text", {"stack.yaml": y(*HEAD, *CONNECTOR, *GROUP, *REMOTE,
                                             "    rate_limiter: {limit: lots, unit: MINUTES}  #<")},
         "must be a positive number", "schema"),
    Case("model-ttl-negative", {"stack.yaml": y(*HEAD, *CONNECTOR, *GROUP, *REMOTE,
                                                "    deploy_setting:", "      model_ttl_minutes: -1  #<")},
         "must be at least 0, got -1", "schema"),
    Case("credential-empty", {"stack.yaml": y(*HEAD, "connectors:", "  - name: api", "    protocol: http",
                                              "    credential: {}  #<",
                                              "    actions: [{action_type: predict, method: POST, url: 'http://h/'}]")},
         "must not be empty", "schema", path="connectors[0].credential"),
    Case("credential-not-a-mapping", {"stack.yaml": y(*HEAD, "connectors:", "  - name: api", "    protocol: http",
                                                      "    credential: hunter2-secret-value  #<",
                                                      "    actions: [{action_type: predict, method: POST, url: 'http://h/'}]")},
         "must be a mapping, got (sensitive)", "schema", absent=("hunter2",)),
    Case("credential-value-number", {"stack.yaml": y(*HEAD, "connectors:", "  - name: api", "    protocol: http",
                                                     "    credential:", "      api_key: 987654321  #<",
                                                     "    actions: [{action_type: predict, method: POST, url: 'http://h/'}]")},
         "must be a string", "schema", path="connectors[0].credential.api_key", absent=("987654321",)),
    Case("actions-empty", {"stack.yaml": y(*HEAD, "connectors:", "  - name: api", "    protocol: http",
                                           "    credential: {k: v}", "    actions: []  #<")},
         "must not be empty", "schema", path="connectors[0].actions"),
    Case("headers-not-mapping", {"stack.yaml": y(*HEAD, "connectors:", "  - name: api", "    protocol: http",
                                                 "    credential: {k: v}", "    actions:",
                                                 "      - action_type: predict", "        method: POST",
                                                 "        url: http://h/", "        headers: [a, b]  #<")},
         "must be a mapping, got a list", "schema"),
    Case("hash-wrong-length", {"stack.yaml": y(*HEAD, *GROUP, *local_model(
        "      - version: '1'", "        url: http://127.0.0.1:8089/models/a.zip",
        "        model_content_hash_value: sha256:abc123  #<"))},
         "must be exactly 64 hexadecimal characters (a SHA-256 digest, no prefix), got 'sha256:abc123'", "schema"),
    Case("version-label-bool", {"stack.yaml": y(*HEAD, *GROUP, *local_model(
        "      - version: true  #<", "        url: http://127.0.0.1:8089/models/a.zip",
        f"        model_content_hash_value: {HASH}"))},
         "must be a string or a number, got true", "schema"),
    Case("all-config-list", {"stack.yaml": y(*HEAD, *GROUP, *local_model(*URL_VERSION, config=(
        "    model_config:", "      model_type: bert", "      embedding_dimension: 4",
        "      framework_type: sentence_transformers", "      all_config: [1, 2]  #<")))},
         "must be a mapping or a JSON string, got a list", "schema"),
    Case("connector-number", {"stack.yaml": y(*HEAD, *GROUP, "models:", "  - name: r", "    model_group: g",
                                              "    function_name: remote", "    connector: 42  #<")},
         "must be a string", "schema"),
    Case("inline-connector-missing-protocol", {"stack.yaml": y(*HEAD, *GROUP, "models:", "  - name: r",
                                                               "    model_group: g", "    function_name: remote",
                                                               "    connector:  #<", "      credential: {k: v}",
                                                               "      actions: [{action_type: predict, method: POST, url: 'http://h/'}]")},
         "missing required key 'protocol'", "schema", path="models[0].connector"),
    Case("prevent-destroy-string", {"stack.yaml": y(*HEAD, *GROUP, "    lifecycle: {prevent_destroy: 'true'}  #<")},
         "must be true or false, got 'true'", "schema"),
    Case("backend-roles-string", {"stack.yaml": y(*HEAD, *GROUP, "    backend_roles: admins  #<")},
         "must be a list, got 'admins'", "schema"),
    Case("models-item-not-mapping", {"stack.yaml": y(*HEAD, "models:", "  - just-a-name  #<")},
         "must be a mapping, got 'just-a-name'", "schema"),

    # --- semantic ------------------------------------------------------------------------------------------
    Case("unknown-connector", {"stack.yaml": y(*HEAD, *CONNECTOR, *GROUP, "models:", "  - name: r",
                                               "    model_group: g", "    function_name: remote",
                                               "    connector: apl  #<")},
         "connector 'apl' is not declared in connectors; did you mean 'api'? (declared: api)", "semantic",
         path="models[0].connector"),
    Case("unknown-group", {"stack.yaml": y(*HEAD, *CONNECTOR, *GROUP, "models:", "  - name: r",
                                           "    model_group: gg  #<", "    function_name: remote",
                                           "    connector: api")},
         "model group 'gg' is not declared in model_groups; did you mean 'g'?", "semantic"),
    Case("duplicate-connector", {"stack.yaml": y(*HEAD, *CONNECTOR, "  - name: api  #<", "    protocol: http",
                                                 "    credential: {k: v}",
                                                 "    actions: [{action_type: predict, method: POST, url: 'http://h/'}]")},
         "duplicate connector name 'api' (first at line 4)", "semantic"),
    Case("duplicate-group", {"stack.yaml": y(*HEAD, *GROUP, "  - name: g  #<")},
         "duplicate model group name 'g' (first at line 4)", "semantic"),
    Case("duplicate-model-in-group", {"stack.yaml": y(*HEAD, *CONNECTOR, *GROUP, *REMOTE, "  - name: r  #<",
                                                      "    model_group: g", "    function_name: remote",
                                                      "    connector: api")},
         "duplicate model 'r' in group 'g'", "semantic"),
    Case("duplicate-version-label", {"stack.yaml": y(*HEAD, *GROUP, *local_model(
        "      - version: 1.10", "        url: http://127.0.0.1:8089/models/a.zip",
        f"        model_content_hash_value: {HASH}",
        "      - version: '1.10'  #<", "        url: http://127.0.0.1:8089/models/b.zip",
        f"        model_content_hash_value: {HASH}"))},
         "duplicate version label '1.10' (first at line 11)", "semantic"),
    Case("url-and-path", {"stack.yaml": y(*HEAD, *GROUP, *local_model(
        *URL_VERSION, "        path: a.zip")), "a.zip": b"zip"},
         "url and path are both set", "semantic", line=11, args=["stack.yaml"], path="models[0].versions[0]"),
    Case("neither-url-nor-path", {"stack.yaml": y(*HEAD, *GROUP, *local_model("      - version: '1'  #<"))},
         "each version needs exactly one of url or path", "semantic"),
    Case("url-without-hash", {"stack.yaml": y(*HEAD, *GROUP, *local_model(
        "      - version: '1'  #<", "        url: http://127.0.0.1:8089/models/a.zip"))},
         "a url version needs model_content_hash_value", "semantic"),
    Case("url-bad-scheme", {"stack.yaml": y(*HEAD, *GROUP, *local_model(
        "      - version: '1'", "        url: s3://bucket/model.zip  #<",
        f"        model_content_hash_value: {HASH}"))},
         "not a model URL: 's3://bucket/model.zip' (allowed schemes: http, https, ftp, file)", "semantic"),
    Case("path-missing", {"stack.yaml": y(*HEAD, *GROUP, *local_model(
        "      - version: '1'", "        path: models/nothing.zip  #<"))},
         "nothing.zip does not exist", "semantic"),
    Case("path-hash-mismatch", {"stack.yaml": y(*HEAD, *GROUP, *local_model(
        "      - version: '1'", "        path: a.zip", f"        model_content_hash_value: {HASH}  #<")),
        "a.zip": b"not the zip you are looking for"},
         "model_content_hash_value does not match the SHA-256", "semantic", args=["stack.yaml"]),
    Case("missing-model-format", {"stack.yaml": y(*HEAD, *GROUP, "models:", "  - name: m  #<", "    model_group: g",
                                                  "    model_config: {model_type: bert, embedding_dimension: 4, "
                                                  "framework_type: sentence_transformers}",
                                                  "    versions:", *URL_VERSION)},
         "a local model needs model_format (TORCH_SCRIPT or ONNX)", "semantic", path="models[0]"),
    Case("missing-model-config", {"stack.yaml": y(*HEAD, *GROUP, *local_model(*URL_VERSION, config=()))},
         "a local model needs model_config with model_type, embedding_dimension and framework_type", "semantic",
         line=6),
    Case("missing-framework-type", {"stack.yaml": y(*HEAD, *GROUP, *local_model(*URL_VERSION, config=(
        "    model_config:  #<", "      model_type: bert", "      embedding_dimension: 4")))},
         "model_config needs framework_type", "semantic", path="models[0].model_config"),
    Case("missing-key-in-one-version", {"stack.yaml": y(*HEAD, *GROUP, *local_model(
        *URL_VERSION, "      - version: '2'  #<", "        url: http://127.0.0.1:8089/models/b.zip",
        f"        model_content_hash_value: {HASH}", "        model_format: null", config=(
            "    model_config: {model_type: bert, embedding_dimension: 4, framework_type: sentence_transformers}",)))},
         "a local model needs model_format (TORCH_SCRIPT or ONNX), on the model or on this version", "semantic"),
    Case("remote-without-connector", {"stack.yaml": y(*HEAD, *GROUP, "models:", "  - name: r  #<",
                                                      "    model_group: g", "    function_name: remote")},
         "a remote model needs a connector", "semantic"),
    Case("remote-with-empty-versions", {"stack.yaml": y(*HEAD, *CONNECTOR, *GROUP, *REMOTE,
                                                        "    versions: []  #<")},
         "an empty versions list: give at least one version", "semantic"),
    Case("remote-version-with-url", {"stack.yaml": y(*HEAD, *CONNECTOR, *GROUP, *REMOTE, "    versions:",
                                                     "      - version: '1'",
                                                     "        url: http://127.0.0.1:8089/a.zip  #<")},
         "a remote model takes no url", "semantic"),
    Case("remote-version-unknown-connector", {"stack.yaml": y(*HEAD, *CONNECTOR, *GROUP, *REMOTE, "    versions:",
                                                              "      - version: '1'",
                                                              "        connector: apx  #<")},
         "connector 'apx' is not declared in connectors; did you mean 'api'?", "semantic"),
    Case("local-version-with-connector", {"stack.yaml": y(*HEAD, *CONNECTOR, *GROUP, *local_model(
        *URL_VERSION, "        connector: api  #<"))},
         "only remote models (function_name: remote) take a connector", "semantic"),
    Case("remote-with-url", {"stack.yaml": y(*HEAD, *CONNECTOR, *GROUP, *REMOTE,
                                             "    url: http://127.0.0.1:8089/models/a.zip  #<")},
         "a remote model takes no url", "semantic"),
    Case("local-with-connector", {"stack.yaml": y(*HEAD, *CONNECTOR, *GROUP, *local_model(
        *URL_VERSION, head=("    connector: api  #<",)))},
         "only remote models (function_name: remote) take a connector", "semantic"),
    Case("local-without-versions", {"stack.yaml": y(*HEAD, *GROUP, "models:", "  - name: m  #<",
                                                    "    model_group: g", "    model_format: ONNX")},
         "a local model needs a versions list with at least one version", "semantic"),
    Case("access-fields-with-group", {"stack.yaml": y(*HEAD, *CONNECTOR, *GROUP, *REMOTE,
                                                      "    access_mode: private  #<")},
         "access fields shape only the implicit group of a model without model_group; set access_mode on model "
         "group 'g' instead", "semantic"),
    Case("implicit-group-collision", {"stack.yaml": y(*HEAD, *CONNECTOR, "model_groups:", "  - name: r",
                                                      "models:", "  - name: r  #<", "    function_name: remote",
                                                      "    connector: api")},
         "gets an implicit group named 'r', but a model group of that name is declared (at line 10)", "semantic"),
    Case("all-config-bad-json", {"stack.yaml": y(*HEAD, *GROUP, *local_model(*URL_VERSION, config=(
        "    model_config:", "      model_type: bert", "      embedding_dimension: 4",
        "      framework_type: sentence_transformers", "      all_config: '{\"hidden_size\": 384'  #<")))},
         "is not valid JSON", "semantic"),
    Case("credential-reference-typo", {"stack.yaml": y(*HEAD, "connectors:", "  - name: api", "    protocol: http",
                                                       "    credential: {api_key: k}", "    actions:",
                                                       "      - action_type: predict", "        method: POST",
                                                       "        url: http://h/", "        headers:",
                                                       "          Authorization: Bearer ${credential.apikey}  #<")},
         "refers to ${credential.apikey}, but the connector's credential has no key 'apikey'; did you mean "
         "'api_key'?", "semantic"),
    Case("guardrail-fields-of-other-type", {"stack.yaml": y(*HEAD, *CONNECTOR, *GROUP, *REMOTE,
                                                            "    guardrails:", "      type: local_regex",
                                                            "      input_guardrail:",
                                                            "        model_id: abc  #<")},
         "model_id does not apply to a guardrail of type local_regex", "semantic"),

    # --- overlays: problems point where the value was written ----------------------------------------------
    Case("overlay-typo-in-later-file", {
        "base.yaml": y(*HEAD, *CONNECTOR, *GROUP, *REMOTE),
        "prod.yaml": y("models:", "  - name: r", "    deploy: true", "    rate_limitter: {limit: 5, unit: SECONDS}  #<")},
         "unknown key 'rate_limitter'; did you mean 'rate_limiter'?", "schema", file="prod.yaml"),
    Case("overlay-bad-value-in-later-file", {
        "base.yaml": y(*HEAD, *CONNECTOR, *GROUP, *REMOTE),
        "prod.yaml": y("connectors:", "  - name: api", "    protocol: smtp  #<")},
         "invalid value 'smtp'", "schema", file="prod.yaml"),
    Case("overlay-missing-in-base", {
        "base.yaml": y(*HEAD, "connectors:", "  - name: api  #<", "    credential: {k: v}",
                       "    actions: [{action_type: predict, method: POST, url: 'http://h/'}]"),
        "prod.yaml": y("connectors:", "  - name: api", "    description: no protocol anywhere")},
         "missing required key 'protocol'", "schema", file="base.yaml"),
]
