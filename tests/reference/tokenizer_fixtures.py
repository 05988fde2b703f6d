#!/usr/bin/env python3
"""Tokenizer parity fixtures for cpeft, made with the real Hugging Face `tokenizers` library.

    tests/reference/.venv/bin/python tests/reference/tokenizer_fixtures.py [--out tests/fixtures/tokenizers]
    tests/reference/.venv/bin/python tests/reference/tokenizer_fixtures.py --hard-only

For every tokenizer below and every string of the parity corpus it records what `tokenizers`
gives: ids with and without the post-processor's special tokens, offsets (converted to byte offsets
into the exact bytes the C test passes), and the decoded text with and without special tokens.
Invalid UTF-8 is passed to Python as bytes.decode("utf-8", "replace"), the only way such input can
reach `tokenizers`; offsets are mapped back to the original bytes.

Tokenizers:
  gpt2            ../shared/data/gpt2-tokenizer/tokenizer.json (real file, read from shared/)
  bert-uncased    BertTokenizerFast built from ../shared/data/bert-vocab (what transformers builds)
  bert-cased      idem, cased vocabulary, do_lower_case=False
  llama-legacy    SentencePiece BPE with byte fallback, converted as LlamaTokenizerFast (legacy=True)
  llama           idem, legacy=False (Metaspace prepend_scheme "first")
  t5              SentencePiece Unigram + Precompiled (nmt_nfkc) normalizer, as T5TokenizerFast
  misc-bpe        BPE with ##/</w> affixes and many normalizers / pre-tokenizers / added-token flags
  misc-wordlevel  WordLevel with Split (all behaviors), Metaspace, CharDelimiterSplit ...
  roberta         small byte-level BPE with RobertaProcessing and an lstrip <mask>
Each directory also gets `hard.json`, the same record for the hard cases (hard_corpus(): code points
BertNormalizer's clean_text must keep or remove, NUL bytes that decoding must keep), made from the
committed tokenizer.json files, so it is reproducible byte for byte; `--hard-only` writes just those
(BPE training here is not deterministic: a full run may reorder misc-bpe's merges). Decoded text is
also given as base64 (`decoded_b64`, `decoded_skip_special_b64`) because it may hold NUL bytes,
which JSON readers built on C strings cut.

`unicode_classes.json` lists, over every code point, the character classes `tokenizers` decides
with its own (older) Unicode tables rather than the current standard: what BertNormalizer's
clean_text removes, what its strip_accents removes after NFD, what the StripAccents normalizer
removes, and what BertPreTokenizer / Punctuation split off as punctuation (ranges, probed one code
point at a time; `--hard-only` writes it too); and, under "lowercase", what the Lowercase normalizer
(and BertNormalizer's lowercase, the same) makes of every code point: Rust's char::to_lowercase of
the Rust tokenizers was built with, newer than utf8proc's Unicode 15 on 55 code points.
The SentencePiece models (llama*, t5) are trained here when the `sentencepiece` package is
importable (it is not part of the pinned stack: `pip install sentencepiece protobuf` into a side
environment and pass --spm-python); otherwise the committed tokenizer.json files are reused.
"""
import argparse
import base64
import codecs
import json
import os
import shutil
import subprocess
import sys

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from tokenizers import AddedToken, Regex

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
if not os.path.isdir(SHARED):
    SHARED = "/work/shared/data"


def read(path, n=None):
    with open(path, encoding="utf-8") as f:
        return f.read() if n is None else f.read(n)


# ---- the parity corpus ---------------------------------------------------------------------------

