"""The three views of a served model — the server's v2 metadata, its model configuration and the
Triton repository's ``config.pbtxt`` — are written from its one description
(salkit.runtime.server.interface) and agree; a change to the description shows in all three."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("tritonclient.grpc")
from google.protobuf import json_format, text_format  # noqa: E402 — after importorskip, so a host without tritonclient skips the module
from tritonclient.grpc import model_config_pb2  # noqa: E402 — after importorskip, so a host without tritonclient skips the module

from salkit.export.triton_repo import entry_config  # noqa: E402 — after importorskip, so a host without tritonclient skips the module
from salkit.runtime.batching_predictor import BatchingPredictor  # noqa: E402 — after importorskip, so a host without tritonclient skips the module
from salkit.runtime.kinds import get_kind  # noqa: E402 — after importorskip, so a host without tritonclient skips the module
from salkit.runtime.server import interface, model_config  # noqa: E402 — after importorskip, so a host without tritonclient skips the module
from salkit.runtime.server.models import SERVED_MODELS, models_for  # noqa: E402 — after importorskip, so a host without tritonclient skips the module
from tests.runtime.fake_predictor import SIZE, FakePredictor  # noqa: E402 — after importorskip, so a host without tritonclient skips the module

KINDS = ("coop", "qefpn")


def _views(kind: str) -> dict[str, tuple[dict, model_config_pb2.ModelConfig, model_config_pb2.ModelConfig]]:
    """Per served model: (v2 metadata, model config, Triton config.pbtxt), the configs parsed into Triton's schema."""
    fake = FakePredictor(kind)
    settings = model_config.model_settings(fake.manifest)
    with BatchingPredictor(fake) as batching:
        views = {}
        for name, model in models_for(batching).items():
            served = model_config.model_config(name, fake.manifest, backend_name="fake", gpu=False, max_batch_size=4,
                                               max_delay_ms=1.0, max_queue=8)
            pbtxt = entry_config(name, fake.manifest, {**settings, "prefix": f"{kind}_"})
            views[name] = (model.metadata(), json_format.ParseDict(served, model_config_pb2.ModelConfig()),
                           text_format.Parse(pbtxt, model_config_pb2.ModelConfig()))
    return views


def _from_metadata(entry: dict) -> tuple[str, list[int]]:
    """What a v2 metadata entry says in the configs' layout: FP32 at S × S after the batch axis."""
    shape = entry["shape"]
    if shape == [-1, -1, -1, 3]:  # UINT8 pixels: the configs' normalised FP32 image
        return entry["name"], [3, SIZE, SIZE]
    if shape == [-1]:  # one value per image: dims [1] reshaped to []
        return entry["name"], [1]
    return entry["name"], [shape[1], SIZE, SIZE]


@pytest.mark.parametrize("kind", KINDS)
def test_the_three_views_agree(kind: str) -> None:
    views = _views(kind)
    assert list(views) == list(get_kind(kind).served_models)
    for name, (metadata, served, triton) in views.items():
        described = interface.INTERFACES[name]
        assert [t["name"] for t in metadata["inputs"]] == [t.name for t in served.input] == [t.name for t in described.inputs]
        assert [t["name"] for t in metadata["outputs"]] == [t.name for t in served.output] == [t.name for t in described.outputs]
        assert list(served.input) == list(triton.input) and list(served.output) == list(triton.output)
        for entries, tensors in ((metadata["inputs"], served.input), (metadata["outputs"], served.output)):
            assert [_from_metadata(e) for e in entries] == [(t.name, list(t.dims)) for t in tensors]
            assert all(t.data_type == model_config_pb2.TYPE_FP32 for t in tensors)
        served_params = {k: v.string_value for k, v in served.parameters.items()}
        triton_params = {k: v.string_value for k, v in triton.parameters.items()}
        assert served_params["salkit_request_parameters"] == triton_params["salkit_request_parameters"]
        assert json.loads(served_params["salkit_request_parameters"]) == {p.name: p.datatype for p in described.parameters}


def test_every_served_model_has_one_description() -> None:
    assert SERVED_MODELS.keys() == interface.INTERFACES.keys()


def test_a_changed_description_changes_every_view(monkeypatch: pytest.MonkeyPatch) -> None:
    old = interface.INTERFACES["qefpn"]
    extra = interface.Tensor("CONFIDENCE", "map", 2)
    monkeypatch.setitem(interface.INTERFACES, "qefpn", interface.Interface(
        "qefpn", old.inputs, (*old.outputs, extra), (*old.parameters, interface.Parameter("depth", "INT64", 1, 9))))
    metadata, served, triton = _views("qefpn")["qefpn"]
    assert metadata["outputs"][-1] == {"name": "CONFIDENCE", "datatype": "FP32", "shape": [-1, 2, -1, -1]}
    for config in (served, triton):
        assert (config.output[-1].name, list(config.output[-1].dims)) == ("CONFIDENCE", [2, SIZE, SIZE])
        assert json.loads(config.parameters["salkit_request_parameters"].string_value) == {"steps": "INT64", "depth": "INT64"}


def test_parameters_are_read_against_the_description() -> None:
    from salkit.runtime.server.protocol import ProtocolError

    saliency = interface.INTERFACES["saliency"]
    assert saliency.read({}) == {"samples": None, "steps": None, "noise": False, "seed": None}
    assert saliency.read({"samples": 64, "steps": 0, "noise": True, "seed": 7}) == {"samples": 64, "steps": 0, "noise": True, "seed": 7}
    for bad, words in (({"samples": 0}, "'samples' must be an integer in [1, 64]"), ({"steps": 257}, "in [0, 256]"),
                       ({"noise": 1}, "'noise' must be true or false"), ({"seed": True}, "'seed' must be an integer")):
        with pytest.raises(ProtocolError, match=words.replace("[", r"\[").replace("]", r"\]")):
            saliency.read(bad)
