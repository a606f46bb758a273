"""Small Transformers written from scratch: an encoder–decoder (Vaswani et al. 2017, "Attention
Is All You Need") and a decoder-only language model (Radford et al. 2018/2019, GPT).

The activation under study sits in every position-wise feed-forward block,
``FFN(x) = W2 act(W1 x + b1) + b2`` (one fresh ``act`` per layer). Normalisation stays
LayerNorm (``norm="ln"``, pre-norm by default, post-norm with ``norm_first=False``);
``norm="none"`` removes it. Attention uses ``F.scaled_dot_product_attention``. Token embeddings are
scaled by ``sqrt(d_model)`` and summed with sinusoidal position encodings (a non-persistent
buffer, so the state dict holds only trainable tensors and running statistics).
Outputs are logits of shape ``(B, T, vocab)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from actlab.models._common import ActFactory, check_int, check_prob, make_act
from actlab.models.init import init_weights
from actlab.registry import ActSpec, NormSpec

__all__ = [
    "sinusoidal_positions",
    "MultiHeadAttention",
    "FeedForward",
    "EncoderLayer",
    "DecoderLayer",
    "TransformerSeq2Seq",
    "TransformerLM",
    "transformer_seq2seq",
    "transformer_base",
    "transformer_lm",
]

_LN_NAMES = {"ln", "layernorm", "layer_norm"}
_NONE_NAMES = {"none", "identity"}


def _token_norm(norm: NormSpec) -> Callable[[int], nn.Module]:
    """LayerNorm / identity factory for token features (B, T, d)."""
    if norm is None:
        return lambda d: nn.Identity()
    if isinstance(norm, str):
        key = norm.strip().lower().replace("-", "_")
        if key in _LN_NAMES:
            return lambda d: nn.LayerNorm(d)
        if key in _NONE_NAMES:
            return lambda d: nn.Identity()
        raise ValueError(
            f"transformer norm must be 'ln' or 'none' (norm acts on the feature dimension of "
            f"(B, T, d) tokens), got {norm!r}"
        )
    if isinstance(norm, nn.Module):
        raise TypeError("pass a norm name, class or factory, not a module instance")
    if isinstance(norm, type):
        return lambda d: norm(d)
    if callable(norm):
        return lambda d: norm(d, dim=0)
    raise TypeError(f"norm must be 'ln', 'none', None or a callable, got {type(norm).__name__}")


def sinusoidal_positions(length: int, d_model: int) -> torch.Tensor:
    """``PE[p, 2i] = sin(p / 10000^(2i/d))``, ``PE[p, 2i+1] = cos(p / 10000^(2i/d))``."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(1e4) / d_model))
    pe = torch.zeros(length, d_model)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : d_model // 2]
    return pe


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention ``softmax(Q K^T / sqrt(d_h)) V`` per head."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % nhead:
            raise ValueError(f"d_model ({d_model}) must be divisible by nhead ({nhead})")
        self.nhead = nhead
        self.d_model = d_model
        self.dropout = dropout
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d) -> (B, heads, T, d / heads)."""
        return x.unflatten(-1, (self.nhead, -1)).transpose(1, 2)

    def forward(
        self,
        query: torch.Tensor,
        memory: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        causal: bool = False,
    ) -> torch.Tensor:
        """``key_padding_mask``: (B, S) bool, True marks padding keys to ignore."""
        q = self._heads(self.q(query))
        kv = self.kv(memory)
        k = self._heads(kv.narrow(-1, 0, self.d_model))
        v = self._heads(kv.narrow(-1, self.d_model, self.d_model))
        mask = None
        if key_padding_mask is not None:
            mask = ~key_padding_mask[:, None, None, :]
            if causal:
                ones = q.new_ones((q.shape[-2], k.shape[-2]), dtype=torch.bool)
                mask = mask & ones.tril()
                causal = False
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal,
        )
        return self.out(y.transpose(1, 2).flatten(2))


class FeedForward(nn.Module):
    """Position-wise feed-forward block ``W2 drop(act(W1 x + b1)) + b2``."""

    def __init__(self, d_model: int, dim_ff: int, act: ActFactory, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(d_model, dim_ff)
        self.act = act()
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(dim_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.act(self.fc1(x))))


class EncoderLayer(nn.Module):
    """Self-attention + feed-forward sub-layers with residuals (pre- or post-norm)."""

    def __init__(
        self, d_model: int, nhead: int, dim_ff: int, act: ActFactory,
        norm: Callable[[int], nn.Module], dropout: float, norm_first: bool,
    ) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(d_model, nhead, dropout)
        self.ff = FeedForward(d_model, dim_ff, act, dropout)
        self.norm1, self.norm2 = norm(d_model), norm(d_model)
        self.drop = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(
        self, x: torch.Tensor, padding_mask: torch.Tensor | None = None, causal: bool = False
    ) -> torch.Tensor:
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.drop(self.attn(h, h, padding_mask, causal))
            return x + self.drop(self.ff(self.norm2(x)))
        x = self.norm1(x + self.drop(self.attn(x, x, padding_mask, causal)))
        return self.norm2(x + self.drop(self.ff(x)))


class DecoderLayer(nn.Module):
    """Causal self-attention, cross-attention to the encoder memory, feed-forward."""

    def __init__(
        self, d_model: int, nhead: int, dim_ff: int, act: ActFactory,
        norm: Callable[[int], nn.Module], dropout: float, norm_first: bool,
    ) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, nhead, dropout)
        self.cross_attn = MultiHeadAttention(d_model, nhead, dropout)
        self.ff = FeedForward(d_model, dim_ff, act, dropout)
        self.norm1, self.norm2, self.norm3 = norm(d_model), norm(d_model), norm(d_model)
        self.drop = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        tgt_padding_mask: torch.Tensor | None = None,
        memory_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.drop(self.self_attn(h, h, tgt_padding_mask, causal=True))
            x = x + self.drop(self.cross_attn(self.norm2(x), memory, memory_padding_mask))
            return x + self.drop(self.ff(self.norm3(x)))
        x = self.norm1(x + self.drop(self.self_attn(x, x, tgt_padding_mask, causal=True)))
        x = self.norm2(x + self.drop(self.cross_attn(x, memory, memory_padding_mask)))
        return self.norm3(x + self.drop(self.ff(x)))


def _check_tokens(tokens: torch.Tensor, max_len: int) -> torch.Tensor:
    if tokens.dim() != 2:
        raise ValueError(f"expected token ids of shape (B, T), got {tuple(tokens.shape)}")
    if tokens.shape[1] > max_len:
        raise ValueError(f"sequence length {tokens.shape[1]} exceeds max_len {max_len}")
    return tokens


torch.fx.wrap("_check_tokens")  # an opaque call under torch.fx tracing


class _Embedding(nn.Module):
    """``sqrt(d) * E[token] + PE[position]`` followed by dropout."""

    def __init__(self, vocab: int, d_model: int, max_len: int, dropout: float) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d_model)
        nn.init.normal_(self.tok.weight, std=d_model**-0.5)
        self.register_buffer("pe", sinusoidal_positions(max_len, d_model), persistent=False)
        self.scale = math.sqrt(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = _check_tokens(tokens, self.pe.shape[0])
        pe = torch.narrow(self.pe, 0, 0, tokens.shape[1])
        return self.drop(self.tok(tokens) * self.scale + pe)


def _vocab(name: str, value: int | None, alias: int | None, default: int) -> int:
    if value is not None and alias is not None and value != alias:
        raise ValueError(f"{name}={value} and num_classes={alias} disagree")
    return check_int(name, value if value is not None else alias if alias is not None else default)


class TransformerSeq2Seq(nn.Module):
    """Encoder–decoder Transformer (Vaswani et al. 2017) at small scale; the SAU/ASH
    sequence-to-sequence experiments swap the feed-forward activation.

    ``forward(src, tgt)`` takes token ids (B, S) and (B, T) (teacher forcing; ``tgt`` already
    shifted right) and returns logits (B, T, tgt_vocab). Padding is masked out as attention keys:
    ``src_padding_mask`` (B, S) hides padded source tokens from the encoder's self-attention and
    the decoder's cross-attention, ``tgt_padding_mask`` (B, T) hides padded target tokens from the
    decoder's causal self-attention (True marks padding; pad at the end of sequences). With
    ``pad_idx`` set, masks not passed are derived as ``tokens == pad_idx``. So a padded source
    token never changes any output, and a padded target position never changes an earlier one.

    ``share_embeddings=True`` ties the source and target embeddings and the output projection
    to one matrix (Vaswani et al. 2017, §3.4; needs ``src_vocab == tgt_vocab``).
    """

    def __init__(
        self,
        src_vocab: int = 256,
        tgt_vocab: int = 256,
        d_model: int = 128,
        nhead: int = 4,
        num_encoder_layers: int = 2,
        num_decoder_layers: int = 2,
        dim_feedforward: int = 512,
        dropout: float = 0.1,
        max_len: int = 512,
        act: ActSpec = "relu",
        norm: NormSpec = "ln",
        norm_first: bool = True,
        pad_idx: int | None = None,
        init: str | None = None,
        share_embeddings: bool = False,
    ) -> None:
        super().__init__()
        if share_embeddings and src_vocab != tgt_vocab:
            raise ValueError(
                f"share_embeddings needs src_vocab == tgt_vocab, got {src_vocab} and {tgt_vocab}"
            )
        for name, v in [("src_vocab", src_vocab), ("tgt_vocab", tgt_vocab),
                        ("d_model", d_model), ("nhead", nhead), ("dim_feedforward",
                        dim_feedforward), ("max_len", max_len)]:
            check_int(name, v)
        check_int("num_encoder_layers", num_encoder_layers, 0)
        check_int("num_decoder_layers", num_decoder_layers, 1)
        check_prob("dropout", dropout)
        act_f, norm_f = make_act(act), _token_norm(norm)
        self.src_embed = _Embedding(src_vocab, d_model, max_len, dropout)
        self.tgt_embed = _Embedding(tgt_vocab, d_model, max_len, dropout)
        self.encoder = nn.ModuleList(
            EncoderLayer(d_model, nhead, dim_feedforward, act_f, norm_f, dropout, norm_first)
            for _ in range(num_encoder_layers)
        )
        self.decoder = nn.ModuleList(
            DecoderLayer(d_model, nhead, dim_feedforward, act_f, norm_f, dropout, norm_first)
            for _ in range(num_decoder_layers)
        )
        self.enc_norm = norm_f(d_model) if norm_first else nn.Identity()
        self.dec_norm = norm_f(d_model) if norm_first else nn.Identity()
        self.head = nn.Linear(d_model, tgt_vocab, bias=not share_embeddings)
        self.pad_idx = pad_idx
        init_weights(self, init)
        if share_embeddings:
            self.src_embed.tok.weight = self.tgt_embed.tok.weight
            self.head.weight = self.tgt_embed.tok.weight

    def encode(self, src: torch.Tensor, src_padding_mask: torch.Tensor | None = None):
        x = self.src_embed(src)
        for layer in self.encoder:
            x = layer(x, src_padding_mask)
        return self.enc_norm(x)

    def decode(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        tgt_padding_mask: torch.Tensor | None = None,
        memory_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        y = self.tgt_embed(tgt)
        for layer in self.decoder:
            y = layer(y, memory, tgt_padding_mask, memory_padding_mask)
        return self.head(self.dec_norm(y))

    def forward(
        self,
        src: torch.Tensor,
        tgt: torch.Tensor,
        src_padding_mask: torch.Tensor | None = None,
        tgt_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.pad_idx is not None:
            if src_padding_mask is None:
                src_padding_mask = src == self.pad_idx
            if tgt_padding_mask is None:
                tgt_padding_mask = tgt == self.pad_idx
        memory = self.encode(src, src_padding_mask)
        return self.decode(tgt, memory, tgt_padding_mask, src_padding_mask)


class TransformerLM(nn.Module):
    """Decoder-only (causal) Transformer language model, GPT-style, at small scale.

    ``forward(tokens)`` maps ids (B, T) to next-token logits (B, T, vocab).
    """

    def __init__(
        self,
        vocab_size: int = 256,
        d_model: int = 128,
        nhead: int = 4,
        num_layers: int = 2,
        dim_feedforward: int = 512,
        dropout: float = 0.1,
        max_len: int = 512,
        act: ActSpec = "gelu",
        norm: NormSpec = "ln",
        norm_first: bool = True,
        tie_weights: bool = False,
        init: str | None = None,
    ) -> None:
        super().__init__()
        for name, v in [("vocab_size", vocab_size), ("d_model", d_model), ("nhead", nhead),
                        ("num_layers", num_layers), ("dim_feedforward", dim_feedforward),
                        ("max_len", max_len)]:
            check_int(name, v)
        check_prob("dropout", dropout)
        act_f, norm_f = make_act(act), _token_norm(norm)
        self.embed = _Embedding(vocab_size, d_model, max_len, dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, nhead, dim_feedforward, act_f, norm_f, dropout, norm_first)
            for _ in range(num_layers)
        )
        self.norm = norm_f(d_model) if norm_first else nn.Identity()
        self.head = nn.Linear(d_model, vocab_size, bias=not tie_weights)
        init_weights(self, init)
        if tie_weights:
            self.head.weight = self.embed.tok.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x, causal=True)
        return self.head(self.norm(x))


def transformer_seq2seq(
    src_vocab: int | None = None,
    tgt_vocab: int | None = None,
    d_model: int = 128,
    nhead: int = 4,
    num_encoder_layers: int = 2,
    num_decoder_layers: int = 2,
    dim_feedforward: int = 512,
    dropout: float = 0.1,
    max_len: int = 512,
    act: ActSpec = "relu",
    norm: NormSpec = "ln",
    norm_first: bool = True,
    pad_idx: int | None = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
    init: str | None = None,
    share_embeddings: bool = False,
) -> TransformerSeq2Seq:
    """Small encoder–decoder Transformer. ``num_classes`` is an alias of ``tgt_vocab``;
    ``in_channels`` is accepted for a uniform zoo signature and ignored (tokens have no
    channels). ``src_vocab`` defaults to ``tgt_vocab`` (256 when neither is given)."""
    tgt = _vocab("tgt_vocab", tgt_vocab, num_classes, 256)
    src = check_int("src_vocab", src_vocab if src_vocab is not None else tgt)
    return TransformerSeq2Seq(
        src, tgt, d_model, nhead, num_encoder_layers, num_decoder_layers, dim_feedforward,
        dropout, max_len, act, norm, norm_first, pad_idx, init, share_embeddings,
    )


def transformer_base(
    src_vocab: int | None = None,
    tgt_vocab: int | None = None,
    d_model: int = 512,
    nhead: int = 8,
    num_encoder_layers: int = 6,
    num_decoder_layers: int = 6,
    dim_feedforward: int = 2048,
    dropout: float = 0.1,
    max_len: int = 1024,
    act: ActSpec = "relu",
    norm: NormSpec = "ln",
    norm_first: bool = False,
    pad_idx: int | None = 0,
    num_classes: int | None = None,
    in_channels: int | None = None,
    init: str | None = None,
    share_embeddings: bool = True,
) -> TransformerSeq2Seq:
    """The "base" Transformer of Vaswani et al. 2017 (Table 3): 6 + 6 layers, d_model 512,
    8 heads, feed-forward 2048, dropout 0.1, post-norm residual blocks, one embedding matrix
    shared by source, target and output projection (a joint vocabulary: ``src_vocab`` defaults
    to ``tgt_vocab`` = ``num_classes``). About 63M parameters at a 37,000-token vocabulary."""
    return transformer_seq2seq(
        src_vocab, tgt_vocab, d_model, nhead, num_encoder_layers, num_decoder_layers,
        dim_feedforward, dropout, max_len, act, norm, norm_first, pad_idx, num_classes,
        in_channels, init, share_embeddings,
    )


def transformer_lm(
    vocab_size: int | None = None,
    d_model: int = 128,
    nhead: int = 4,
    num_layers: int = 2,
    dim_feedforward: int = 512,
    dropout: float = 0.1,
    max_len: int = 512,
    act: ActSpec = "gelu",
    norm: NormSpec = "ln",
    norm_first: bool = True,
    tie_weights: bool = False,
    num_classes: int | None = None,
    in_channels: int | None = None,
    init: str | None = None,
) -> TransformerLM:
    """Small decoder-only Transformer LM. ``num_classes`` is an alias of ``vocab_size``
    (default 256); ``in_channels`` is accepted for a uniform zoo signature and ignored."""
    vocab = _vocab("vocab_size", vocab_size, num_classes, 256)
    return TransformerLM(
        vocab, d_model, nhead, num_layers, dim_feedforward, dropout, max_len, act, norm,
        norm_first, tie_weights, init,
    )