def corpus():
    items = [
        "Hello world",
        "Hello   world, it's a test.",
        "  leading and trailing spaces  ",
        "tabs\tand\t\ttabs\nnewlines\n\n\nand\r\nCRLF\r\n",
        "   \n\t  \n",
        " ",
        "",
        "I'm sure you'll say they've done it, didn't they? We'd know.",
        "It's John's; THEY'RE here. 'quoted' \"double\"",
        "Numbers: 1234567890 3.14159 -42 1,000,000 ½ ² ³ ¼ 一二三 ٣",
        "def foo(x):\n    return x**2 + 1  # comment\n\nclass Bar:\n\tpass\n",
        "for (int i = 0; i < n; i++) { a[i] = b[i] * c; } // C++ && || != ==",
        "<html><body><div class=\"x\">Text &amp; more</div></body></html>",
        "https://example.com/path?query=1&other=2#frag user@mail.org",
        "emoji 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇫🇷🇯🇵 ❤️ ✨",
        "中文测试：你好，世界！这是一个分词器。",
        "- lora仅支持`nn.Linear`，所以需要确定要使用lora的层的属性；",
        "日本語のテキスト、カタカナとひらがな。한국어 텍스트입니다.",
        "Ελληνικά, русский текст, עברית, العربية, हिन्दी, ไทย",
        "café naïve résumé coöperate Ångström",
        "cafe\u0301 nai\u0308ve re\u0301sume\u0301 A\u030angstro\u0308m",  # decomposed accents
        "e\u0301\u0302\u0323 a\u0328\u0301 \u1e9b\u0323 q\u0307\u0323",  # stacked combining marks
        "ﬁne ﬂow ＦＵＬＬＷＩＤＴＨ ｈａｌｆ ㌀ ℌ ① ™ …",
        "İstanbul ǅ ß ẞ Σίσυφος ΣΑΣ",
        "nbsp\u00a0here ideographic\u3000space line\u2028sep para\u2029sep nel\u0085x",
        "zero\u200bwidth bom\ufeffhere mongolian\u180evowel zwj\u200djoin",
        "control \x01\x02\x1f chars \x7f del",
        "replacement \ufffd char and null \x00 byte",
        "a" * 300,
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
        "Pneumonoultramicroscopicsilicovolcanoconiosis" * 3,
        "x" + "\u0301" * 40,
        "Below is an instruction that describes a task. Write a response that appropriately completes the request.",
        "<|endoftext|>",
        "Hello<|endoftext|>world <|endoftext|> end<|endoftext|>",
        "[CLS] sentence one [SEP] sentence two [SEP] [MASK] token [UNK] [PAD]",
        "<s>Hi</s> <unk> <pad> text</s>",
        "<s> <s>  spaced </s>",
        "mask test <mask> and<mask>here  <mask>",
        "My name is [NAME] and my day is Monday monday MONDAY",
        "special ##prefix ##ing tokens",
        "▁already▁has▁metaspace ▁ ▁▁",
        "the-final--countdown, hyphen-ated; semi;colon",
        "$100 + 50% = ^caret^ |pipe| ~tilde~ `backtick` \\backslash\\",
        "...!!!???,,, ;;; ::: ---",
        "   multiple    internal     spaces    ",
        "\n\nparagraph one.\n\nparagraph two.\n\n",
        "😀",
        "ａｂｃ１２３",
    ]
    out = [s.encode("utf-8") for s in items]
    out += [
        b"invalid \xff byte",
        b"truncated \xe2\x82 euro",
        b"\xf0\x9f\x98 broken emoji at start",
        b"overlong \xc0\xaf slash",
        b"surrogate \xed\xa0\x80 half",
        b"lone continuation \x80\x80\x80 bytes",
        b"end with partial \xe4\xb8",
        b"\xff\xfe\xfd",
        b"mixed \xe4\xb8\xad\xff\xe6\x96\x87 cjk",
    ]
    # Real text: paragraphs of the shared data sets.
    shakespeare = read(os.path.join(SHARED, "tinyshakespeare", "input.txt"), 200000)
    for start in (0, 5000, 50000, 150000):
        out.append(shakespeare[start:start + 1500].encode("utf-8"))
    alpaca = json.loads(read(os.path.join(SHARED, "alpaca-subset", "alpaca_tiny.json")))
    for rec in alpaca[:6]:
        out.append(rec["text"].encode("utf-8"))
    wnut = read(os.path.join(SHARED, "wnut17", "wnut17train.conll"), 20000).split("\n\n")
    for sent in wnut[3:9]:
        out.append(" ".join(line.split("\t")[0] for line in sent.split("\n") if line).encode("utf-8"))
    notebook = read(os.path.join(os.path.dirname(SHARED), "spec", "notebook.txt"))
    out.append(notebook[:3000].encode("utf-8"))
    return out


