"""Sequence-to-sequence translation as a :class:`~actlab.tasks.base.Task`.

Data (:mod:`actlab.data.parallel`): inputs are source ids ``(N, S)`` (``pieces <eos> <pad>…``),
targets ``<bos> pieces <eos> <pad>…`` rows ``(N, T)``; ``num_classes`` is the (joint) vocabulary.
The model follows :class:`actlab.models.TransformerSeq2Seq`'s protocol
(``model(src, tgt_in, src_padding_mask=, tgt_padding_mask=)`` for teacher forcing, plus
``encode`` / ``decode`` for generation).

Unlike the other tasks, the model's output depends on the targets (teacher forcing), so the loop
must produce ``out`` with :meth:`Seq2SeqTask.forward` (``task.forward(net, x, y)``) instead of
``net(x)``; ``loss_parts(out, y)`` then scores it. Each batch is trimmed to its longest source
and target first (padding columns only: the result is unchanged, the cost is not).

Training loss: label-smoothed token cross-entropy over non-pad target tokens
(:mod:`.loss`), normalised by the number of such tokens in the global batch; training metric
``token_acc``. Evaluation: ``loss`` (token cross-entropy without smoothing), ``ppl`` =
``exp(loss)``, ``token_acc`` (teacher-forced arg-max accuracy) and ``bleu`` (sacreBLEU corpus BLEU
of greedy or beam-search translations against the detokenised targets, the primary metric);
:meth:`Seq2SeqTask.run_info` gives the sacreBLEU signature to store with the run.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from actlab.tasks.base import LossParts, Task, register_task
from actlab.tasks.seq2seq.bleu import bleu_signature, corpus_bleu
from actlab.tasks.seq2seq.decoding import DecodeConfig, beam_search, greedy_decode
from actlab.tasks.seq2seq.loss import token_hits, token_loss_parts

__all__ = ["Seq2SeqTask"]


def _used_width(ids: Tensor, pad_id: int, minimum: int = 1) -> int:
    """Columns up to the last one holding a non-pad token in any row."""
    cols = torch.nonzero((ids != pad_id).any(0))
    return max(minimum, int(cols.max()) + 1 if cols.numel() else minimum)


@register_task
class Seq2SeqTask(Task):
    """Translation with teacher forcing and BLEU (module doc). Options:

    ``tokenizer``: a ``tokenizers.Tokenizer`` or the path of its JSON file (the dataset's
    ``meta["tokenizer"]``) to detokenise for BLEU; ``None`` scores space-joined ids.
    ``label_smoothing`` 0.1, ``beam_size`` 4 (1 = greedy), ``length_penalty`` α 0.6,
    ``max_len_a`` 1 and ``max_len_b`` 50 (at most ``a·|src| + b`` generated tokens) — the
    settings of Vaswani et al. 2017; ``pad_id`` 0, ``bos_id`` 1, ``eos_id`` 2.

    Training batches (:mod:`actlab.data.bucketing`): ``bucket`` False (default: random batches
    of ``batch_size`` pairs, as every task) or True (pairs of similar length batched together,
    sorted inside shuffled pools of ``bucket_pool`` batches, default 100); ``batch_tokens``
    (default None) sets a budget of padded tokens per side and batch instead of a fixed
    ``batch_size`` (implies ``bucket``; Vaswani et al. 2017 used about 25,000).
    """

    name = "seq2seq"
    model_tasks = ("seq2seq",)
    eval_metrics = ("loss", "ppl", "token_acc", "bleu")
    train_metric_names = ("token_acc",)
    primary_metric = "bleu"
    higher_is_better = True

    def __init__(
        self,
        num_classes: int,
        *,
        tokenizer: Any = None,
        label_smoothing: float = 0.1,
        beam_size: int = 4,
        length_penalty: float = 0.6,
        max_len_a: float = 1.0,
        max_len_b: int = 50,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
        bucket: bool = False,
        batch_tokens: int | None = None,
        bucket_pool: int = 100,
        class_weight: Tensor | None = None,
    ) -> None:
        super().__init__(num_classes)
        from actlab.data.bucketing import check_bucket_options

        check_bucket_options(bucket, batch_tokens, bucket_pool)
        self.bucket = bool(bucket) or batch_tokens is not None
        self.batch_tokens, self.bucket_pool = batch_tokens, int(bucket_pool)
        if class_weight is not None:
            raise ValueError("class_weights are not supported for seq2seq")
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
            raise ValueError(f"beam_size must be an int >= 1, got {beam_size!r}")
        for key, v in (("pad_id", pad_id), ("bos_id", bos_id), ("eos_id", eos_id)):
            if not 0 <= v < num_classes:
                raise ValueError(f"{key}={v} is outside the vocabulary [0, {num_classes})")
        self.decoding = DecodeConfig(pad_id, bos_id, eos_id, float(max_len_a), int(max_len_b),
                                     float(length_penalty))
        self.label_smoothing = float(label_smoothing)
        self.beam_size = beam_size
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        if isinstance(tokenizer, (str, os.PathLike)):
            from actlab.data.bpe import load_tokenizer

            tokenizer = load_tokenizer(tokenizer)
        if tokenizer is not None and tokenizer.get_vocab_size() != num_classes:
            raise ValueError(f"the tokenizer has {tokenizer.get_vocab_size()} tokens but "
                             f"num_classes={num_classes}")
        self.tokenizer = tokenizer

    # ---- training --------------------------------------------------------------------------
    def check_targets(self, split: str, targets: Any) -> None:
        from actlab.data.ragged import RaggedTokens

        if isinstance(targets, RaggedTokens):  # a split of actlab.data.parallel
            values = targets.values.numpy()
            if len(targets) and int(targets.lengths.min()) < 2:
                raise ValueError(f"{split} targets of a seq2seq task must be rows of >= 2 ids "
                                 "(<bos> ... <eos>)")
            if values.size and (int(values.min()) < 0 or int(values.max()) >= self.num_classes):
                raise ValueError(f"{split} targets hold ids outside [0, {self.num_classes})")
            if len(targets) and bool((values[targets.offsets[:-1].numpy()] != self.bos_id).any()):
                raise ValueError(f"{split} targets must start with <bos> (id {self.bos_id})")
            return
        if targets.dtype.is_floating_point or targets.dtype == torch.bool:
            raise TypeError(f"{split} targets must be integer token ids, got {targets.dtype}")
        if targets.dim() != 2 or targets.shape[1] < 2:
            raise ValueError(f"{split} targets of a seq2seq task must be (N, T) token ids with "
                             f"T >= 2, got {tuple(targets.shape)}")
        if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= self.num_classes):
            raise ValueError(f"{split} targets hold ids outside [0, {self.num_classes})")
        if targets.numel() and bool((targets[:, 0] != self.bos_id).any()):
            raise ValueError(f"{split} targets must start with <bos> (id {self.bos_id})")

    def forward(self, model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
        """Teacher-forced logits ``(N, t, V)`` for the gold tokens ``targets[:, 1:t+1]``:
        ``model(src, targets[:, :t], masks)`` on the batch trimmed of all-pad columns."""
        src = inputs[:, :_used_width(inputs, self.pad_id)]
        tgt_in = targets[:, :_used_width(targets, self.pad_id, 2) - 1]
        return model(src, tgt_in, src_padding_mask=src == self.pad_id,
                     tgt_padding_mask=tgt_in == self.pad_id)

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """Bucketing options (``bucket``, ``batch_tokens``, ``bucket_pool``) and ``beam_size``."""
        from actlab.data.bucketing import check_bucket_options

        check_bucket_options(options.get("bucket", False), options.get("batch_tokens"),
                             options.get("bucket_pool", 100))
        beam = options.get("beam_size", 1)
        if isinstance(beam, bool) or not isinstance(beam, int) or beam < 1:
            raise ValueError(f"beam_size must be an int >= 1, got {beam!r}")

    def batch_plan(self, train: Any, batch_size: int, drop_last: bool) -> Any | None:
        """Length-bucketed batches when ``bucket`` / ``batch_tokens`` is set (class doc)."""
        if not self.bucket:
            return None
        from actlab.data.bucketing import BucketBatches
        from actlab.data.ragged import RaggedPairs

        if isinstance(train, RaggedPairs):
            lengths = train.lengths()
        elif hasattr(train, "tensors"):  # padded (inputs, targets) tensors
            lengths = torch.stack([(t != self.pad_id).sum(1) for t in train.tensors[:2]], 1)
        else:
            raise TypeError(f"bucketing needs a seq2seq split (RaggedPairs or a TensorDataset), "
                            f"got {type(train).__name__}")
        return BucketBatches(lengths, batch_size=batch_size, batch_tokens=self.batch_tokens,
                             pool=self.bucket_pool, drop_last=drop_last)

    def loss_normaliser(self, targets: Tensor) -> Tensor:
        return (targets[:, 1:] != self.pad_id).sum().to(torch.float32)

    def loss_parts(self, out: Tensor, targets: Tensor) -> LossParts:
        total, norm = token_loss_parts(out, targets, self.pad_id, self.label_smoothing)
        with torch.no_grad():
            hits, n = token_hits(out, targets, self.pad_id)
            stats = torch.stack([hits.double(), n.double()])
        return LossParts(total, norm, stats)

    def train_metrics(self, stats: list[float]) -> dict[str, float]:
        hits, n = stats
        return {"token_acc": hits / n if n > 0 else math.nan}

    # ---- generation and evaluation ---------------------------------------------------------
    def generate(self, model: nn.Module, src: Tensor) -> list[list[int]]:
        """Token ids (without ``<eos>``) of the translations of ``src`` by the task's decoder;
        call in eval mode."""
        src = src[:, :_used_width(src, self.pad_id)]
        if self.beam_size == 1:
            return greedy_decode(model, src, self.decoding)
        return beam_search(model, src, self.beam_size, self.decoding)

    def detokenize(self, rows: list[list[int]]) -> list[str]:
        """Text of id rows (special tokens dropped), see :func:`actlab.data.bpe.decode_ids`."""
        from actlab.data.bpe import decode_ids

        return decode_ids(self.tokenizer, rows)

    def references(self, targets: Tensor) -> list[list[int]]:
        """The gold ids of target rows without ``<bos>``, ``<eos>`` and padding."""
        out = []
        for row in targets.tolist():
            row = row[1:]
            out.append(row[: row.index(self.eos_id)] if self.eos_id in row else
                       [t for t in row if t != self.pad_id])
        return out

    @torch.no_grad()
    def translate(self, model: nn.Module, inputs: Any, *, batch_size: int = 256,
                  device: torch.device | str = "cpu") -> list[str]:
        """Detokenised translations of source rows (model put in eval mode for the call)."""
        was = model.training
        model.eval()
        try:
            ids = [s for i in range(0, len(inputs), batch_size)
                   for s in self.generate(model, inputs[i:i + batch_size].to(device))]
        finally:
            model.train(was)
        return self.detokenize(ids)

    @torch.no_grad()
    def evaluate(
        self,
        model: nn.Module,
        inputs: Any,
        targets: Any,
        *,
        batch_size: int = 512,
        device: torch.device | str = "cpu",
        autocast: Callable[[], Any] | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> dict[str, float]:
        from actlab.train.distributed import all_reduce_sum, shard_bounds

        if len(inputs) == 0:
            return {k: math.nan for k in self.eval_metrics}
        device = torch.device(device)
        was = model.training
        model.eval()
        ctx = autocast if autocast is not None else contextlib.nullcontext
        start, stop = shard_bounds(len(inputs), rank, world_size)
        sums = torch.zeros(3, dtype=torch.float64, device=device)  # nll, tokens, hits
        hyps: list[list[int]] = []
        try:
            for i in range(start, stop, batch_size):
                j = min(i + batch_size, stop)
                x = inputs[i:j].to(device, non_blocking=True)
                y = targets[i:j].to(device, non_blocking=True)
                with ctx():
                    out = self.forward(model, x, y)
                    hyps += self.generate(model, x)
                nll, n = token_loss_parts(out.float(), y, self.pad_id, 0.0)
                hits, _ = token_hits(out, y, self.pad_id)
                sums += torch.stack([nll.double(), n.double(), hits.double()])
        finally:
            model.train(was)
        all_reduce_sum(sums)
        if world_size > 1 and torch.distributed.is_available() \
                and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * world_size
            torch.distributed.all_gather_object(gathered, hyps)
            hyps = [h for part in gathered for h in part]
        nll, n, hits = sums.tolist()
        loss = nll / n if n > 0 else math.nan
        refs = [r for i in range(0, len(targets), batch_size)  # slices: ragged splits pad each
                for r in self.references(targets[i:i + batch_size])]
        bleu, _ = corpus_bleu(self.detokenize(hyps), self.detokenize(refs))
        return {"loss": loss, "ppl": math.exp(min(loss, 700.0)),
                "token_acc": hits / n if n > 0 else math.nan, "bleu": bleu}

    def run_info(self) -> dict[str, Any]:
        """Facts to store with a run: the sacreBLEU signature and the decoding settings."""
        info = {"bleu_signature": bleu_signature(), "beam_size": self.beam_size,
                "length_penalty": self.decoding.length_penalty,
                "max_len_a": self.decoding.max_len_a, "max_len_b": self.decoding.max_len_b,
                "label_smoothing": self.label_smoothing}
        if self.bucket:  # only when on, so that the records of unbucketed runs are unchanged
            info.update(bucket=True, batch_tokens=self.batch_tokens,
                        bucket_pool=self.bucket_pool)
        return info
