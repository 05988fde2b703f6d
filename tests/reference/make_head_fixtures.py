"""Writes the task-head fixtures (tests/fixtures/heads/<case>.safetensors) that tests/unit/test_head.c
compares src/models/head.c against.

Each case builds a tiny transformers *ForSequenceClassification / *ForTokenClassification /
*ForCausalLM with random head weights and replaces its base model by a stub that returns fixed
random final hidden states. The model's own forward then runs unchanged: pooling (last non-pad token
or token 0), the pooler / dense / classifier modules, and the loss with its problem_type rule (GPT-2's
inline copy, the generic Llama classes' loss_function, RoBERTa's, BERT's, DistilBERT's). Autograd
gives the gradients of that loss with respect to the hidden states and to the head's weights.

Stored per case (float32 unless said): hidden (B,T,C); input_ids (B,T) int64; labels (int64 or
float32, in the shape given to the model); the head's weights under the role names classifier.* and
dense.*; logits as the model returns them; loss (1); grad.hidden and grad.<role>.<weight|bias>.
Metadata: the class, task, num_labels, problem_type as configured ("" for null) and as the model
resolved it, pooling, pad_token_id ("" for null), the dense activation, the module paths.

Run from the repository root with the reference venv:
    tests/reference/.venv/bin/python tests/reference/make_head_fixtures.py
Running it twice gives identical files.
"""
import argparse
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oracle_common import save_tensors  # noqa: E402

import transformers  # noqa: E402
from transformers.modeling_outputs import (  # noqa: E402
    BaseModelOutput, BaseModelOutputWithPast, BaseModelOutputWithPastAndCrossAttentions,
    BaseModelOutputWithPoolingAndCrossAttentions)

C, VOCAB = 16, 50


class FixedBase(nn.Module):
    """Stands in for the base model: returns the given hidden states (and, for BERT, the real pooler's
    output on them), whatever the inputs."""

    def __init__(self, output_class, hidden, pooler=None):
        super().__init__()
        self.output_class, self.hidden, self.pooler = output_class, hidden, pooler

    def forward(self, *args, **kwargs):
        if self.pooler is not None:
            return self.output_class(last_hidden_state=self.hidden, pooler_output=self.pooler(self.hidden))
        return self.output_class(last_hidden_state=self.hidden)


def gpt2_config(**kw):
    return transformers.GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=C, n_layer=1, n_head=2, bos_token_id=VOCAB - 1,
                                   eos_token_id=VOCAB - 1, **kw)


def llama_config(**kw):
    return transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=C, intermediate_size=32, num_hidden_layers=1,
                                    num_attention_heads=2, num_key_value_heads=2, **kw)


def roberta_config(**kw):
    return transformers.RobertaConfig(vocab_size=VOCAB, hidden_size=C, num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=32, **kw)


def bert_config(**kw):
    return transformers.BertConfig(vocab_size=VOCAB, hidden_size=C, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=32, **kw)


def distilbert_config(**kw):
    return transformers.DistilBertConfig(vocab_size=VOCAB, dim=C, n_layers=1, n_heads=2, hidden_dim=32, **kw)


# Row patterns for (B=4, T=6) inputs; P marks the pad token. A pad id inside a row (GPT-2's pad is its
# eos) is treated as padding too: transformers takes the rightmost token that is not pad_token_id.
P = -1
PAD_ROWS = {
    "mixed": [[7, 8, 9, 10, 11, 12], [7, 8, 9, 10, P, P], [P, P, P, 9, 10, 11], [7, P, 9, 10, P, P]],
    "left": [[P, P, 8, 9, 10, 11], [7, 8, 9, 10, 11, 12], [P, P, P, P, P, 11], [P, 8, 9, 10, 11, 12]],
    "all_pad_row": [[7, 8, 9, P, P, P], [P, P, P, P, P, P], [P, P, 9, 10, 11, 12], [7, P, P, P, P, P]],
}

