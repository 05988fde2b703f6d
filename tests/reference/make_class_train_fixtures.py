#!/usr/bin/env python3
"""Fixtures of classification training (tests/unit/test_class_train.c), from transformers + PEFT:

    tests/fixtures/clstrain/tiny_bert/      a random BertModel (hidden 32, 2 layers, no head) with a 70-token
                                            lowercase WordPiece tokenizer (BertTokenizerFast) over the words
                                            of the data below; what `cpeft train --task-type ...` starts from
    tests/fixtures/clstrain/data/           seq_train.tsv / seq_eval.tsv (sentence, label: neg / neu / pos),
                                            tok_train.conll / tok_eval.conll (B-/I-loc, B-/I-per, O)
    tests/fixtures/clstrain/steps/<case>/   the 10-step AdamW parity, as oracle_train.py's steps/ for decoders:
                                            base/ (the task model Bert{Sequence,Token}Classification with its
                                            head drawn by torch), the initial adapter (PEFT save_pretrained,
                                            init_lora_weights=False, classifier in modules_to_save),
                                            expected.safetensors (20 micro-batches of the training file as the
                                            tokenizer encodes it, final.<key> after 10 steps), expected.json
                                            (losses, grad norms, lrs, labels, config)

The loop: AdamW (lr 2e-3, wd 0.01) with linear warmup 2 over 10 steps, accumulation 2 of micro-batches of 4
rows, clip_grad_norm_ 1.0, the loss of a step = the sum over its micro-batches of the summed loss items / N,
N the step's items (SEQ_CLS rows, TOKEN_CLS labels != -100), as cpeft's trainer normalises it. Model dropout
is 0 (cpeft applies only lora_dropout), lora_dropout 0.

    tests/reference/.venv/bin/python tests/reference/make_class_train_fixtures.py
"""
import json
import os
import shutil

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "fixtures", "clstrain")

SEQ_TRAIN = [
    ("the movie was good", "pos"), ("a bad film", "neg"), ("it was fine", "neu"), ("great acting and a good story", "pos"),
    ("the plot was bad and slow", "neg"), ("an ok movie", "neu"), ("i loved it", "pos"), ("i hated the ending", "neg"),
    ("nothing special", "neu"), ("good fun", "pos"), ("boring and bad", "neg"), ("it is a film", "neu"),
    ("really great", "pos"), ("really bad", "neg"), ("the story was ok", "neu"), ("good good good", "pos"),
    ("slow , boring , bad", "neg"), ("fine acting", "neu"), ("loved the story", "pos"), ("hated the acting", "neg"),
    ("an ending", "neu"), ("a great movie", "pos"), ("a boring movie", "neg"), ("ok", "neu"),
]
SEQ_EVAL = [("a good story", "pos"), ("the acting was bad", "neg"), ("it was ok", "neu"), ("great fun", "pos"),
            ("slow film", "neg"), ("the movie", "neu")]
TOK_TRAIN = [
    [("alice", "B-per"), ("lives", "O"), ("in", "O"), ("paris", "B-loc")],
    [("bob", "B-per"), ("smith", "I-per"), ("went", "O"), ("to", "O"), ("new", "B-loc"), ("york", "I-loc")],
    [("the", "O"), ("city", "O"), ("of", "O"), ("london", "B-loc")],
    [("carol", "B-per"), ("met", "O"), ("alice", "B-per")],
    [("paris", "B-loc"), ("is", "O"), ("big", "O")],
    [("we", "O"), ("went", "O"), ("to", "O"), ("london", "B-loc"), ("and", "O"), ("paris", "B-loc")],
    [("bob", "B-per"), ("lives", "O"), ("in", "O"), ("new", "B-loc"), ("york", "I-loc")],
    [("carol", "B-per"), ("smith", "I-per"), ("is", "O"), ("here", "O")],
    [("alice", "B-per"), ("and", "O"), ("bob", "B-per"), ("met", "O"), ("in", "O"), ("london", "B-loc")],
    [("the", "O"), ("big", "O"), ("city", "O")],
]
TOK_EVAL = [
    [("carol", "B-per"), ("went", "O"), ("to", "O"), ("paris", "B-loc")],
    [("bob", "B-per"), ("smith", "I-per"), ("lives", "O"), ("in", "O"), ("london", "B-loc")],
    [("new", "B-loc"), ("york", "I-loc"), ("is", "O"), ("big", "O")],
]

CFG = dict(lr=2e-3, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.01, num_warmup_steps=2, num_training_steps=10,
           gradient_accumulation_steps=2, micro_batch_size=4, max_grad_norm=1.0, lora_r=4, lora_alpha=8)


def vocab():
    words = sorted({w for s, _ in SEQ_TRAIN + SEQ_EVAL for w in s.split()} |
                   {w for s in TOK_TRAIN + TOK_EVAL for w, _ in s})
    pieces = ["##s", "##ing", "##ed", "##e", "##a", "##o", "a", "e", "i", "o", "s", "t"]
    v = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [w for w in words if w not in pieces] + pieces
    return list(dict.fromkeys(v))


def write_data(d):
    os.makedirs(d, exist_ok=True)
    for name, rows in (("seq_train.tsv", SEQ_TRAIN), ("seq_eval.tsv", SEQ_EVAL)):
        with open(os.path.join(d, name), "w") as f:
            f.write("sentence\tlabel\n" + "".join(f"{s}\t{l}\n" for s, l in rows))
    for name, sents in (("tok_train.conll", TOK_TRAIN), ("tok_eval.conll", TOK_EVAL)):
        with open(os.path.join(d, name), "w") as f:
            f.write("\n".join("".join(f"{w}\t{t}\n" for w, t in s) for s in sents))