def hard_corpus():
    """Inputs where cpeft once differed. BertNormalizer's clean_text removes U+0000, U+FFFD and what
    the unicode_categories crate (Unicode 8.0 tables) calls Cc, Cf or Co; it keeps unassigned code
    points (U+0378, noncharacters U+FDD0, U+FFFE, U+10FFFF), format characters assigned after 8.0
    (U+0890, U+08E2, U+110CD, U+13430) and \t \n \r (which become spaces). NUL bytes must survive
    decoding (byte-fallback <0x00>, byte-level Ā). Punctuation and marks assigned after Unicode 8.0
    are neither for BertPreTokenizer, Punctuation, strip_accents and StripAccents."""
    items = [
        "unassigned \u0378 x\u0378y \u2065 noncharacters \ufdd0 \ufdef \ufffe \uffff \U0001fffe \U0010ffff end",
        "private use \ue000 \uf8ff a\ue123b \U000f0000 \U000ffffd \U00100000 \U0010fffd kept?",
        "format \u00ad soft\u00adhyphen \u0600 \u061c \u06dd \u070f \u180e \u200b \u200e \u202a \u2060 \u2066 \ufeff \ufff9",
        "later format \u0890 \u0891 \u08e2 \U000110bd \U000110cd \U00013430 \U0001343f \U0001bca0 \U0001d173 \U000e0001 \U000e007f",
        "controls \x01\x1f \x7f \x80 \x85 \x9f and \t tab \n nl \r cr \x0b vt \x0c ff \ufffd end",
        "\u0378\ufdd0\U0010ffff",
        "\x00",
        "a\x00b \x00\x00 end\x00",
        "null \x00 in the middle and \x00",
        # punctuation and marks as the Unicode 8.0 tables of tokenizers' crates have them
        "punctuation after 8.0: a\u2e43b \u2e52 x\u061dy c\U00011944d; changed since: \u166d \U000111c9 e",
        "marks after 8.0: e\u0898 a\u1ac1 o\u1dfa n\u07fd; older: e\u0301 a\u0300 \u0903",
    ]
    return [s.encode("utf-8") for s in items]


# ---- byte offsets ------------------------------------------------------------------------------------

def decode_with_map(b):
    """bytes.decode("utf-8", "replace") and, per char index i, the original byte offset of char i
    (list has one extra entry: len(b))."""
    spans = []

    def handler(exc):
        spans.append((exc.start, exc.end))
        return ("\ufffd", exc.end)

    codecs.register_error("cpeft_record", handler)
    s = b.decode("utf-8", "cpeft_record")
    starts = []
    pos = 0
    bad = dict(spans)
    for ch in s:
        starts.append(pos)
        if ch == "\ufffd" and pos in bad:
            pos = bad[pos]
        else:
            pos += len(ch.encode("utf-8"))
    starts.append(pos)
    assert pos == len(b)
    return s, starts


def record(tok, data):
    s, char_to_byte = decode_with_map(data)
    e = tok.encode(s, add_special_tokens=True)
    e0 = tok.encode(s, add_special_tokens=False)
    offsets = [[char_to_byte[a], char_to_byte[b]] for a, b in e.offsets]
    return {
        "text_b64": base64.b64encode(data).decode(),
        "ids": e.ids,
        "offsets": offsets,
        "type_ids": e.type_ids,
        "special_tokens_mask": e.special_tokens_mask,
        "ids_no_special": e0.ids,
        "decoded": tok.decode(e.ids, skip_special_tokens=False),
        "decoded_skip_special": tok.decode(e.ids, skip_special_tokens=True),
    }


