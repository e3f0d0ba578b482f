"""Hand-built plans for the renderer tests (and the render benchmark): one per action and combination.

Plans here are data only; no planner is involved, so a renderer test never depends on how the
planner decides things.
"""

from __future__ import annotations

from mlsync.core.address import Address
from mlsync.core.plan import Action, FieldChange, Plan, Reason, ResourceChange
from mlsync.core.secrets import MASK

A = Action
R = Reason
STACK = "search-prod"
CLUSTER = "2.19.1"

CONNECTOR = Address("connector", "embeddings-api")
GROUP = Address("model_group", "embeddings")
MINILM_101 = Address("model", "all-MiniLM-L6-v2", group="embeddings", version="1.0.1")
MINILM_110 = Address("model", "all-MiniLM-L6-v2", group="embeddings", version="1.1.0")
REMOTE = Address("model", "embeddings-remote", group="embeddings")

CONNECTOR_FORM = {
    "name": "embeddings-api",
    "description": "Embedding service",
    "version": "1",
    "protocol": "http",
    "parameters": {"model": "text-embedding-3-small"},
    "actions": [{
        "action_type": "PREDICT",
        "method": "POST",
        "url": "https://api.example.com/v1/embeddings",
        "headers": {"Authorization": "Bearer ${credential.api_key}"},
        "request_body": '{"input": ${parameters.input}, "model": "${parameters.model}"}',
    }],
    "client_config": {"max_connection": 20, "read_timeout": 30},
}

MINILM_FORM = {
    "name": "all-MiniLM-L6-v2",
    "description": "sentence embeddings",
    "function_name": "TEXT_EMBEDDING",
    "model_format": "TORCH_SCRIPT",
    "model_config": {"model_type": "bert", "embedding_dimension": 384,
                     "framework_type": "SENTENCE_TRANSFORMERS", "pooling_mode": "MEAN", "normalize_result": True},
    "model_content_hash_value": "c15f0d2e62d872be5b5bc6c84d2e0f4921541e29fefbef51d59cc10a8ae30e0f",
}


def plan(*changes: ResourceChange, warnings: tuple[str, ...] = (), noops: int = 0) -> Plan:
    filler = tuple(
        ResourceChange(Address("model_group", f"unchanged-{i}"), (A.NOOP,), "up to date", (R.UP_TO_DATE,),
                       server_id=f"grp{i:04d}")
        for i in range(noops))
    return Plan(STACK, tuple(changes) + filler, observed_fingerprints={"abc123": "sha256:00ff"},
                sources=("mlsync.yaml",), cluster_version=CLUSTER, warnings=warnings)


def create_connector() -> ResourceChange:
    return ResourceChange(CONNECTOR, (A.CREATE,), "not on the cluster", (R.NOT_ON_CLUSTER,),
                          after=CONNECTOR_FORM,
                          credential_fingerprint="hmac-sha256:" + "1" * 64)


def register_version() -> ResourceChange:
    return ResourceChange(MINILM_110, (A.REGISTER, A.DEPLOY), "not registered yet", (R.NOT_ON_CLUSTER,),
                          after={**MINILM_FORM, "model_content_hash_value": "9" * 64},
                          depends_on=(str(GROUP),), deploy=True, deployed=False,
                          artifact={"path": "models/minilm-1.1.0.zip", "sha256": "9" * 64, "size": 90_868_376})


def register_inline_remote() -> ResourceChange:
    """A remote model with its own (inline) connector: the credential goes with the registration."""
    inline = {k: v for k, v in CONNECTOR_FORM.items() if k != "client_config"}
    return ResourceChange(REMOTE, (A.REGISTER,), "not registered yet", (R.NOT_ON_CLUSTER,),
                          after={"name": "embeddings-remote", "function_name": "REMOTE", "connector": inline},
                          depends_on=(str(GROUP),), deploy=False, deployed=False,
                          credential_fingerprint="hmac-sha256:" + "3" * 64)


def update_group() -> ResourceChange:
    return ResourceChange(
        GROUP, (A.UPDATE,), "fields differ: description, backend_roles", (R.FIELDS_DIFFER,), server_id="Gk3xZ5MBq1",
        before={"name": "embeddings", "description": "old text", "access_mode": "restricted", "backend_roles": ["ml"]},
        after={"name": "embeddings", "description": "Text embedding models", "access_mode": "restricted",
               "backend_roles": ["ml", "search"]},
        field_changes=(FieldChange("backend_roles[1]", None, "search"),
                       FieldChange("description", "old text", "Text embedding models")))


def update_connector_credential() -> ResourceChange:
    return ResourceChange(
        CONNECTOR, (A.UPDATE,), "fields differ: client_config.read_timeout, parameters.dimensions; credential changed "
        "in the file", (R.FIELDS_DIFFER, R.CREDENTIAL_CHANGED), server_id="c0nn3ct0r1",
        before=CONNECTOR_FORM, after=CONNECTOR_FORM,
        field_changes=(FieldChange("client_config.read_timeout", 30, 60),
                       FieldChange("parameters.dimensions", None, "256"),
                       FieldChange("parameters.user", "ops", None),
                       FieldChange("credential", MASK, MASK, sensitive=True)),
        credential_fingerprint="hmac-sha256:" + "2" * 64)