def main():
    from transformers import (BertConfig, BertModel, BertTokenizerFast, BertForSequenceClassification,
                              BertForTokenClassification, get_scheduler)
    import peft
    shutil.rmtree(OUT, ignore_errors=True)
    base = os.path.join(OUT, "tiny_bert")
    os.makedirs(base)
    v = vocab()
    with open(os.path.join(base, "vocab.txt"), "w") as f:
        f.write("\n".join(v) + "\n")
    tok = BertTokenizerFast(vocab_file=os.path.join(base, "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(base)
    torch.manual_seed(1234)
    cfg = BertConfig(vocab_size=len(v), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                     max_position_embeddings=64, type_vocab_size=2, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0, initializer_range=0.2, pad_token_id=0)
    BertModel(cfg, add_pooling_layer=True).save_pretrained(base)
    write_data(os.path.join(OUT, "data"))

    for case, task in (("bert_seqcls", "SEQ_CLS"), ("bert_tokcls", "TOKEN_CLS")):
        if task == "SEQ_CLS":
            names = sorted({l for _, l in SEQ_TRAIN})
            cls = BertForSequenceClassification
        else:
            names = sorted({t for s in TOK_TRAIN for _, t in s})
            cls = BertForTokenClassification
        l2i = {n: i for i, n in enumerate(names)}
        d = os.path.join(OUT, "steps", case)
        torch.manual_seed(99)
        model = cls.from_pretrained(base, num_labels=len(names), id2label=dict(enumerate(names)), label2id=l2i)
        model.save_pretrained(os.path.join(d, "base"))
        lc = peft.LoraConfig(task_type=task, r=CFG["lora_r"], lora_alpha=CFG["lora_alpha"], lora_dropout=0.0,
                             init_lora_weights=False)
        torch.manual_seed(7)
        pm = peft.get_peft_model(model, lc)
        pm.save_pretrained(d)
        os.remove(os.path.join(d, "README.md"))
        with open(os.path.join(d, "adapter_config.json")) as f:
            ac = json.load(f)
        ac["base_model_name_or_path"] = f"tests/fixtures/clstrain/steps/{case}/base"  # relative to the repo root
        with open(os.path.join(d, "adapter_config.json"), "w") as f:
            json.dump(ac, f, indent=2, sort_keys=True)
        # micro-batches: the training file in order, cycled, 4 rows each, padded to the longest
        B = CFG["micro_batch_size"]
        n_micro = CFG["num_training_steps"] * CFG["gradient_accumulation_steps"]
        rows = SEQ_TRAIN if task == "SEQ_CLS" else TOK_TRAIN
        batches = []
        for i in range(n_micro):
            sel = [rows[(i * B + k) % len(rows)] for k in range(B)]
            if task == "SEQ_CLS":
                enc = tok([s for s, _ in sel], padding=True, return_tensors="pt")
                labels = torch.tensor([l2i[l] for _, l in sel])
            else:
                enc = tok([[w for w, _ in s] for s in sel], is_split_into_words=True, padding=True, return_tensors="pt")
                lab = []
                for r, s in enumerate(sel):
                    prev, row = None, []
                    for w in enc.word_ids(r):
                        row.append(-100 if w is None or w == prev else l2i[s[w][1]])
                        prev = w
                    lab.append(row)
                labels = torch.tensor(lab)
            batches.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                            "token_type_ids": enc["token_type_ids"], "labels": labels})
        params = [p for p in pm.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=CFG["lr"], betas=tuple(CFG["betas"]), eps=CFG["eps"],
                                weight_decay=CFG["weight_decay"])
        sched = get_scheduler("linear", opt, num_warmup_steps=CFG["num_warmup_steps"],
                              num_training_steps=CFG["num_training_steps"])
        ga = CFG["gradient_accumulation_steps"]
        losses, norms, lrs = [], [], []
        pm.train()
        for step in range(CFG["num_training_steps"]):
            mbs = batches[step * ga:(step + 1) * ga]
            N = sum(int((mb["labels"] != -100).sum()) for mb in mbs)
            total = 0.0
            for mb in mbs:
                logits = pm(input_ids=mb["input_ids"], attention_mask=mb["attention_mask"],
                            token_type_ids=mb["token_type_ids"]).logits
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), mb["labels"].reshape(-1),
                                                         ignore_index=-100, reduction="sum") / N
                loss.backward()
                total += float(loss)
            gn = torch.nn.utils.clip_grad_norm_(params, CFG["max_grad_norm"])
            lrs.append(opt.param_groups[0]["lr"])
            opt.step(); sched.step(); opt.zero_grad(set_to_none=True)
            losses.append(total)
            norms.append(float(gn))
        from safetensors.torch import save_file
        tensors = {}
        for i, mb in enumerate(batches):
            for k, t in mb.items():
                tensors[f"{k}_{i}"] = t.contiguous()
        sd = peft.get_peft_model_state_dict(pm)
        for k, t in sd.items():
            tensors["final." + k] = t.detach().clone().contiguous()
        save_file(tensors, os.path.join(d, "expected.safetensors"))
        with open(os.path.join(d, "expected.json"), "w") as f:
            json.dump({"case": case, "task_type": task, "labels": names, "config": CFG, "losses": losses,
                       "grad_norms": norms, "lrs": lrs, "torch": torch.__version__, "peft": peft.__version__}, f, indent=2)
        print(case, "losses", [round(x, 4) for x in losses])


if __name__ == "__main__":
    main()