def hard_record(tok, data):
    r = record(tok, data)
    r["decoded_b64"] = base64.b64encode(r["decoded"].encode("utf-8")).decode()
    r["decoded_skip_special_b64"] = base64.b64encode(r["decoded_skip_special"].encode("utf-8")).decode()
    return r


def write_hard(out, toks):
    """hard.json in every tokenizer directory (see the module docstring)."""
    for name, tok in toks.items():
        cases = [hard_record(tok, b) for b in hard_corpus()]
        doc = {"tokenizer": name, "tokenizers_version": __import__("tokenizers").__version__,
               "cases": cases, "pairs": []}
        with open(os.path.join(out, name, "hard.json"), "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        print(f"{name}: hard.json, {len(cases)} strings")


def lowercase_map():
    """tokenizers' lowercase of every code point (the Lowercase normalizer; BertNormalizer's lowercase is
    asserted to agree): Rust's char::to_lowercase of the Rust tokenizers was built with, one code point at a
    time (no final-sigma context). "runs" [lo, hi, step, delta]: c in lo, lo+step, ..., hi lowers to
    c + delta; "multi": the code points whose lowercase is several; every other code point is unchanged."""
    from tokenizers.normalizers import BertNormalizer, Lowercase
    low = Lowercase()
    bert = BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=False, lowercase=True)
    single, multi = {}, {}
    for c in range(0x110000):
        if 0xD800 <= c <= 0xDFFF:
            continue
        s = chr(c)
        t = low.normalize_str(s)
        assert bert.normalize_str(s) == t, hex(c)
        if t == s:
            continue
        if len(t) == 1:
            single[c] = ord(t) - c
        else:
            multi[str(c)] = [ord(x) for x in t]
    runs = []
    for c in sorted(single):
        if runs:
            lo, hi, step, delta = runs[-1]
            if delta == single[c] and ((lo == hi and c - hi in (1, 2)) or (lo != hi and c - hi == step)):
                runs[-1] = [lo, c, c - hi, delta]
                continue
        runs.append([c, c, 1, single[c]])
    back = {c: r[3] for r in runs for c in range(r[0], r[1] + 1, r[2])}
    assert back == single, "runs do not reproduce the map"
    return {"runs": runs, "multi": multi}


def unicode_classes(out):
    """Probes tokenizers on every code point (see the module docstring); writes ranges."""
    import unicodedata
    from tokenizers.normalizers import BertNormalizer, StripAccents
    from tokenizers.pre_tokenizers import BertPreTokenizer
    clean = BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=False)
    bert_sa = BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=True, lowercase=False)
    strip = StripAccents()
    pre = BertPreTokenizer()
    classes = {"bert_clean_text_removes": [], "bert_strip_accents_removes": [], "strip_accents_removes": [],
               "bert_punctuation": []}

    def add(name, c):
        r = classes[name]
        if r and r[-1][1] == c - 1:
            r[-1][1] = c
        else:
            r.append([c, c])
    for c in range(0x110000):
        if 0xD800 <= c <= 0xDFFF:
            continue
        s = chr(c)
        if clean.normalize_str(s) == "":
            add("bert_clean_text_removes", c)
        # strip_accents runs after NFD: a code point NFD changes never reaches its filter
        if unicodedata.normalize("NFD", s) == s and bert_sa.normalize_str(s) == "":
            add("bert_strip_accents_removes", c)
        if strip.normalize_str(s) == "":
            add("strip_accents_removes", c)
        if len(pre.pre_tokenize_str("a" + s + "a")) == 3:
            add("bert_punctuation", c)
    doc = {"tokenizers_version": __import__("tokenizers").__version__,
           "python_unicodedata_version": unicodedata.unidata_version,
           "note": "bert_strip_accents_removes covers only code points that NFD leaves unchanged",
           "classes": classes, "lowercase": lowercase_map()}
    with open(os.path.join(out, "unicode_classes.json"), "w") as f:
        json.dump(doc, f, indent=0, sort_keys=True)
    print("unicode_classes.json:", {k: sum(b - a + 1 for a, b in v) for k, v in classes.items()},
          "lowercase changes", sum(len(range(r[0], r[1] + 1, r[2])) for r in doc["lowercase"]["runs"])
          + len(doc["lowercase"]["multi"]), "code points in", len(doc["lowercase"]["runs"]), "runs")