def replace_version() -> ResourceChange:
    return ResourceChange(
        MINILM_101, (A.UNDEPLOY, A.REPLACE, A.DEPLOY), "cannot update in place: model_content_hash_value, model_format",
        (R.FIELDS_FORCE_REPLACE,),
        server_id="m0d3l101", server_version="3", before=MINILM_FORM,
        after={**MINILM_FORM, "model_format": "ONNX", "model_content_hash_value": "d" * 64},
        field_changes=(FieldChange("model_content_hash_value", MINILM_FORM["model_content_hash_value"], "d" * 64,
                                   forces_replace=True),
                       FieldChange("model_format", "TORCH_SCRIPT", "ONNX", forces_replace=True)),
        deploy=True, deployed=True)


def delete_version() -> ResourceChange:
    return ResourceChange(Address("model", "old-model", group="embeddings", version="0.9"), (A.UNDEPLOY, A.DELETE),
                          "not in the file any more", (R.NOT_IN_FILE,), server_id="old09", server_version="1",
                          before=MINILM_FORM,
                          deployed=True)


def delete_group() -> ResourceChange:
    return ResourceChange(Address("model_group", "legacy"), (A.DELETE,), "not in the file any more", (R.NOT_IN_FILE,),
                          server_id="legacyG1", before={"name": "legacy"})


def deploy_version() -> ResourceChange:
    return ResourceChange(MINILM_101, (A.DEPLOY,), "not deployed (state REGISTERED)", (R.NOT_DEPLOYED,),
                          server_id="m0d3l101",
                          server_version="2", before=MINILM_FORM, after=MINILM_FORM, deploy=True, deployed=False)


def undeploy_version() -> ResourceChange:
    return ResourceChange(MINILM_101, (A.UNDEPLOY,), "deployed (state DEPLOYED) but the file says deploy: false",
                          (R.DEPLOYED_UNWANTED,),
                          server_id="m0d3l101", server_version="2", before=MINILM_FORM, after=MINILM_FORM,
                          deploy=False, deployed=True)


def adopt_group() -> ResourceChange:
    return ResourceChange(GROUP, (A.ADOPT,), "unmanaged group with the same name", (R.UNMANAGED_MATCH,),
                          server_id="Gk3xZ5MBq1",
                          before={"name": "embeddings"}, after={"name": "embeddings"})


def adopt_and_update_remote() -> ResourceChange:
    return ResourceChange(REMOTE, (A.ADOPT, A.UPDATE), "unmanaged model matches by group, name; fields differ: "
                          "rate_limiter.limit", (R.UNMANAGED_MATCH, R.FIELDS_DIFFER), server_id="r3m0t3",
                          server_version="1",
                          field_changes=(FieldChange("rate_limiter.limit", "50", "100"),))


def connector_cycle() -> tuple[ResourceChange, ...]:
    """A changed connector used by a deployed model: undeploy, update, redeploy."""
    conn = ResourceChange(
        CONNECTOR, (A.UNDEPLOY, A.UPDATE, A.DEPLOY),
        "fields differ: actions[0].url; 1 deployed model uses it (the server refuses to update a connector "
        "while a model using it is deployed)", (R.FIELDS_DIFFER, R.CONNECTOR_UPDATE_REDEPLOY), server_id="c0nn3ct0r1",
        field_changes=(FieldChange("actions[0].url", "https://api.example.com/v1/embeddings",
                                   "https://api.example.com/v2/embeddings"),))
    model = ResourceChange(REMOTE, (A.UNDEPLOY, A.DEPLOY), "its connector embeddings-api changes",
                           (R.CONNECTOR_UPDATE_REDEPLOY,),
                           server_id="r3m0t3", server_version="1", depends_on=(str(CONNECTOR),),
                           deploy=True, deployed=True)
    return conn, model


def drift_changes() -> tuple[ResourceChange, ...]:
    undeployed = ResourceChange(MINILM_101, (A.DEPLOY,), "undeployed outside mlsync (state UNDEPLOYED)",
                                (R.NOT_DEPLOYED,),
                                server_id="m0d3l101", server_version="2", drift=True, deploy=True, deployed=False)
    edited = ResourceChange(GROUP, (A.UPDATE,), "fields differ: description", (R.FIELDS_DIFFER,), server_id="Gk3xZ5MBq1",
                            drift=True,
                            field_changes=(FieldChange("description", "edited by hand", "Text embedding models"),))
    deleted = ResourceChange(CONNECTOR, (A.CREATE,), "deleted outside mlsync (id c0nn3ct0r1 is gone)",
                             (R.DELETED_OUTSIDE,),
                             after={"name": "embeddings-api", "protocol": "http"}, drift=True)
    return deleted, edited, undeployed


