"""What a plan says a registration moves: a local upload, or a download the node does itself."""

from mlsync.core.address import Address
from mlsync.core.plan import Action, ResourceChange
from mlsync.render._common import artifact_text

SHA = "c15f0d2e62d872be5b5bc6c84d2e0f4921541e29fefbef51d59cc10a8ae30e0f"


def _change(artifact: dict, *actions: Action) -> ResourceChange:
    return ResourceChange(Address("model", "m", "g", "1"), actions or (Action.REGISTER,), "not registered yet",
                          artifact=artifact)


def test_a_local_file_is_an_upload_with_its_size_and_hash():
    text = artifact_text(_change({"path": "models/x.zip", "sha256": SHA, "size": 90_900_000}))
    assert text == "upload models/x.zip (86.7 MiB, sha256 c15f0d2e62d8…)"


def test_a_url_version_says_the_node_downloads_it_instead_of_upload_question_mark():
    text = artifact_text(_change({"url": "https://models.example.com/minilm.zip", "sha256": SHA}))
    assert text == "the node downloads https://models.example.com/minilm.zip (sha256 c15f0d2e62d8…)"
    assert "upload ?" not in text


def test_nothing_is_said_when_nothing_is_registered():
    assert artifact_text(_change({"url": "https://x/y.zip", "sha256": SHA}, Action.UPDATE)) is None