def committed_tokenizers(out):
    """The tokenizers as committed (nothing trained): hard.json depends only on these files."""
    toks = {"gpt2": Tokenizer.from_file(os.path.join(SHARED, "gpt2-tokenizer", "tokenizer.json")),
            "bert-cased": bert(os.path.join(SHARED, "bert-vocab", "bert-base-cased-vocab.txt"), False)}
    for name in ("bert-uncased", "misc-bpe", "misc-wordlevel", "roberta", "llama-legacy", "llama", "t5"):
        path = os.path.join(out, name, "tokenizer.json")
        if os.path.exists(path):
            toks[name] = Tokenizer.from_file(path)
    return toks


def pair_record(tok, a, b):
    e = tok.encode(a, b, add_special_tokens=True)
    return {"a": a, "b": b, "ids": e.ids, "type_ids": e.type_ids,
            "special_tokens_mask": e.special_tokens_mask}


# ---- tokenizers -----------------------------------------------------------------------------------------

def train_text():
    text = read(os.path.join(SHARED, "tinyshakespeare", "input.txt"), 300000)
    alpaca = json.loads(read(os.path.join(SHARED, "alpaca-subset", "alpaca_tiny.json")))
    text += "\n".join(r["text"] for r in alpaca)
    text += "\n" + read(os.path.join(os.path.dirname(SHARED), "spec", "notebook.txt"))
    return text


def bert(vocab_file, lower):
    """What transformers builds from a vocab.txt (BertTokenizer in transformers 5: load_vocab, then
    the same pipeline BertConverter gives)."""
    from transformers import BertTokenizer
    vocab = {}
    with open(vocab_file, encoding="utf-8") as f:
        for i, line in enumerate(f.readlines()):
            vocab[line.rstrip("\n")] = i
    t = BertTokenizer(vocab=vocab, do_lower_case=lower)
    return Tokenizer.from_str(t.backend_tokenizer.to_str())


def misc_bpe(text):
    tok = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##", end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence([
        normalizers.NFKC(), normalizers.Replace(Regex(r"\d+"), "<num>"), normalizers.NFD(),
        normalizers.StripAccents(), normalizers.Lowercase(), normalizers.Replace("``", '"'),
        normalizers.Strip(left=True, right=True), normalizers.NFC(),
    ])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.Punctuation(behavior="isolated"),
    ])
    trainer = trainers.BpeTrainer(vocab_size=800, special_tokens=["[UNK]", "[CLS]", "[SEP]"],
                                  continuing_subword_prefix="##", end_of_word_suffix="</w>",
                                  show_progress=False)
    tok.train_from_iterator(text.split("\n"), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    tok.decoder = decoders.BPEDecoder(suffix="</w>")
    tok.add_tokens([AddedToken("monday", normalized=True, single_word=True),
                    AddedToken("[NAME]", normalized=False, lstrip=True, rstrip=True),
                    AddedToken("##ing", normalized=False, single_word=False)])
    tok.add_special_tokens([AddedToken("[MASK]", lstrip=True)])
    return tok


def misc_wordlevel(text):
    words = {}
    for w in text.replace("\n", " ").split(" "):
        if w:
            words[w] = words.get(w, 0) + 1
    vocab = {"<unk>": 0, "<pad>": 1}
    for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:3000]:
        for form in (w, "\u2581" + w, w.lower()):
            vocab.setdefault(form, len(vocab))
    for c in "abcdefghijklmnopqrstuvwxyz-,.;:!?'\u2581":
        vocab.setdefault(c, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Prepend("\u2581"),
                                           normalizers.Strip(left=False, right=True), normalizers.NFKC()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"[-;]"), behavior="merged_with_previous"),
        pre_tokenizers.Split("--", behavior="contiguous"),
        pre_tokenizers.Split(Regex(r"\s+"), behavior="removed", invert=False),
        pre_tokenizers.Split(Regex(r"\d"), behavior="merged_with_next"),
        pre_tokenizers.CharDelimiterSplit(","),
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True),
        pre_tokenizers.Split(Regex(r"\w+"), behavior="isolated", invert=True),
    ])
    tok.decoder = decoders.Sequence([decoders.Metaspace(replacement="\u2581", prepend_scheme="always"),
                                     decoders.Strip(content=" ", left=1, right=0)])
    tok.add_special_tokens(["<pad>"])
    return tok