WARNINGS = (
    'connector["embeddings-api"]: parameters legacy_flag are on the server but not in the file; the server cannot '
    "remove a parameter in place (recreate the connector to drop them)",
    "model access control is disabled on this cluster; access_mode and backend_roles are not compared",
)

LONG_SCRIPT_BEFORE = "\n".join([
    "def embeddings = params.data;",
    "def out = [];",
    "for (int i = 0; i < embeddings.length; i++) {",
    "  out.add(embeddings[i].embedding);",
    "}",
    "return out;",
    "// padding line 1",
    "// padding line 2",
    "// padding line 3",
])
LONG_SCRIPT_AFTER = LONG_SCRIPT_BEFORE.replace("out.add(embeddings[i].embedding);",
                                               "out.add(embeddings[i].embedding.normalize());")


def long_values() -> ResourceChange:
    long_body_b = '{"input": ${parameters.input}, "model": "${parameters.model}", "encoding_format": "float", ' \
                  '"dimensions": 1536, "user": "mlsync"}'
    long_body_a = long_body_b.replace('"dimensions": 1536', '"dimensions": 256')
    return ResourceChange(
        CONNECTOR, (A.UPDATE,), "fields differ: actions[0].post_process_function, actions[0].request_body, "
        "client_config, description, parameters.prompt", (R.FIELDS_DIFFER,), server_id="c0nn3ct0r1",
        field_changes=(
            FieldChange("actions[0].post_process_function", LONG_SCRIPT_BEFORE, LONG_SCRIPT_AFTER),
            FieldChange("actions[0].request_body", long_body_b, long_body_a),
            FieldChange("client_config", {"max_connection": 20},
                        {"max_connection": 20, "read_timeout": 30, "connection_timeout": 30, "max_retry_times": 3,
                         "retry_backoff_millis": 200, "retry_timeout_seconds": 30,
                         "retry_backoff_policy": "constant"}),
            FieldChange("description", "x" * 300, None),
            FieldChange("parameters.prompt", None, "Summarise:\n${parameters.text}\nin one line"),
        ))


def special_names() -> ResourceChange:
    addr = Address("model", "a|b `tick` <b>", group="g:1/prod", version="1.0 *beta*")
    return ResourceChange(addr, (A.REGISTER,), "reason with | pipe, <html> & **stars** and a ``` fence",
                          (R.NOT_ON_CLUSTER,),
                          after={"name": "a|b `tick` <b>", "description": "```\nnot a fence end\n```"})


SCENARIOS = {
    "empty": lambda: plan(),
    "empty_with_noops": lambda: plan(noops=3),
    "create_connector": lambda: plan(create_connector()),
    "register_version": lambda: plan(register_version()),
    "register_inline_remote": lambda: plan(register_inline_remote()),
    "update": lambda: plan(update_connector_credential(), update_group()),
    "replace": lambda: plan(replace_version()),
    "delete": lambda: plan(delete_version(), delete_group()),
    "deploy": lambda: plan(deploy_version()),
    "undeploy": lambda: plan(undeploy_version()),
    "adopt": lambda: plan(adopt_group(), adopt_and_update_remote()),
    "connector_cycle": lambda: plan(*connector_cycle()),
    "drift": lambda: plan(*drift_changes()),
    "warnings": lambda: plan(create_connector(), warnings=WARNINGS),
    "warnings_only": lambda: plan(warnings=WARNINGS, noops=1),
    "long_values": lambda: plan(long_values()),
    "special_names": lambda: plan(special_names()),
    "full": lambda: plan(create_connector(), adopt_group(), register_version(), replace_version(),
                         adopt_and_update_remote(), delete_version(), delete_group(),
                         warnings=WARNINGS[:1], noops=2),
}


def big_plan(n: int = 10_000) -> Plan:
    """`n` changes of every kind, for the size budget and the timing check."""
    makers = (create_connector, register_version, update_connector_credential, update_group, replace_version,
              deploy_version, undeploy_version, adopt_and_update_remote, delete_version, long_values)
    changes = []
    for i in range(n):
        ch = makers[i % len(makers)]()
        a = ch.address
        addr = Address(a.kind, f"{a.name}-{i:05d}", group=a.group, version=a.version)
        changes.append(ResourceChange(addr, ch.actions, ch.reason, ch.reason_codes, server_id=ch.server_id,
                                      server_version=ch.server_version, before=ch.before, after=ch.after,
                                      field_changes=ch.field_changes, drift=(i % 97 == 0), deploy=ch.deploy,
                                      deployed=ch.deployed, artifact=ch.artifact))
    return Plan(STACK, tuple(changes), cluster_version=CLUSTER, warnings=WARNINGS)


__all__ = ["SCENARIOS", "big_plan", "plan"]
