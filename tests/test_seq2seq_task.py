"""Seq2seq task: label-smoothed loss against a naive formula, padding masks of the model, BLEU
through sacreBLEU and through the whole ids -> text -> BLEU path, target checks."""

from __future__ import annotations

import math

import pytest
import sacrebleu
import torch
from torch import nn

from actlab.data.bpe import BOS_ID, EOS_ID, PAD_ID, encode_lines, train_bpe
from actlab.models import create_model, model_task
from actlab.tasks import build_task, check_combination, list_tasks
from actlab.tasks.seq2seq import Seq2SeqTask, bleu_signature, corpus_bleu

SENTS = [
    "the cat sat on the mat .", "a dog ran in the park .", "the bird sang a song .",
    "my cat likes the warm sun .", "the park is green in spring .", "a song for the dog .",
    "the sun is warm .", "birds sing in the park .",
]


def _targets(rows: list[list[int]], width: int) -> torch.Tensor:
    y = torch.full((len(rows), width), PAD_ID)
    for i, r in enumerate(rows):
        y[i, : len(r) + 2] = torch.tensor([BOS_ID, *r, EOS_ID])
    return y


def test_task_registered_and_combination():
    assert "seq2seq" in list_tasks()
    assert model_task("transformer_seq2seq") == model_task("transformer_base") == "seq2seq"
    check_combination("seq2seq", "seq2seq", "seq2seq")
    with pytest.raises(ValueError, match="seq2seq"):
        check_combination("seq2seq", "classification", "seq2seq")
    with pytest.raises(ValueError, match="cannot train on a classification dataset"):
        check_combination("seq2seq", "seq2seq", "classification")


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothed_loss_matches_naive_formula(eps):
    g = torch.Generator().manual_seed(0)
    vocab, rows = 7, [[3, 4, 5], [6], [], [3, 3, 3, 4, 5]]
    y = _targets(rows, 8)
    logits = torch.randn(len(rows), 7, vocab, generator=g, dtype=torch.float64)
    task = Seq2SeqTask(vocab, label_smoothing=eps)
    parts = task.loss_parts(logits, y)
    total, count = 0.0, 0
    for i in range(len(rows)):
        for j in range(7):
            gold = int(y[i, j + 1])
            if gold == PAD_ID:
                continue
            logq = [z - math.log(sum(math.exp(v) for v in logits[i, j].tolist()))
                    for z in logits[i, j].tolist()]
            total += -(1 - eps) * logq[gold] - eps * sum(logq) / vocab
            count += 1
    assert count == sum(len(r) + 1 for r in rows)
    assert float(parts.normaliser) == count == float(task.loss_normaliser(y))
    assert float(parts.total) / count == pytest.approx(total / count, rel=1e-6)
    hits = sum(int(logits[i, j].argmax()) == int(y[i, j + 1])
               for i in range(len(rows)) for j in range(7) if int(y[i, j + 1]) != PAD_ID)
    assert parts.stats.tolist() == [hits, count]
    assert task.train_metrics(parts.stats.tolist()) == {"token_acc": hits / count}


def _tiny(vocab=12, pad_idx=None):
    torch.manual_seed(0)
    return create_model("transformer_seq2seq", num_classes=vocab, d_model=16, nhead=8,
                        num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=32,
                        dropout=0.0, pad_idx=pad_idx).eval()


def test_padded_source_tokens_do_not_change_outputs():
    model = _tiny()
    src = torch.tensor([[5, 6, 7, 2, 0, 0], [8, 2, 0, 0, 0, 0]])
    tgt = torch.tensor([[1, 4, 5, 6], [1, 9, 0, 0]])
    smask, tmask = src == PAD_ID, tgt == PAD_ID
    ref = model(src, tgt, src_padding_mask=smask, tgt_padding_mask=tmask)
    noisy = src.masked_fill(smask, 11)  # other ids under the padding mask
    out = model(noisy, tgt, src_padding_mask=smask, tgt_padding_mask=tmask)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    # without the mask the same change shows up (the check above can fail)
    assert not torch.allclose(model(noisy, tgt), model(src, tgt), atol=1e-4)
    # the padded target positions do not change the real ones
    out = model(src, tgt.masked_fill(tmask, 7), src_padding_mask=smask, tgt_padding_mask=tmask)
    torch.testing.assert_close(out[~tmask], ref[~tmask], rtol=0, atol=1e-6)
    # with pad_idx the masks are derived, so extra pad columns change nothing
    model_p = _tiny(pad_idx=PAD_ID)
    a = model_p(src, tgt)
    b = model_p(torch.cat([src, torch.zeros(2, 3, dtype=torch.long)], 1), tgt)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # a batch element equals the same sentence alone, unpadded
    alone = model(src[1:, :2], tgt[1:, :2])
    torch.testing.assert_close(ref[1, :2], alone[0], rtol=0, atol=1e-5)


