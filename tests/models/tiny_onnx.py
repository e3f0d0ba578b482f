"""A tiny, real ONNX TEXT_EMBEDDING model that ML Commons 2.19 deploys and runs (issue 14).

Built with ``onnx`` and ``numpy`` only (no torch, nothing downloaded). The zip holds two files at its
root, the layout ML Commons expects: ``DLModel.loadModel`` takes the one ``*.onnx`` file at the top
of the unzipped folder, and ``ONNXSentenceTransformerTextEmbeddingTranslator.prepare()`` loads
``<folder>/tokenizer.json``.

``tiny-onnx.onnx``
    inputs ``input_ids``, ``attention_mask``, ``token_type_ids`` (int64 ``[batch, seq]``; the
    translator sends ``token_type_ids`` for ``model_type: bert``, so the graph must declare it);
    output ``last_hidden_state = E[input_ids] + T[token_type_ids]`` (float32 ``[batch, seq, 8]``).
    ML Commons pools it with the registered ``pooling_mode`` (register with ``mean``).
    Opset 13, IR 8: ONNX Runtime 1.16.3 (what the plugin ships) reads IR <= 9.
``tokenizer.json``
    a HuggingFace ``tokenizers`` WordLevel tokenizer written by hand: Lowercase normaliser,
    Whitespace pre-tokeniser, ``[CLS] $A [SEP]`` template, a 24-token vocabulary.

The zip has fixed timestamps and stored (not deflated) entries, so the same ``seed`` always gives the same bytes (and SHA-256);
another seed gives other weights, another hash and another vector (a "second build").

``python tests/models/tiny_onnx.py`` rewrites ``examples/models/tiny-onnx.zip`` (seed 14) and
``tiny-onnx-v2.zip`` (seed 15); ``tests/models/test_tiny_onnx.py`` checks they are what this builds.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DIM = 8
#: The weights' random seed of the default build; :data:`SEED_V2` is the second build.
SEED = 14
SEED_V2 = 15
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
WORDS = ["hello", "world", "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog",
         "opensearch", "ml", "commons", "model", "sync", "test", ".", ",", "!", "?"]
VOCAB = {tok: i for i, tok in enumerate(SPECIAL + WORDS)}
ONNX_NAME = "tiny-onnx.onnx"
OPSET = 13
IR_VERSION = 8
ZIP_DATE = (2024, 1, 1, 0, 0, 0)

#: The register API's ``model_config`` for this model.
MODEL_CONFIG = {"model_type": "bert", "embedding_dimension": DIM, "framework_type": "sentence_transformers",
                "pooling_mode": "mean"}

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_ZIPS = {SEED: REPO_ROOT / "examples" / "models" / "tiny-onnx.zip",
                SEED_V2: REPO_ROOT / "examples" / "models" / "tiny-onnx-v2.zip"}


def weights(seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """The word embedding table ``[vocab, DIM]`` ([PAD] is zero) and the token-type table ``[2, DIM]``."""
    rng = np.random.RandomState(seed)
    emb = np.round(rng.uniform(-1, 1, size=(len(VOCAB), DIM)), 3).astype(np.float32)
    emb[VOCAB["[PAD]"]] = 0.0
    types = np.round(rng.uniform(-0.1, 0.1, size=(2, DIM)), 3).astype(np.float32)
    return emb, types


def build_graph(seed: int = SEED) -> onnx.ModelProto:
    emb, types = weights(seed)
    dims = ["batch", "seq"]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, dims)
              for n in ("input_ids", "attention_mask", "token_type_ids")]
    inits = [numpy_helper.from_array(emb, "word_embeddings"),
             numpy_helper.from_array(types, "token_type_embeddings")]
    nodes = [
        helper.make_node("Gather", ["word_embeddings", "input_ids"], ["we"], axis=0),
        helper.make_node("Gather", ["token_type_embeddings", "token_type_ids"], ["te"], axis=0),
        helper.make_node("Add", ["we", "te"], ["last_hidden_state"]),
    ]
    outputs = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", DIM])]
    graph = helper.make_graph(nodes, "tiny_text_embedding", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, producer_name="mlsync-tiny-onnx",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def tokenizer_json() -> dict:
    def added(tok: str) -> dict:
        return {"id": VOCAB[tok], "content": tok, "single_word": False, "lstrip": False,
                "rstrip": False, "normalized": False, "special": True}

    def special(tok: str) -> dict:
        return {"id": tok, "ids": [VOCAB[tok]], "tokens": [tok]}

    def seq(part: str, type_id: int) -> dict:
        return {"Sequence": {"id": part, "type_id": type_id}}

    def tok(name: str, type_id: int) -> dict:
        return {"SpecialToken": {"id": name, "type_id": type_id}}

    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [added(t) for t in SPECIAL],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [tok("[CLS]", 0), seq("A", 0), tok("[SEP]", 0)],
            "pair": [tok("[CLS]", 0), seq("A", 0), tok("[SEP]", 0), seq("B", 1), tok("[SEP]", 1)],
            "special_tokens": {"[CLS]": special("[CLS]"), "[SEP]": special("[SEP]")},
        },
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": VOCAB, "unk_token": "[UNK]"},
    }


def zip_bytes(seed: int = SEED) -> bytes:
    """The model zip's bytes (the same for the same ``seed``)."""
    buf = io.BytesIO()
    # Stored, not deflated: deflate output may differ between zlib builds, and the example zips
    # must be byte-for-byte what this function makes (test_tiny_onnx.py).
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in ((ONNX_NAME, build_graph(seed).SerializeToString()),
                           ("tokenizer.json", json.dumps(tokenizer_json(), indent=1).encode())):
            zf.writestr(zipfile.ZipInfo(name, ZIP_DATE), data, zipfile.ZIP_STORED)
    return buf.getvalue()


def build_zip(path: str | Path, *, seed: int = SEED) -> tuple[str, int]:
    """Write the model zip to ``path``; return its SHA-256 (lower-case hex, what
    ``model_content_hash_value`` wants) and its size in bytes."""
    data = zip_bytes(seed)
    Path(path).write_bytes(data)
    return hashlib.sha256(data).hexdigest(), len(data)


def tokenize(sentence: str) -> list[int]:
    """What ``tokenizer.json`` does: lowercase, split like HF's Whitespace pre-tokeniser
    (``\\w+|[^\\w\\s]+``), WordLevel lookup, ``[CLS] ... [SEP]``."""
    pieces = re.findall(r"\w+|[^\w\s]+", sentence.lower())
    return [VOCAB["[CLS]"]] + [VOCAB.get(p, VOCAB["[UNK]"]) for p in pieces] + [VOCAB["[SEP]"]]


def expected_embedding(sentence: str, *, seed: int = SEED, normalize: bool = False) -> list[float]:
    """The vector ML Commons must return for ``sentence`` (registered with ``pooling_mode: mean``):
    the mean over the tokens of ``E[id] + T[0]`` in float32; L2-normalised for ``normalize_result``."""
    emb, types = weights(seed)
    ids = np.array(tokenize(sentence), dtype=np.int64)
    hidden = emb[ids] + types[np.zeros_like(ids)]
    vec = (hidden.sum(axis=0, dtype=np.float32) / np.float32(len(ids))).astype(np.float32)
    if normalize:
        vec = (vec / np.linalg.norm(vec)).astype(np.float32)
    return [float(x) for x in vec]


def main(argv: list[str]) -> int:
    for seed, path in EXAMPLE_ZIPS.items():
        sha, size = build_zip(path, seed=seed)
        print(f"{path.relative_to(REPO_ROOT)}: {size} bytes, sha256 {sha}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
