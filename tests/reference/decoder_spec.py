"""What a decoder architecture's parity fixtures are made from (tests/reference/make_decoder_fixtures.py).

Each family of decoders lists its tiny models in tests/reference/decoders/<family>.py as

    from decoder_spec import DecoderSpec, LoraCase
    SPECS = [DecoderSpec(...), ...]

and `make_decoder_fixtures.py` writes tests/fixtures/decoders/<spec.name>/ for each, which
tests/parity/test_decoders.c checks against cpeft without knowing the architecture. Adding an
architecture's fixtures therefore touches no shared file.

One spec = one tiny random model (transformers' own class, f32, eager attention, every 1-D parameter
perturbed so that a wrong norm weight or a dropped bias shows) and the checks it gets:
  forward     logits and loss, a full batch with one left-padded row and one right-padded row
  info        num_parameters, the model repr (`--tree`), the class name
  lora        per LoraCase: PEFT's adapter files (B perturbed away from 0), loss, every LoRA gradient,
              logits with the adapter, PEFT's print_trainable_parameters line
  steps       10 AdamW steps (warmup + linear decay, accumulation 2, clipping) with the first LoRA
              case: losses, grad norms, learning rates, final adapter tensors
  generate    greedy generation (KV cache) of two left-padded prompts, base and with the first LoRA
              adapter
  ia3         PEFT's default IA3 targets: adapter, logits, gradients
  prompt      prompt tuning (8 virtual tokens, RANDOM init) and prefix tuning (4 virtual tokens):
              logits and gradients
  seq_cls     <Prefix>ForSequenceClassification (score head, pad_token_id set) with LoRA (task
              SEQ_CLS, score in modules_to_save): logits, loss and gradients
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LoraCase:
    name: str                     # fixture subdirectory lora/<name>
    config: dict                  # LoraConfig keyword arguments (target_modules=None: PEFT's default table)
    desc: str = ""


@dataclass
class DecoderSpec:
    name: str                     # tests/fixtures/decoders/<name>
    model_type: str               # transformers' model_type: AutoConfig.for_model(model_type, **config)
    config: dict                  # config.json keys (keep it tiny: hidden 16-32, 2 layers, vocab ~61-97)
    desc: str                     # what this spec exercises (which config switches)
    seed: int                     # weights and inputs are functions of the seed alone
    lora: list[LoraCase] = field(default_factory=lambda: [
        LoraCase("default", dict(target_modules=None, r=4, lora_alpha=8), "PEFT's default targets for the type"),
        LoraCase("all_linear", dict(target_modules="all-linear", r=2, lora_alpha=4), "all-linear, r=2 alpha=4"),
    ])
    T: int = 11                   # sequence length of the forward / gradient batches
    steps: bool = True            # 10 AdamW steps with lora[0]
    generate: bool = True         # greedy generation with the KV cache
    ia3: bool = True              # PEFT's default IA3 targets for the type
    prompt: bool = True           # prompt tuning and prefix tuning
    seq_cls: bool = True          # <Prefix>ForSequenceClassification with LoRA
