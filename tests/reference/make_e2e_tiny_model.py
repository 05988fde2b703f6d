#!/usr/bin/env python3
"""The starting model of `make demo-seq2seq` (scripts/demo-seq2seq.sh): a tiny T5 v1.1-style encoder-decoder,
randomly initialised by transformers, with a tokenizer trained by `tokenizers` on the E2E NLG training text.

No installable package ships pre-trained T5 / BART weights (issue 14, part 6), so the demo pre-trains this model
with cpeft itself on data/e2e-nlg/devset.csv. Python is used only here, at asset-creation time; the demo and the
tests need only the committed files:

    data/e2e-nlg/tiny-t5/tokenizer.json         Unigram, VOCAB pieces trained on the devset's MRs and references
                                                (pad 0, eos </s> 1, unk 2 as T5's; NFKC, Metaspace "▁" as T5's
                                                pre-tokenizer and decoder; TemplateProcessing "$A </s>")
    data/e2e-nlg/tiny-t5/tokenizer_config.json
    data/e2e-nlg/tiny-t5/config.json            T5Config, v1.1 style (gated-gelu, no bias, relative buckets 32 /
                                                128), d_model 128, 2 + 2 layers, 4 heads of d_kv 32, d_ff 512,
                                                vocabulary 994; the LM head tied to `shared` with v1.0's
                                                d_model^-0.5 rescale (scale_decoder_outputs: transformers 5
                                                saves a v1.1 config tied anyway, and unscaled, the tied head
                                                of a random init starts at a loss of 35)
    data/e2e-nlg/tiny-t5/model.safetensors      T5ForConditionalGeneration(config), random init (seed 0), bfloat16
    data/e2e-nlg/tiny-t5/generation_config.json
    tests/fixtures/tokenizers/e2e-tiny-t5/expected.json
                                                ids of the first lines of devset.csv / testset_w_refs.csv as
                                                `tokenizers` gives them (tests/unit/test_tokenizer.c compares)

    tests/reference/.venv/bin/python tests/reference/make_e2e_tiny_model.py
"""
import csv
import json
import os

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(ROOT, "data", "e2e-nlg")
OUT = os.path.join(DATA, "tiny-t5")
FIX = os.path.join(ROOT, "tests", "fixtures", "tokenizers", "e2e-tiny-t5")
VOCAB = 1024  # asked of the trainer; it stops at 994 pieces on this text
SPECIAL = ["<pad>", "</s>", "<unk>"]
# every printable ASCII character and the two non-ASCII letters of the devset, so that a test-set character the
# devset lacks (a digit, a capital) is still a piece, not <unk>
ALPHABET = [chr(c) for c in range(33, 127)] + ["£", "é"]


def write_json(path, obj):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(obj, f, indent=2, sort_keys=True, ensure_ascii=False)
        f.write("\n")


def rows(name):
    with open(os.path.join(DATA, name), newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def make_tokenizer(texts):
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=VOCAB, special_tokens=SPECIAL, unk_token="<unk>",
                                      initial_alphabet=ALPHABET, shrinking_factor=0.75, max_piece_length=16,
                                      show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    eos = tok.token_to_id("</s>")
    assert [tok.token_to_id(s) for s in SPECIAL] == [0, 1, 2], "special tokens must be pad 0, eos 1, unk 2"
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", eos)])
    return tok


def make_model(vocab):
    from transformers import GenerationConfig, T5Config, T5ForConditionalGeneration
    cfg = T5Config(vocab_size=vocab, d_model=128, d_kv=32, d_ff=512, num_layers=2, num_decoder_layers=2, num_heads=4,
                   relative_attention_num_buckets=32, relative_attention_max_distance=128, dropout_rate=0.1,
                   feed_forward_proj="gated-gelu", tie_word_embeddings=False, pad_token_id=0, eos_token_id=1,
                   decoder_start_token_id=0, initializer_factor=1.0, scale_decoder_outputs=True)
    torch.manual_seed(0)
    m = T5ForConditionalGeneration(cfg).to(torch.bfloat16)
    m.save_pretrained(OUT, safe_serialization=True)
    GenerationConfig(decoder_start_token_id=0, eos_token_id=1, pad_token_id=0).save_pretrained(OUT)
    return sum(p.numel() for p in m.parameters())


def main():
    os.makedirs(OUT, exist_ok=True)
    os.makedirs(FIX, exist_ok=True)
    dev = rows("devset.csv")
    texts = [r["mr"] for r in dev] + [r["ref"] for r in dev]
    tok = make_tokenizer(texts)
    tok.save(os.path.join(OUT, "tokenizer.json"))
    write_json(os.path.join(OUT, "tokenizer_config.json"),
               {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>", "model_max_length": 512,
                "tokenizer_class": "T5Tokenizer"})
    n = make_model(tok.get_vocab_size())

    # the parity record: the committed tokenizer.json read back, as the C test reads it
    tok = Tokenizer.from_file(os.path.join(OUT, "tokenizer.json"))
    test = rows("testset_w_refs.csv")
    lines = [dev[0]["mr"], dev[0]["ref"], dev[1]["ref"], dev[-1]["mr"], dev[-1]["ref"], test[0]["mr"], test[0]["ref"],
             test[-1]["mr"], test[-1]["ref"], "data to text: name[Zizzi], food[Italian], near[Café Quattro 86]",
             "  two  spaces\tand a tab, Ünïcödé ﬁ ligature, $7.50 & <html>"]
    cases = []
    for s in lines:
        e = tok.encode(s)
        cases.append({"text": s, "ids": e.ids, "ids_no_special": tok.encode(s, add_special_tokens=False).ids,
                      "decoded_skip_special": tok.decode(e.ids, skip_special_tokens=True)})
    write_json(os.path.join(FIX, "expected.json"), {"tokenizer": "data/e2e-nlg/tiny-t5/tokenizer.json", "cases": cases})
    unk = sum(c["ids"].count(2) for c in cases)
    print(f"vocab {tok.get_vocab_size()}, {n} parameters, {len(cases)} parity lines ({unk} <unk>)")


if __name__ == "__main__":
    main()