def roberta(text):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1200, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(text.split("\n"), trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")),
                                                      ("<s>", tok.token_to_id("<s>")),
                                                      trim_offsets=True, add_prefix_space=True)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, normalized=False)])
    return tok


SPM_SCRIPT = r"""
import json, os, shutil, sys
import sentencepiece as spm
from transformers import LlamaTokenizer, T5Tokenizer
out, text = sys.argv[1], sys.argv[2]
spm.SentencePieceTrainer.train(input=text, model_prefix=out + "/llama-spm", model_type="bpe", vocab_size=3000,
    byte_fallback=True, character_coverage=0.9995, split_digits=True, allow_whitespace_only_pieces=True,
    normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
    unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
spm.SentencePieceTrainer.train(input=text, model_prefix=out + "/t5-spm", model_type="unigram", vocab_size=2500,
    character_coverage=0.9995, normalization_rule_name="nmt_nfkc", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
    minloglevel=2)
# The user path: a model directory with tokenizer.model / spiece.model, converted by transformers.
d = out + "/llama"
os.makedirs(d, exist_ok=True)
shutil.copy(out + "/llama-spm.model", d + "/tokenizer.model")
json.dump({"tokenizer_class": "LlamaTokenizer", "legacy": False, "add_bos_token": True,
           "add_eos_token": False}, open(d + "/tokenizer_config.json", "w"))
LlamaTokenizer.from_pretrained(d).backend_tokenizer.save(out + "/llama.json")
d = out + "/t5"
os.makedirs(d, exist_ok=True)
shutil.copy(out + "/t5-spm.model", d + "/spiece.model")
json.dump({"tokenizer_class": "T5Tokenizer", "extra_ids": 20}, open(d + "/tokenizer_config.json", "w"))
T5Tokenizer.from_pretrained(d).backend_tokenizer.save(out + "/t5.json")
"""


