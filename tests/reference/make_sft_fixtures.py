"""TRL SFT dataset-format fixtures: the input_ids and labels TRL 1.16.0's SFTTrainer prepares (its
_prepare_dataset: add_eos, tokenize_fn, build_labels, truncate) for records of each format —
language modeling ("text"), prompt-completion (completion_only_loss on and off), conversational
("messages", with and without assistant_only_loss), conversational prompt-completion — with two
tokenizers: a tiny byte-level BPE with ChatML special tokens (written here, tests/fixtures/sft/chat_tok)
and the llama fixture tokenizer (a BOS added by its post-processor). Also a tiny random Llama model
on the BPE tokenizer with SmolLM2's chat template, and its greedy continuation of a rendered
conversation (apply_chat_template(add_generation_prompt=True) ids, then generate()), for
`cpeft generate --chat`. Writes tests/fixtures/sft/. Deterministic."""
import json, os, shutil, tempfile
import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
from transformers import PreTrainedTokenizerFast, LlamaConfig, LlamaForCausalLM
import trl
from trl import SFTConfig, SFTTrainer

assert trl.__version__ == "1.16.0", trl.__version__
HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures")
OUT = os.path.join(FIX, "sft")
TEMPLATES = os.path.join(FIX, "chat", "templates")


def template(name):
    with open(os.path.join(TEMPLATES, name + ".jinja")) as f:
        return f.read()


CORPUS = [
    "The sky is blue. The grass is green. What is 2 + 2? It is 4.",
    "You are a helpful assistant. Answer in one line, please.",
    "user assistant system Hello! How are you today? I am fine, thanks.",
    "Quatre, « quatre ». Café, naïve, 日本語.",
]


def chat_tokenizer(d):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=330, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 4, tr)
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
           "pad_token": "<|endoftext|>", "chat_template": template("smollm2")}
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=1, ensure_ascii=False)
    return PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, "tokenizer.json"), bos_token="<|im_start|>",
                                   eos_token="<|im_end|>", pad_token="<|endoftext|>")


def llama_tokenizer():
    return PreTrainedTokenizerFast(tokenizer_file=os.path.join(FIX, "tokenizers", "llama", "tokenizer.json"),
                                   bos_token="<s>", eos_token="</s>", unk_token="<unk>")


S = {"role": "system", "content": "You are a helpful assistant."}
U1 = {"role": "user", "content": "What is 2 + 2?"}
A1 = {"role": "assistant", "content": "It is 4."}
U2 = {"role": "user", "content": "And in French? « quatre »"}
A2 = {"role": "assistant", "content": "Quatre.  "}


def cases(eos):
    text = [{"text": "The sky is blue."}, {"text": "Hello! How are you today?" + eos}, {"text": " Café, naïve, 日本語.\n"}]
    pc = [{"prompt": "The sky is", "completion": " blue."}, {"prompt": "What is 2 + 2? ", "completion": "It is 4." + eos},
          {"prompt": "Quatre, ", "completion": "« quatre »"}]
    msgs = [{"messages": [U1, A1]}, {"messages": [S, U1, A1, U2, A2]}, {"messages": [U1, A1, U2, A2]}]
    cpc = [{"prompt": [U1], "completion": [A1]}, {"prompt": [S, U1, A1, U2], "completion": [A2]}]
    return [
        ("text", text, {}, None),
        ("prompt_completion", pc, {}, None),
        ("prompt_completion_full_loss", pc, {"completion_only_loss": False}, None),
        ("messages", msgs, {}, "smollm2"),
        ("messages_assistant_only", msgs, {"assistant_only_loss": True}, "chatml_training"),
        ("conv_prompt_completion", cpc, {}, "smollm2"),
        ("conv_prompt_completion_assistant_only", cpc, {"assistant_only_loss": True}, "chatml_training"),
        ("conv_prompt_completion_full_loss", cpc, {"completion_only_loss": False}, "smollm2"),
    ]


def prepare(tok, records, kw, tmpl, tmp):
    tok.chat_template = template(tmpl) if tmpl else None
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256)
    model = LlamaForCausalLM(cfg)
    args = SFTConfig(output_dir=tmp, report_to=[], max_length=1024, dataset_num_proc=None, bf16=False, use_cpu=True, **kw)
    tr = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(records), processing_class=tok)
    ds = tr.train_dataset
    return [{"input_ids": list(map(int, r["input_ids"])), "labels": list(map(int, r["labels"]))} for r in ds]


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    chat = chat_tokenizer(os.path.join(OUT, "chat_tok"))
    out = {"trl": trl.__version__, "cases": []}
    with tempfile.TemporaryDirectory() as tmp:
        for tname, tok in (("chat_tok", chat), ("llama", llama_tokenizer())):
            for name, records, kw, tmpl in cases(tok.eos_token):
                ex = prepare(tok, records, kw, tmpl, tmp)
                out["cases"].append({"name": name, "tokenizer": tname, "template": tmpl, "records": records,
                                     "assistant_only_loss": kw.get("assistant_only_loss", False),
                                     "completion_only_loss": kw.get("completion_only_loss", True),
                                     "examples": ex})
    # a tiny Llama on the BPE tokenizer, with SmolLM2's template: cpeft generate --chat
    torch.manual_seed(0)
    mdir = os.path.join(OUT, "tiny_chat_model")
    cfg = LlamaConfig(vocab_size=len(chat), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      bos_token_id=chat.bos_token_id, eos_token_id=chat.eos_token_id, pad_token_id=chat.pad_token_id,
                      tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).eval()
    model.save_pretrained(mdir, safe_serialization=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(OUT, "chat_tok", f), mdir)
    chat.chat_template = template("smollm2")
    gen = []
    for msgs in ([U1], [S, U1, A1, U2]):
        ids = chat.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        with torch.no_grad():
            o = model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False, eos_token_id=chat.eos_token_id,
                               pad_token_id=chat.pad_token_id)
        gen.append({"messages": msgs, "prompt_ids": ids, "new_ids": o[0, len(ids):].tolist(),
                    "rendered": chat.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)})
    out["generate"] = gen
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(out, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