# name: (class, config builder, config kwargs, task, num_labels, padding, labels kind, base stub, head modules)
#   head modules: (role, path, module getter); the dense activation when there is a dense stage.
CASES = [
    dict(name="gpt2_seqcls_single", cls="GPT2ForSequenceClassification", config=gpt2_config, task="SEQ_CLS",
         num_labels=3, pad=1, rows="mixed", labels="ids_ignored", base="transformer",
         out=BaseModelOutputWithPastAndCrossAttentions, classifier="score", pooling="LAST_NON_PAD"),
    dict(name="gpt2_seqcls_regression", cls="GPT2ForSequenceClassification", config=gpt2_config, task="SEQ_CLS",
         num_labels=1, pad=1, rows="left", labels="values_b", base="transformer",
         out=BaseModelOutputWithPastAndCrossAttentions, classifier="score", pooling="LAST_NON_PAD"),
    dict(name="gpt2_seqcls_regression2", cls="GPT2ForSequenceClassification", config=gpt2_config, task="SEQ_CLS",
         num_labels=2, pad=1, rows="mixed", labels="values_bk", problem_type="regression", base="transformer",
         out=BaseModelOutputWithPastAndCrossAttentions, classifier="score", pooling="LAST_NON_PAD"),
    dict(name="gpt2_seqcls_multilabel", cls="GPT2ForSequenceClassification", config=gpt2_config, task="SEQ_CLS",
         num_labels=4, pad=1, rows="mixed", labels="binary_bk", base="transformer",
         out=BaseModelOutputWithPastAndCrossAttentions, classifier="score", pooling="LAST_NON_PAD"),
    dict(name="gpt2_seqcls_nopad", cls="GPT2ForSequenceClassification", config=gpt2_config, task="SEQ_CLS",
         num_labels=3, pad=None, rows=None, B=1, labels="ids", base="transformer",
         out=BaseModelOutputWithPastAndCrossAttentions, classifier="score", pooling="LAST_NON_PAD"),
    dict(name="llama_seqcls_single", cls="LlamaForSequenceClassification", config=llama_config, task="SEQ_CLS",
         num_labels=3, pad=0, rows="all_pad_row", labels="ids", base="model", out=BaseModelOutputWithPast,
         classifier="score", pooling="LAST_NON_PAD"),
    dict(name="llama_seqcls_multilabel", cls="LlamaForSequenceClassification", config=llama_config,
         task="SEQ_CLS", num_labels=3, pad=0, rows="left", labels="soft_bk",
         problem_type="multi_label_classification", base="model", out=BaseModelOutputWithPast,
         classifier="score", pooling="LAST_NON_PAD"),
    dict(name="gpt2_tokcls", cls="GPT2ForTokenClassification", config=gpt2_config, task="TOKEN_CLS", num_labels=5,
         pad=1, rows="mixed", labels="token_ids", base="transformer", out=BaseModelOutputWithPastAndCrossAttentions,
         classifier="classifier"),
    dict(name="llama_tokcls", cls="LlamaForTokenClassification", config=llama_config, task="TOKEN_CLS",
         num_labels=4, pad=0, rows="left", labels="token_ids", base="model", out=BaseModelOutputWithPast,
         classifier="score"),
    dict(name="roberta_seqcls_single", cls="RobertaForSequenceClassification", config=roberta_config,
         task="SEQ_CLS", num_labels=3, pad=1, rows="mixed", labels="ids_ignored", base="roberta",
         out=BaseModelOutputWithPoolingAndCrossAttentions, classifier="classifier.out_proj",
         dense="classifier.dense", act="tanh", pooling="FIRST"),
    dict(name="bert_seqcls_regression", cls="BertForSequenceClassification", config=bert_config, task="SEQ_CLS",
         num_labels=1, pad=0, rows="mixed", labels="values_b1", base="bert",
         out=BaseModelOutputWithPoolingAndCrossAttentions, classifier="classifier", dense="bert.pooler.dense",
         act="tanh", pooling="FIRST", pooler="bert.pooler"),
    dict(name="distilbert_seqcls_multilabel", cls="DistilBertForSequenceClassification", config=distilbert_config,
         task="SEQ_CLS", num_labels=3, pad=0, rows="mixed", labels="binary_bk", base="distilbert",
         out=BaseModelOutput, classifier="classifier", dense="pre_classifier", act="relu", pooling="FIRST"),
    dict(name="gpt2_causal_lm", cls="GPT2LMHeadModel", config=gpt2_config, task="CAUSAL_LM", num_labels=VOCAB,
         pad=1, rows="mixed", labels="lm", base="transformer", out=BaseModelOutputWithPastAndCrossAttentions,
         classifier="lm_head"),
]