def test_task_forward_trims_padding_columns():
    model = _tiny()
    task = Seq2SeqTask(12)
    src = torch.tensor([[5, 6, 2, 0, 0, 0], [8, 2, 0, 0, 0, 0]])
    y = torch.tensor([[1, 4, 5, 2, 0, 0, 0], [1, 9, 2, 0, 0, 0, 0]])
    out = task.forward(model, src, y)
    assert out.shape == (2, 3, 12)  # gold tokens y[:, 1:4]
    full = model(src, y[:, :-1], src_padding_mask=src == 0, tgt_padding_mask=y[:, :-1] == 0)
    torch.testing.assert_close(out, full[:, :3], rtol=0, atol=1e-6)
    a = task.loss_parts(out, y)
    b = task.loss_parts(full, y)
    torch.testing.assert_close(a.total, b.total)


def test_bleu_delegates_to_sacrebleu():
    hyps = ["the cat sat on the mat", "a dog ran", "completely wrong here", ""]
    refs = ["the cat sat on a mat", "a dog ran in the park", "nothing matches", "empty hyp"]
    score, sig = corpus_bleu(hyps, refs)
    assert score == sacrebleu.corpus_bleu(hyps, [refs]).score
    assert sig == bleu_signature() and "tok:13a" in sig and sacrebleu.__version__ in sig
    assert corpus_bleu(refs, refs)[0] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        corpus_bleu(hyps[:2], refs[:1])


class _Oracle(nn.Module):
    """Copies the source: position j of the decoder predicts source token j (pieces, then
    <eos>); ``drop_last`` skips the last piece of every sentence."""

    def __init__(self, vocab: int, drop_last: bool = False) -> None:
        super().__init__()
        self.vocab, self.drop_last = vocab, drop_last
        self.dummy = nn.Parameter(torch.zeros(()))

    def encode(self, src, src_padding_mask=None):
        if self.drop_last:
            n = (src != PAD_ID).sum(1)
            src = src.clone()
            for i, k in enumerate(n.tolist()):
                if k >= 3:
                    src[i, k - 2 : k] = torch.tensor([EOS_ID, PAD_ID])
        return nn.functional.one_hot(src, self.vocab).float()

    def decode(self, tgt, memory, tgt_padding_mask=None, memory_padding_mask=None):
        b, t = tgt.shape
        pad = torch.zeros(b, max(0, t - memory.shape[1]), self.vocab)
        pad[..., EOS_ID] = 1.0
        return 30.0 * torch.cat([memory, pad], 1)[:, :t] + self.dummy

    def forward(self, src, tgt, src_padding_mask=None, tgt_padding_mask=None):
        return self.decode(tgt, self.encode(src))


