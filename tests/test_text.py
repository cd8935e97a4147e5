import csv
import gzip
import json
import random
import shutil

import pytest
import torch

from kdtool import QMatrix
from kdtool.data import BatchLoader, load_dataset
from kdtool.data.classnames import dataset_class_names
from kdtool.data.embedded import EMBEDDED_ROOT
from kdtool.data.text import PAD_ID, UNK_ID, Vocabulary, load_text_dataset, tokenize, trim_to_longest
from kdtool.errors import KdtoolError
from kdtool.models.registry import build_model
from kdtool.models.text import TEXT_MODELS, BiLSTMClassifier, TextCNN, load_word_vectors
from kdtool.runs.folder import RunDir
from kdtool.training.rundata import predict_run
from kdtool.training.runmodel import load_run_model

WORDS = {
    "joy": ["love", "great", "happy", "thanks", "awesome"],
    "anger": ["hate", "stupid", "angry", "worst", "annoying"],
    "fear": ["scared", "afraid", "worried", "nervous", "terrified"],
}
FILLER = ["the", "this", "is", "so", "i", "am", "really", "it", "was", "you"]


def write_text_folder(folder, n_train=120, n_test=45, seed=0):
    """A three-class toy corpus whose label is given away by one cue word per text."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        lines = []
        for i in range(n):
            label = list(WORDS)[i % 3]
            words = [*rng.choices(FILLER, k=rng.randint(0, 9)), rng.choice(WORDS[label])]
            rng.shuffle(words)
            lines.append(f"{label}\t{' '.join(words).capitalize()}!")
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture
def text_folder(tmp_path):
    return write_text_folder(tmp_path / "emo")


def test_tokenizer_lowercases_and_splits_symbols():
    assert tokenize("Don't STOP!! [NAME] said café 😀") == [
        "don't", "stop", "!", "!", "[", "name", "]", "said", "café", "😀",
    ]  # fmt: skip
    assert tokenize("  ") == []


def test_vocabulary_ranks_by_frequency_then_alphabet_and_encodes():
    texts = [tokenize("b a c a"), tokenize("c d a")]
    vocab = Vocabulary.build(texts, size=5)
    assert vocab.tokens == ("<pad>", "<unk>", "a", "c", "b")  # a:3, c:2, then b/d tie (1) -> b
    ids = vocab.encode([tokenize("a d b c a"), [], tokenize("c")], max_len=4)
    assert ids.dtype == torch.int64 and ids.shape == (3, 4)
    assert ids.tolist() == [[2, UNK_ID, 4, 3], [UNK_ID, PAD_ID, PAD_ID, PAD_ID], [3, PAD_ID, PAD_ID, PAD_ID]]
    with pytest.raises(KdtoolError, match="--vocab-size"):
        Vocabulary.build(texts, size=2)


def test_vocabulary_file_roundtrip_and_rejection(tmp_path):
    vocab = Vocabulary.build([["x", "y", "x"]], 10)
    vocab.save(tmp_path / "vocab.json")
    assert Vocabulary.load(tmp_path / "vocab.json") == vocab
    (tmp_path / "bad.json").write_text(json.dumps({"format": "other", "tokens": []}))
    with pytest.raises(KdtoolError, match="not a kdtool vocabulary"):
        Vocabulary.load(tmp_path / "bad.json")


def test_text_folder_loads_with_sorted_classes_and_train_only_vocabulary(text_folder):
    (text_folder / "validation.tsv").write_text("fear\tsecretword here\n", encoding="utf-8")
    ds = load_dataset(f"text:{text_folder}", vocab_size=50, max_len=8)
    assert ds.info.kind == "text" and ds.info.class_names == ("anger", "fear", "joy")
    assert ds.train.inputs.shape == (120, 8) and len(ds.test) == 45 and len(ds.validation) == 1
    assert ds.info.vocab_size == len(ds.extras["vocabulary"]) <= 50
    assert "secretword" not in ds.extras["vocabulary"].index  # built from the training split only
    assert ds.validation.inputs[0, 0].item() == UNK_ID and ds.validation.labels.tolist() == [1]


def test_labels_txt_sets_the_class_order(text_folder):
    (text_folder / "labels.txt").write_text("joy\nfear\nanger\nsurprise\n")
    ds = load_dataset(f"text:{text_folder}")
    assert ds.info.class_names == ("joy", "fear", "anger", "surprise")
    assert ds.train.labels[:3].tolist() == [0, 2, 1]  # joy, anger, fear


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("train.tsv", "joy\tok\nno tab on this line\n", r"train.tsv:2: expected 'label<TAB>text'"),
        ("test.tsv", "joy\tfine\n\nsurprise\twhat\n", r"test.tsv:3: label 'surprise' is not one of the classes"),
        ("train.tsv", "joy\tok\n\tno label\n", r"train.tsv:2: the label before the tab is empty"),
        ("labels.txt", "joy\nanger\nfear\njoy\n", r"labels.txt:4: class 'joy' is already listed on line 1"),
    ],
)
def test_malformed_text_files_name_file_and_line(text_folder, file, content, message):
    (text_folder / file).write_text(content, encoding="utf-8")
    with pytest.raises(KdtoolError, match=message):
        load_dataset(f"text:{text_folder}")


def test_invalid_utf8_and_missing_files(text_folder):
    (text_folder / "test.tsv").write_bytes(b"joy\tfine\nanger\tbad \xff byte\n")
    with pytest.raises(KdtoolError, match=r"test.tsv:2: not valid UTF-8"):
        load_dataset(f"text:{text_folder}")
    (text_folder / "test.tsv").unlink()
    with pytest.raises(KdtoolError, match=r"needs train\.tsv and test\.tsv"):
        load_dataset(f"text:{text_folder}")


@pytest.mark.parametrize(("name", "sizes", "k"), [("goemotions", (36308, 4548, 4590), 28),
                                                  ("goemotions-ekman", (39555, 4946, 4968), 7)])  # fmt: skip
def test_embedded_goemotions(name, sizes, k):
    ds = load_dataset(name, max_len=16)
    assert (len(ds.train), len(ds.validation), len(ds.test)) == sizes
    assert ds.info.num_classes == k and ds.info.kind == "text" and ds.info.vocab_size == 20000
    assert torch.bincount(ds.train.labels, minlength=k).min() > 0
    if name == "goemotions-ekman":
        assert ds.info.class_names == ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
        assert torch.bincount(ds.train.labels).tolist() == [4293, 498, 541, 15216, 12823, 2326, 3858]


def test_class_names_are_known_without_encoding(text_folder):
    names = dataset_class_names("goemotions")
    assert len(names) == 28 and names[:3] == ["admiration", "amusement", "anger"] and names[-1] == "neutral"
    assert dataset_class_names(f"text:{text_folder}") == ["anger", "fear", "joy"]


def test_changed_goemotions_copy_is_rejected(tmp_path):
    root = tmp_path / "goemotions"
    shutil.copytree(EMBEDDED_ROOT / "goemotions", root)
    with gzip.open(root / "ekman" / "test.tsv.gz", "ab") as fh:
        fh.write(b"joy\tone more line\n")
    with pytest.raises(KdtoolError, match="SHA-256"):
        load_text_dataset("goemotions-ekman", 100, 8, root=root)


def test_batches_are_trimmed_to_their_longest_text():
    tokens = torch.tensor([[5, 6, 0, 0, 0], [7, 0, 0, 0, 0]])
    assert trim_to_longest(tokens).tolist() == [[5, 6], [7, 0]]
    loader = BatchLoader(load_dataset("goemotions-ekman", max_len=64).test, 256, trim_to_longest, torch.device("cpu"))
    widths = {x.shape[1] for x, _ in loader.epoch()}
    assert max(widths) <= 64 and len(widths) > 1


@pytest.mark.parametrize("model_class", [BiLSTMClassifier, TextCNN])
def test_padded_batch_gives_each_text_its_own_logits(model_class):
    torch.manual_seed(0)
    model = model_class(num_classes=4, vocab_size=30, embed_dim=8, hidden_size=6).eval()
    texts = [[3, 4, 5, 6, 7], [8, 9], [10, 11, 12, 13, 14, 15, 16], [17]]
    batch = torch.zeros(len(texts), 10, dtype=torch.long)
    for i, ids in enumerate(texts):
        batch[i, : len(ids)] = torch.tensor(ids)
    with torch.no_grad():
        together = model(batch)
        alone = torch.cat([model(torch.tensor([ids])) for ids in texts])
        trimmed = model(trim_to_longest(batch))
    assert together.shape == (4, 4)
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(trimmed, alone, rtol=1e-5, atol=1e-6)


def test_models_refuse_the_other_modality(text_folder):
    text = load_dataset(f"text:{text_folder}").info
    image = load_dataset("fashion-mnist").info
    assert {name: build_model(name, text, embed_dim=8, hidden_size=4)(torch.tensor([[2, 3]])).shape
            for name in TEXT_MODELS} == {"bilstm": (1, 3), "textcnn": (1, 3)}  # fmt: skip
    with pytest.raises(KdtoolError, match="reads text"):
        build_model("bilstm", image)
    with pytest.raises(KdtoolError, match="reads images"):
        build_model("lenet5", text)


def test_word_vectors_fill_known_words(tmp_path):
    vocab = Vocabulary.build([["good", "bad", "good", "meh"]], 10)  # <pad> <unk> good bad meh
    glove = tmp_path / "glove.txt"
    glove.write_text("Good 1 2 3\ngood 9 9 9\nbad -1 0.5 2e-1\nunused 0 0 0\n")
    torch.manual_seed(0)
    model = TextCNN(3, len(vocab), embed_dim=3, hidden_size=2)
    meh = model.embedding.weight[vocab.index["meh"]].clone()
    assert load_word_vectors(model, vocab, glove) == 2
    weights = model.embedding.weight
    assert weights[vocab.index["good"]].tolist() == [1, 2, 3]  # the first spelling wins
    assert weights[vocab.index["bad"]].tolist() == pytest.approx([-1, 0.5, 0.2])
    assert torch.equal(weights[vocab.index["meh"]], meh) and weights[PAD_ID].abs().sum() == 0
    with pytest.raises(KdtoolError, match="pass --embed-dim 3"):
        load_word_vectors(TextCNN(3, len(vocab), embed_dim=4), vocab, glove)


def test_word_vectors_on_the_command_line(run_cli, text_folder, tmp_path):
    glove = tmp_path / "glove.txt"
    glove.write_text("love 1 0\nhate 0 1\nscared -1 -1\n")
    args = ("train-teacher", "--dataset", f"text:{text_folder}", "--model", "textcnn", "--epochs", "1",
            "--hidden-size", "4", "--word-vectors", glove)  # fmt: skip
    code, stdout, stderr = run_cli(*args, "--embed-dim", "2", "--out", tmp_path / "run")
    assert code == 0, stderr
    assert "word vectors for 3 of 28 vocabulary entries" in stdout
    code, _, stderr = run_cli(*args, "--out", tmp_path / "bad")
    assert code == 2 and "pass --embed-dim 2" in stderr and not (tmp_path / "bad").exists()


TEXT_TINY = ("--model", "bilstm", "--embed-dim", "16", "--hidden-size", "8", "--epochs", "2", "--batch-size", "32",
             "--lr", "0.5")  # fmt: skip


def test_lls_on_text_end_to_end_and_reload(run_cli, text_folder, tmp_path):
    out = tmp_path / "lls"
    code, stdout, stderr = run_cli("train-teacher", "--dataset", f"text:{text_folder}", "--smoothing", "lls",
                                   *TEXT_TINY, "--out", out)  # fmt: skip
    assert code == 0, stderr
    assert "macro-F1" in stdout
    assert {"config.json", "metrics.csv", "model.safetensors", "q.safetensors", "vocab.json"} <= {
        p.name for p in out.iterdir()
    }
    config = json.loads((out / "config.json").read_text())
    assert "augment" not in config and config["dataset_info"]["kind"] == "text"  # no augmentation on text
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert 0.0 <= float(rows[-1]["test_macro_f1"]) <= 1.0
    q = QMatrix.load(out / "q.safetensors")
    assert q.class_names == ["anger", "fear", "joy"] and not torch.equal(q.logits, torch.zeros(3, 3))

    run = RunDir.open(out)
    model, cfg, info = load_run_model(run)
    assert isinstance(model, BiLSTMClassifier) and cfg.hidden_size == 8 and info["vocab_size"] > 10
    logits, labels, names = predict_run(run, device="cpu")
    assert logits.shape == (45, 3) and names == ["anger", "fear", "joy"]
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    assert accuracy == pytest.approx(float(rows[-1]["test_acc"]), abs=1e-6)


def test_distill_on_text_from_q_and_from_teacher(run_cli, text_folder, tmp_path):
    teacher = tmp_path / "teacher"
    base = ("--dataset", f"text:{text_folder}")
    assert run_cli("train-teacher", *base, "--smoothing", "lls", *TEXT_TINY, "--vocab-size", "12",
                   "--out", teacher)[0] == 0  # fmt: skip
    student = ("--student", "textcnn", "--hidden-size", "4", "--epochs", "1", "--batch-size", "32")
    code, _, stderr = run_cli("distill", "--substitute-q", teacher / "q.safetensors", *base, *student,
                                   "--out", tmp_path / "st")  # fmt: skip
    assert code == 0, stderr
    assert QMatrix.load(tmp_path / "st" / "q.safetensors").class_names == ["anger", "fear", "joy"]
    assert json.loads((tmp_path / "st" / "config.json").read_text())["hidden_size"] == 4
    code, _, stderr = run_cli("distill", "--substitute-q", teacher / "q.safetensors", *base, *student,
                              "--classes", "joy,anger", "--out", tmp_path / "st-sub")  # fmt: skip
    assert code == 0, stderr
    assert QMatrix.load(tmp_path / "st-sub" / "q.safetensors").class_names == ["joy", "anger"]
    code, _, stderr = run_cli("distill", "--teacher", teacher, *base, *student, "--out", tmp_path / "kd")
    assert code == 0, stderr
    # the student read the teacher's 12-entry vocabulary, not one of its own default size
    assert json.loads((tmp_path / "kd" / "vocab.json").read_text()) == json.loads((teacher / "vocab.json").read_text())
    assert json.loads((tmp_path / "kd" / "config.json").read_text())["dataset_info"]["vocab_size"] == 12


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--dataset", "goemotions-ekman", "--augment", "standard,cutout"), "--augment cutout works on images only"),
        (("--dataset", "goemotions-ekman", "--max-len", "0"), "--max-len must be at least 1"),
        (("--dataset", "fashion-mnist", "--word-vectors", "x.txt"), "--word-vectors initialises a text model"),
        (("--dataset", "goemotions-ekman", "--model", "lenet5"), "reads images"),
    ],
)
def test_text_option_errors(run_cli, tmp_path, args, message):
    code, _, stderr = run_cli("train-teacher", *args, "--out", tmp_path / "x")
    assert code == 2 and message in stderr and stderr.count("\n") == 1
    assert not (tmp_path / "x").exists()
