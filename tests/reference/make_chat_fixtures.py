"""Chat template fixtures: every template under tests/fixtures/chat/templates rendered by transformers'
apply_chat_template machinery (jinja2 with transformers' environment) on multi-turn conversations,
with and without add_generation_prompt; the {% generation %} spans (return_assistant_tokens_mask's
character indices, written as byte offsets); the token ids of each rendering with the llama fixture
tokenizer (add_special_tokens=False, as apply_chat_template(tokenize=True)); or the error a template
raises. Writes tests/fixtures/chat/cases.json. Deterministic."""
import json, os, sys
from transformers.utils.chat_template_utils import render_jinja_template
from transformers import PreTrainedTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures", "chat")
TOK = PreTrainedTokenizerFast(tokenizer_file=os.path.join(HERE, "..", "fixtures", "tokenizers", "llama", "tokenizer.json"))

S = {"role": "system", "content": "You are a terse assistant. Answer in one line."}
U1 = {"role": "user", "content": "  What is 2 + 2?\n"}
A1 = {"role": "assistant", "content": "It is 4."}
U2 = {"role": "user", "content": "And in French? Use «guillemets» — please. 日本語 too"}
A2 = {"role": "assistant", "content": "Quatre, « quatre ».  "}
U3 = {"role": "user", "content": "Thanks!"}
THINK = {"role": "assistant", "content": "<think>\nadd them\n</think>\n\nFour."}
CONVS = {
    "user": [U1],
    "user_assistant": [U1, A1],
    "multi": [U1, A1, U2, A2, U3],
    "system_multi": [S, U1, A1, U2, A2],
    "system_multi_user": [S, U1, A1, U2, A2, U3],
    "think": [U1, THINK, U2, A2, U3],
    "alternation_broken": [U1, U2],
}
FAMILY_TOKENS = {  # bos, eos as each family's tokenizer_config.json has them
    "chatml": ("<|im_start|>", "<|im_end|>"), "chatml_training": ("<|im_start|>", "<|im_end|>"),
    "smollm2": ("<|im_start|>", "<|im_end|>"),
    "qwen2_5": (None, "<|im_end|>"), "qwen3": (None, "<|im_end|>"), "qwen3_training": (None, "<|im_end|>"),
    "llama2": ("<s>", "</s>"), "mistral": ("<s>", "</s>"),
    "llama3": ("<|begin_of_text|>", "<|eot_id|>"), "llama3_1": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama3_training": ("<|begin_of_text|>", "<|eot_id|>"),
    "gemma": ("<bos>", "<eos>"), "phi3": ("<s>", "<|endoftext|>"), "phi3_5": ("<s>", "<|endoftext|>"),
}


def byte_off(text, i):
    return len(text[:i].encode("utf-8"))


def main():
    cases = []
    for name in sorted(FAMILY_TOKENS):
        tmpl = open(os.path.join(FIX, "templates", name + ".jinja"), encoding="utf-8").read()
        bos, eos = FAMILY_TOKENS[name]
        for conv_name, conv in CONVS.items():
            for agp in (False, True):
                extras = [None]
                if name.startswith("qwen3"):
                    extras.append({"enable_thinking": False})
                for extra in extras:
                    kw = dict(extra or {})
                    if bos is not None: kw["bos_token"] = bos
                    if eos is not None: kw["eos_token"] = eos
                    case = {"template": name, "conversation": conv_name, "add_generation_prompt": agp,
                            "bos_token": bos, "eos_token": eos, "extra": extra or {}}
                    try:
                        rendered, gen = render_jinja_template(conversations=[conv], chat_template=tmpl,
                                                              add_generation_prompt=agp,
                                                              return_assistant_tokens_mask="{% generation" in tmpl, **kw)
                        text = rendered[0]
                        case["text"] = text
                        case["spans"] = [[byte_off(text, s), byte_off(text, e)] for s, e in (gen[0] if gen else [])]
                        if conv_name in ("multi", "system_multi_user"):
                            case["ids"] = TOK(text, add_special_tokens=False)["input_ids"]
                    except Exception as e:
                        case["error"] = str(e)
                    cases.append(case)
    out = {"conversations": CONVS, "cases": cases}
    with open(os.path.join(FIX, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"{len(cases)} cases, {sum('error' in c for c in cases)} errors")


if __name__ == "__main__":
    main()