@pytest.mark.parametrize("beam_size", [1, 3])
def test_bleu_end_to_end_from_ids(beam_size, tmp_path):
    """ids -> greedy/beam decoding -> detokenised text -> BLEU, against sacreBLEU on the raw
    sentences: a copying model scores 100, one that drops each last word the BLEU of the
    truncated sentences."""
    tok = train_bpe(SENTS, 60)
    vocab = tok.get_vocab_size()
    tok.save(str(tmp_path / "tok.json"))
    x, _ = encode_lines(tok, SENTS, bos=False)
    y, _ = encode_lines(tok, SENTS, bos=True)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    task = Seq2SeqTask(vocab, tokenizer=tmp_path / "tok.json", beam_size=beam_size,
                       max_len_a=1.0, max_len_b=2)
    assert task.detokenize(task.references(y)) == SENTS
    res = task.evaluate(_Oracle(vocab), x, y, batch_size=3)
    assert res["bleu"] == pytest.approx(100.0)
    assert res["token_acc"] == 1.0
    assert task.translate(_Oracle(vocab), x) == SENTS
    shorter = [" ".join(s.split()[:-1]) if len(tok.encode(s).ids) >= 2 else s for s in SENTS]
    got = task.translate(_Oracle(vocab, drop_last=True), x)
    # the oracle drops the last BPE piece; for these sentences that is the final " ."
    assert got == [s[:-2] for s in SENTS] == shorter
    res = task.evaluate(_Oracle(vocab, drop_last=True), x, y)
    assert res["bleu"] == pytest.approx(sacrebleu.corpus_bleu(shorter, [SENTS]).score)
    assert 0 < res["bleu"] < 100
    info = task.run_info()
    assert info["bleu_signature"] == bleu_signature() and info["beam_size"] == beam_size


def test_evaluate_without_tokenizer_scores_ids_and_reports_loss():
    model = _tiny()
    task = Seq2SeqTask(12, beam_size=2, max_len_b=3, label_smoothing=0.1)
    src = torch.tensor([[5, 6, 2, 0], [8, 2, 0, 0], [4, 4, 4, 2]])
    y = _targets([[4, 5], [9], [3, 3, 3]], 6)
    res = task.evaluate(model, src, y, batch_size=2)
    assert set(res) == set(task.eval_metrics)
    with torch.no_grad():
        logits = model(src, y[:, :-1], src_padding_mask=src == 0,
                       tgt_padding_mask=y[:, :-1] == 0)
    gold = y[:, 1:]
    nll = nn.functional.cross_entropy(logits.transpose(1, 2), gold.masked_fill(gold == 0, -100))
    assert res["loss"] == pytest.approx(nll.item(), rel=1e-5)
    assert res["ppl"] == pytest.approx(math.exp(nll.item()), rel=1e-5)
    model.eval()
    hyps = [" ".join(map(str, h)) for h in task.generate(model, src)]
    refs = ["4 5", "9", "3 3 3"]
    assert res["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    empty = task.evaluate(model, src[:0], y[:0])
    assert all(math.isnan(v) for v in empty.values())


def test_check_targets_and_options():
    task = build_task("seq2seq", _tiny(), 12)
    task.check_targets("train", _targets([[4, 5]], 5))
    with pytest.raises(TypeError, match="train targets must be integer"):
        task.check_targets("train", torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"val targets of a seq2seq task must be \(N, T\)"):
        task.check_targets("val", torch.ones(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"outside \[0, 12\)"):
        task.check_targets("test", torch.tensor([[1, 12]]))
    with pytest.raises(ValueError, match="must start with <bos>"):
        task.check_targets("test", torch.tensor([[4, 2]]))
    with pytest.raises(TypeError, match="bad options for task 'seq2seq'"):
        build_task("seq2seq", _tiny(), 12, nms_threshold=0.5)
    with pytest.raises(ValueError, match="label_smoothing"):
        Seq2SeqTask(12, label_smoothing=1.0)
    with pytest.raises(ValueError, match="the tokenizer has"):
        Seq2SeqTask(12, tokenizer=train_bpe(SENTS, 60))
    with pytest.raises(ValueError, match="augment"):
        task.build_augment("flip")


def test_transformer_base_is_the_paper_model():
    m = create_model("transformer_base", num_classes=1000)
    assert len(m.encoder) == len(m.decoder) == 6
    assert m.encoder[0].attn.nhead == 8 and m.encoder[0].attn.d_model == 512
    assert m.encoder[0].ff.fc1.out_features == 2048
    assert m.head.weight is m.tgt_embed.tok.weight is m.src_embed.tok.weight
    with pytest.raises(ValueError, match="share_embeddings"):
        create_model("transformer_seq2seq", src_vocab=5, tgt_vocab=6, share_embeddings=True)