def get_module(model, path):
    m = model
    for part in path.split("."):
        m = getattr(m, part)
    return m


def make_case(case, out_dir):
    g = torch.Generator().manual_seed(sum(map(ord, case["name"])))
    B, T, K = case.get("B", 4), 6, case["num_labels"]
    kw = dict(pad_token_id=case["pad"])
    if case["task"] != "CAUSAL_LM":
        kw["num_labels"] = K
    if case.get("problem_type"):
        kw["problem_type"] = case["problem_type"]
    config = case["config"](**kw)
    model = getattr(transformers, case["cls"])(config).eval()

    # head weights: random, larger than the init so that the logits are not all near zero
    roles = [("classifier", case["classifier"])] + ([("dense", case["dense"])] if case.get("dense") else [])
    tensors = {}
    with torch.no_grad():
        for role, path in roles:
            mod = get_module(model, path)
            mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * 0.5)
            if mod.bias is not None:
                mod.bias.copy_(torch.randn(mod.bias.shape, generator=g) * 0.3)

    # inputs
    if case["rows"]:
        ids = torch.tensor(PAD_ROWS[case["rows"]], dtype=torch.int64)
        ids[ids == P] = case["pad"]
    else:
        ids = torch.randint(2, VOCAB, (B, T), generator=g)
    is_pad = ids == case["pad"] if case["pad"] is not None else torch.zeros_like(ids, dtype=torch.bool)
    hidden = (torch.randn(B, T, C, generator=g) * 1.5).requires_grad_(True)

    kind = case["labels"]
    if kind in ("ids", "ids_ignored"):
        labels = torch.randint(0, K, (B,), generator=g)
        if kind == "ids_ignored":
            labels[1] = -100
    elif kind == "values_b":
        labels = torch.randn(B, generator=g)
    elif kind == "values_b1":
        labels = torch.randn(B, 1, generator=g)
    elif kind == "values_bk":
        labels = torch.randn(B, K, generator=g)
    elif kind == "binary_bk":
        labels = (torch.rand(B, K, generator=g) > 0.5).float()
    elif kind == "soft_bk":
        labels = torch.randint(0, 5, (B, K), generator=g).float() / 4
    elif kind == "token_ids":
        labels = torch.randint(0, K, (B, T), generator=g)
        labels[is_pad] = -100
    elif kind == "lm":
        labels = ids.clone()
        labels[is_pad] = -100
    else:
        raise ValueError(kind)

    pooler = get_module(model, case["pooler"]) if case.get("pooler") else None
    setattr(model, case["base"], FixedBase(case["out"], hidden, pooler))
    out = model(input_ids=ids, labels=labels)
    out.loss.backward()

    tensors["hidden"] = hidden.detach()
    tensors["input_ids"] = ids
    tensors["labels"] = labels
    tensors["logits"] = out.logits.detach()
    tensors["loss"] = out.loss.detach().reshape(1)
    tensors["grad.hidden"] = hidden.grad
    for role, path in roles:
        mod = get_module(model, path)
        tensors[f"{role}.weight"] = mod.weight.detach()
        tensors[f"grad.{role}.weight"] = mod.weight.grad
        if mod.bias is not None:
            tensors[f"{role}.bias"] = mod.bias.detach()
            tensors[f"grad.{role}.bias"] = mod.bias.grad
    meta = {
        "class": case["cls"], "task": case["task"], "num_labels": K,
        "problem_type": case.get("problem_type") or "",
        "problem_type_resolved": getattr(model.config, "problem_type", None) or "",
        "pooling": case.get("pooling", ""), "pad_token_id": "" if case["pad"] is None else case["pad"],
        "classifier_path": case["classifier"], "dense_path": case.get("dense", ""), "dense_act": case.get("act", ""),
        "transformers": transformers.__version__, "torch": torch.__version__.split("+")[0],
    }
    path = os.path.join(out_dir, case["name"] + ".safetensors")
    save_tensors(path, tensors, meta)
    print(f"{case['name']:32s} loss {out.loss.item():.6f}  problem_type {meta['problem_type_resolved'] or '-'}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/fixtures/heads")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for case in CASES:
        make_case(case, args.out)


if __name__ == "__main__":
    main()
