"""Text classifiers over right-padded token-id batches (id 0 is padding; see :mod:`kdtool.data.text`).

Both models read only the non-padding tokens of each text, so a text's logits do not depend on how
much padding its batch carries: the loader may trim batches to their longest text freely.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from kdtool.data.text import PAD_ID, Vocabulary, sequence_lengths
from kdtool.data.wordvectors import read_word_vectors
from kdtool.errors import KdtoolError


class BiLSTMClassifier(nn.Module):
    """Embedding → bidirectional LSTM over packed sequences → max-pooling over time → linear."""

    def __init__(
        self, num_classes: int, vocab_size: int, embed_dim: int = 128, hidden_size: int = 128, dropout: float = 0.5
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(embed_dim, hidden_size, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * hidden_size, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        lengths = sequence_lengths(tokens).clamp(min=1).cpu()  # pack_padded_sequence wants CPU lengths
        embedded = self.dropout(self.embedding(tokens))
        packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        states, _ = self.lstm(packed)
        # -inf at padded steps, so the max over time only sees each text's own steps
        states, _ = pad_packed_sequence(states, batch_first=True, padding_value=float("-inf"))
        return self.classifier(self.dropout(states.max(1).values))


class TextCNN(nn.Module):
    """Kim's CNN: embedding → 1-D convolutions of widths 3, 4, 5 (``hidden_size`` filters each) → ReLU →
    max-pooling over time → linear. A light student: no recurrence, one pass over the text."""

    widths = (3, 4, 5)

    def __init__(
        self, num_classes: int, vocab_size: int, embed_dim: int = 128, hidden_size: int = 128, dropout: float = 0.5
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        # Kim's U(-0.25, 0.25) start: with N(0, 1) embeddings the unbounded ReLU features are large
        # enough for SGD's first steps to overshoot (the LSTM's tanh keeps its features bounded).
        nn.init.uniform_(self.embedding.weight, -0.25, 0.25)
        with torch.no_grad():
            self.embedding.weight[PAD_ID] = 0.0
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, hidden_size, width) for width in self.widths)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size * len(self.widths), num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        lengths = sequence_lengths(tokens).clamp(min=1)
        if tokens.shape[1] < max(self.widths):  # every convolution needs at least one window
            tokens = F.pad(tokens, (0, max(self.widths) - tokens.shape[1]), value=PAD_ID)
        embedded = self.dropout(self.embedding(tokens)).transpose(1, 2)  # B×E×L
        pooled = []
        for conv in self.convs:
            features = F.relu(conv(embedded))  # B×H×(L-width+1)
            # Keep windows that start inside the text and end in it (or the first window of a text
            # shorter than the width, whose tail is the all-zero padding embedding). ReLU outputs are
            # ≥ 0, so zeroing the other windows never changes a maximum.
            last_start = (lengths - conv.kernel_size[0]).clamp(min=0)
            starts = torch.arange(features.shape[2], device=tokens.device)
            features = features.masked_fill(starts[None, None, :] > last_start[:, None, None], 0.0)
            pooled.append(features.max(2).values)
        return self.classifier(self.dropout(torch.cat(pooled, 1)))


# name -> factory(num_classes, vocab_size, embed_dim=..., hidden_size=...)
TEXT_MODELS: dict[str, Callable[..., nn.Module]] = {
    "bilstm": BiLSTMClassifier,
    "textcnn": TextCNN,
}


def load_word_vectors(model: nn.Module, vocabulary: Vocabulary, path: str | os.PathLike) -> int:
    """Initialise a text model's embedding from a GloVe-format file; returns how many words were found.

    Words missing from the file keep their random initialisation; the padding row stays zero.
    """
    embedding = getattr(model, "embedding", None)
    if not isinstance(embedding, nn.Embedding):
        raise KdtoolError(f"--word-vectors needs a text model with an embedding, not {type(model).__name__}")
    table = read_word_vectors(path, vocabulary.tokens[2:])  # every token but <pad> and <unk>
    if not table:
        raise KdtoolError(f"{path} has a vector for no word of the vocabulary")
    dim = next(iter(table.values())).numel()
    if dim != embedding.embedding_dim:
        raise KdtoolError(f"{path} holds {dim}-d vectors but the embedding is {embedding.embedding_dim}-d: "
                          f"pass --embed-dim {dim}")  # fmt: skip
    rows = torch.tensor([vocabulary.index[word] for word in table])
    with torch.no_grad():
        embedding.weight[rows] = torch.stack(list(table.values()))
    return len(table)
