"""cpeft serve checked with the official `openai` Python client (never part of `make test`).

Starts `build/cpeft serve` on the tiny chat model with two random LoRA adapters (made with
`cpeft adapter init`), then through openai.OpenAI(base_url=...): models.list() names the base and both
adapters; completions.create and chat.completions.create (greedy) give exactly what
`cpeft generate --adapter` / `--chat` give; stream=True yields chunks whose text adds up to the same;
an unknown model raises openai.NotFoundError; SIGTERM ends the server with status 0.

    tests/reference/.venv/bin/python tests/reference/check_serve_openai.py   (from the repository root)
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import openai

MODEL = "tests/fixtures/sft/tiny_chat_model"
BIN = "build/cpeft"


def generate(*args):
    out = subprocess.run([BIN, "generate", "--model", MODEL, *args, "--json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[0])["text"]


def main():
    tmp = tempfile.mkdtemp(prefix="cpeft-openai-")
    cfg = os.path.join(tmp, "lora.json")
    with open(cfg, "w") as f:
        json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 4, "lora_alpha": 8,
                   "target_modules": ["q_proj", "v_proj", "o_proj", "down_proj"], "init_lora_weights": False}, f)
    for i in (1, 2):
        subprocess.run([BIN, "adapter", "init", "--model", MODEL, "--peft-config", cfg, "--out", f"{tmp}/a{i}", "--seed", str(i)],
                       check=True, capture_output=True)
    log = open(os.path.join(tmp, "serve.log"), "w+")
    server = subprocess.Popen([BIN, "serve", "--model", MODEL, "--adapter", f"{tmp}/a1", "--adapter", f"{tmp}/a2", "--port", "0"],
                              stderr=log, stdout=subprocess.DEVNULL)
    port = None
    for _ in range(200):
        time.sleep(0.05)
        log.seek(0)
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", log.read())
        if m:
            port = int(m.group(1))
            break
    assert port, "the server did not start"
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none")
    results = []
    try:
        ids = sorted(m.id for m in client.models.list())
        assert ids == ["a1", "a2", "tiny_chat_model"], ids
        results.append(f"models.list: {ids}")
        for name in ("a1", "a2", "tiny_chat_model"):
            adapter = [] if name == "tiny_chat_model" else ["--adapter", f"{tmp}/{name}"]
            r = client.completions.create(model=name, prompt="Hello there", max_tokens=16, temperature=0)
            want = generate(*adapter, "--prompt", "Hello there", "--max-new-tokens", "16")
            assert r.choices[0].text == want, (name, r.choices[0].text, want)
            assert r.usage.completion_tokens == 16, r.usage
            c = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "What is 2 + 2?"}], max_tokens=10,
                                               temperature=0)
            want_chat = generate(*adapter, "--user", "What is 2 + 2?", "--max-new-tokens", "10")
            assert c.choices[0].message.content == want_chat, (name, c.choices[0].message.content, want_chat)
            s = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "What is 2 + 2?"}], max_tokens=10,
                                               temperature=0, stream=True)
            text, n = "", 0
            for chunk in s:
                n += 1
                if chunk.choices and chunk.choices[0].delta.content:
                    text += chunk.choices[0].delta.content
            assert text == want_chat, (name, text, want_chat)
            st = client.completions.create(model=name, prompt="Hello there", max_tokens=16, temperature=0, stream=True)
            text = "".join(ch.choices[0].text for ch in st if ch.choices)
            assert text == want, (name, text, want)
            results.append(f"{name}: completion, chat and both streams ({n} chunks) equal to cpeft generate")
        try:
            client.completions.create(model="nope", prompt="x", max_tokens=1)
            raise AssertionError("no error for an unknown model")
        except openai.NotFoundError as e:
            results.append(f"unknown model: NotFoundError ({e.status_code})")
    finally:
        server.send_signal(signal.SIGTERM)
        rc = server.wait(timeout=30)
    assert rc == 0, rc
    results.append("SIGTERM: exit 0")
    print(f"openai {openai.__version__}:")
    for r in results:
        print("  " + r)
    print("check_serve_openai: ok")


if __name__ == "__main__":
    sys.exit(main())
