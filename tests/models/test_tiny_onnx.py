"""The tiny ONNX model: the example zips are what tiny_onnx.py builds, and the graph computes the
vector expected_embedding() promises (run here with onnx's reference evaluator; no node needed)."""

from __future__ import annotations

import hashlib
import json
import zipfile

import numpy as np
import pytest
from onnx.reference import ReferenceEvaluator

from models import tiny_onnx

SENTENCE = "Hello world, the quick brown fox!"


@pytest.mark.parametrize("seed", sorted(tiny_onnx.EXAMPLE_ZIPS))
def test_example_zip_is_what_the_module_builds(seed, tmp_path):
    committed = tiny_onnx.EXAMPLE_ZIPS[seed].read_bytes()
    sha, size = tiny_onnx.build_zip(tmp_path / "m.zip", seed=seed)
    assert (tmp_path / "m.zip").read_bytes() == committed, \
        "regenerate with `python tests/models/tiny_onnx.py` (and update the examples' hashes)"
    assert (sha, size) == (hashlib.sha256(committed).hexdigest(), len(committed))
    with zipfile.ZipFile(tiny_onnx.EXAMPLE_ZIPS[seed]) as zf:
        assert sorted(zf.namelist()) == ["tiny-onnx.onnx", "tokenizer.json"]   # at the root, one *.onnx
        assert json.loads(zf.read("tokenizer.json"))["model"]["vocab"] == tiny_onnx.VOCAB


def test_two_builds_differ():
    assert tiny_onnx.zip_bytes(tiny_onnx.SEED) != tiny_onnx.zip_bytes(tiny_onnx.SEED_V2)
    assert tiny_onnx.expected_embedding(SENTENCE) != tiny_onnx.expected_embedding(SENTENCE, seed=tiny_onnx.SEED_V2)


def test_tokenizer_reimplementation():
    # The ids HF `tokenizers` gives for tokenizer.json (cross-checked once with tokenizers itself).
    assert tiny_onnx.tokenize(SENTENCE) == [2, 4, 5, 21, 6, 7, 8, 9, 22, 3]
    assert tiny_onnx.tokenize("unknown words") == [2, 1, 1, 3]


@pytest.mark.parametrize("seed", [tiny_onnx.SEED, tiny_onnx.SEED_V2])
def test_graph_mean_pooled_is_the_expected_embedding(seed):
    ids = np.array([tiny_onnx.tokenize(SENTENCE)], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    (hidden,) = ReferenceEvaluator(tiny_onnx.build_graph(seed)).run(None, feeds)
    assert hidden.shape == (1, ids.shape[1], tiny_onnx.DIM)
    pooled = hidden[0].mean(axis=0)
    assert np.allclose(pooled, tiny_onnx.expected_embedding(SENTENCE, seed=seed), atol=1e-6)
    normalized = tiny_onnx.expected_embedding(SENTENCE, seed=seed, normalize=True)
    assert np.isclose(np.linalg.norm(normalized), 1.0, atol=1e-6)