def legacy_llama(doc):
    """The Llama-2 hub serialization: Prepend + Replace normalizer and no pre-tokenizer."""
    doc = json.loads(json.dumps(doc))
    doc["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
    doc["pre_tokenizer"] = None
    doc["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    return doc


def build_spm(out_dir, spm_python):
    """Trains the SentencePiece models in a side environment; returns True when done."""
    work = "/tmp/cpeft-spm"
    os.makedirs(work, exist_ok=True)
    with open(work + "/train.txt", "w", encoding="utf-8") as f:
        f.write(train_text())
    with open(work + "/spm.py", "w") as f:
        f.write(SPM_SCRIPT)
    r = subprocess.run([spm_python, work + "/spm.py", work, work + "/train.txt"])
    if r.returncode:
        return False
    for name in ("llama", "t5"):
        os.makedirs(os.path.join(out_dir, name), exist_ok=True)
        shutil.copy(f"{work}/{name}.json", os.path.join(out_dir, name, "tokenizer.json"))
    os.makedirs(os.path.join(out_dir, "llama-legacy"), exist_ok=True)
    with open(f"{work}/llama.json", encoding="utf-8") as f:
        doc = legacy_llama(json.load(f))
    with open(os.path.join(out_dir, "llama-legacy", "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "tokenizers"))
    ap.add_argument("--spm-python", default=None, help="python with sentencepiece, protobuf, transformers")
    ap.add_argument("--hard-only", action="store_true", help="write only hard.json, from the committed tokenizers")
    args = ap.parse_args()
    out = args.out
    os.makedirs(out, exist_ok=True)
    if args.hard_only:
        write_hard(out, committed_tokenizers(out))
        unicode_classes(out)
        return
    text = train_text()

    toks = {}
    toks["gpt2"] = (Tokenizer.from_file(os.path.join(SHARED, "gpt2-tokenizer", "tokenizer.json")), None)
    toks["bert-uncased"] = (bert(os.path.join(SHARED, "bert-vocab", "bert-base-uncased-vocab.txt"), True), None)
    toks["bert-cased"] = (bert(os.path.join(SHARED, "bert-vocab", "bert-base-cased-vocab.txt"), False), None)
    toks["misc-bpe"] = (misc_bpe(text), "tokenizer.json")
    toks["misc-wordlevel"] = (misc_wordlevel(text), "tokenizer.json")
    toks["roberta"] = (roberta(text), "tokenizer.json")
    if args.spm_python:
        if not build_spm(out, args.spm_python):
            sys.exit("SentencePiece training failed")
    for name in ("llama-legacy", "llama", "t5"):
        path = os.path.join(out, name, "tokenizer.json")
        if os.path.exists(path):
            toks[name] = (Tokenizer.from_file(path), None)
        else:
            print(f"note: {path} missing (run with --spm-python); skipping {name}")

    # bert-uncased's tokenizer.json is kept (the real serialization of a WordPiece tokenizer);
    # bert-cased is tested through ../shared/data/bert-vocab/bert-base-cased-vocab.txt.
    os.makedirs(os.path.join(out, "bert-uncased"), exist_ok=True)
    toks["bert-uncased"][0].save(os.path.join(out, "bert-uncased", "tokenizer.json"))

    items = corpus()
    pairs = [("How are you?", "I am fine, thanks."), ("Hello<|endoftext|>", " second <mask> part")]
    for name, (tok, save) in toks.items():
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        if save:
            tok.save(os.path.join(d, save))
        cases = [record(tok, b) for b in items]
        ntok = sum(len(c["ids"]) for c in cases)
        doc = {"tokenizer": name, "tokenizers_version": __import__("tokenizers").__version__,
               "cases": cases, "pairs": [pair_record(tok, a, b) for a, b in pairs]}
        with open(os.path.join(d, "expected.json"), "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        print(f"{name}: {len(cases)} strings, {ntok} tokens")
    write_hard(out, committed_tokenizers(out))
    unicode_classes(out)

    # The notebook's transformers checks (GPT-2 special tokens and the pad-token message).
    from transformers import GPT2Tokenizer
    import logging, io
    with open(os.path.join(SHARED, "gpt2-tokenizer", "encoder.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    with open(os.path.join(SHARED, "gpt2-tokenizer", "vocab.bpe"), encoding="utf-8") as f:
        merges = [tuple(l.split(" ")) for l in f.read().split("\n")[1:] if l]
    g = GPT2Tokenizer(vocab=vocab, merges=merges)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger("transformers").addHandler(handler)
    pad = g.pad_token
    logging.getLogger("transformers").removeHandler(handler)
    notebook = {"bos_token": g.bos_token, "eos_token": g.eos_token, "bos_token_id": g.bos_token_id,
                "eos_token_id": g.eos_token_id, "id_21106": g.convert_ids_to_tokens(21106),
                "pad_token": pad,
                # transformers 5 no longer logs it; the notebook (transformers 4) printed this line:
                "pad_message": stream.getvalue().strip() or "Using pad_token, but it is not set yet."}
    with open(os.path.join(out, "gpt2", "notebook.json"), "w") as f:
        json.dump(notebook, f, indent=1)
    print("notebook:", notebook)


if __name__ == "__main__":
    main()
