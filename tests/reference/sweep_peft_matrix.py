"""PEFT's LoRA test matrix against cpeft, in both directions, on the tiny models of tests/fixtures.

    tests/reference/.venv/bin/python tests/reference/sweep_peft_matrix.py \
        --cpeft build/cpeft --driver build/sweep/sweep_logits [--only 'llama_*'] [--keep DIR] [-v]
    (or: make sweep)

What it is: a rerunnable check, not a fixture generator. Nothing is written under tests/; each case works in a
temporary directory. The cases (CASES below) are the LoRA configurations of PEFT's own tests
(tests/test_decoder_models.py ALL_CONFIGS, tests/test_custom_models.py TEST_CASES and
MULTIPLE_ACTIVE_ADAPTERS_TEST_CASES, tests/test_config.py; huggingface/peft), with their custom-model targets
(lin0, lin1, emb, conv1d) mapped onto the modules of tiny GPT-2, GPT-Neo, Llama, Mistral and Qwen2 models,
plus every LoraConfig field cpeft reads (target_modules forms, r / alpha / rsLoRA, rank_pattern and
alpha_pattern, layers_to_transform with layers_pattern as a name, a list or a path, exclude_modules, bias,
modules_to_save, fan_in_fan_out, init_lora_weights, lora_dropout, task_type, save_embedding_layers,
ensure_weight_tying) and the variants cpeft refuses (DoRA, aLoRA, KaSA, VeLoRA, ... and inits such as PiSSA).

Per case, direction (i) PEFT -> cpeft: get_peft_model on the tiny model, trainable tensors perturbed as
oracle_lora.py does (so that zero-initialised lora_B, biases and modules_to_save copies matter), save_pretrained;
then PeftModel.from_pretrained of that directory is the reference for
    i.logits / i.loss / i.merged   sweep_logits (the C driver beside this file): logits and loss with the adapter
                                   active, and logits after merge_adapter(), against PEFT's
    i.eval                         `cpeft eval --data-ids` loss on an unpadded row against PEFT's loss
    i.info                         `cpeft info --adapter --tree --peft-format current`: print_trainable_parameters()
                                   of the loaded model, the adapter's own count (is_trainable=True) and the repr
    i.merge                        `cpeft merge` loaded by AutoModelForCausalLM against merge_and_unload()
Direction (ii) cpeft -> PEFT: the same LoraConfig written as adapter_config.json, `cpeft adapter init` (lora_B
random: init_lora_weights false unless the case sets it) and, on models with the 97-token character tokenizer,
a 2-step `cpeft train`; PeftModel.from_pretrained of each is the reference for
    ii.* (init) and iit.* (trained)   logits, loss, merged, eval, info (init only) and merge, as above
    ii.<name>.files / iit.files       the adapter_config.json cpeft wrote (lists compared sorted) and its tensor
                                      names, dtypes and shapes against get_peft_model + save_pretrained of the file
Cases cpeft refuses: every cpeft command given PEFT's adapter (driver, eval, info, merge) and `cpeft adapter init`
must exit 1 with a message naming the option (REFUSED-as-expected); a crash or another exit status fails.

Tolerance 2e-5 on logits (real tokens only) and losses: max |cpeft - PEFT| <= 2e-5 * max(1, max |PEFT|)
(relative where the reference logits exceed 1: see real_diff); the printed numbers are max absolute differences.
Prints one line per case and a summary "N passed, N failed"; exits 1 when a case failed.
About two minutes on two loaded cores.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402

from oracle_common import load_tensors, save_tensors  # noqa: E402
from oracle_lora import counts, lora_inputs, name_seed, perturb_trainables  # noqa: E402

FIXTURES = os.path.normpath(os.path.join(HERE, "..", "fixtures"))
TOL = 2e-5
EVAL_T = 16                                   # unpadded row for `cpeft eval` (≤ every model's positions)
CHAR_TOKENIZER = os.path.join(FIXTURES, "generate", "char_tokenizer")   # 97 tokens: trains the V=97 models

MODELS = {   # short name -> directory under tests/fixtures
    "gpt2": "models/gpt2_tiny", "gpt2_untied": "models/gpt2_untied", "gpt2_odd": "models/gpt2_odd",
    "gpt2_bf16": "models/gpt2_tiny_bf16", "neo": "models/gpt_neo_tiny", "neo_odd": "models/gpt_neo_odd",
    "neo_f16": "models/gpt_neo_tiny_f16", "llama": "llama/models/llama_tiny", "llama_bias": "llama/models/llama_bias",
    "llama_tied": "llama/models/llama_tied_linear_rope", "mistral": "llama/models/mistral_tiny",
    "qwen2": "llama/models/qwen2_tiny", "qwen2_sliding": "llama/models/qwen2_sliding",
    "qwen2_layer_types": "llama/models/qwen2_layer_types", "llama3_rope": "llama/models/llama3_rope",
    "llama_head_dim": "llama/models/llama_head_dim", "llama_dynamic_rope": "llama/models/llama_dynamic_rope",
}


@dataclass
class Case:
    name: str
    model: str                          # key of MODELS
    kw: dict                            # LoraConfig kwargs; task_type CAUSAL_LM unless given (None: no task_type)
    source: str                         # where in PEFT's tests the configuration comes from
    refuse: str | None = None           # cpeft must refuse it, naming this option
    save_kw: dict = field(default_factory=dict)   # save_pretrained kwargs (save_embedding_layers)
    second: dict | None = None          # a second adapter "b" (kw), both active (multi-adapter cases)
    peft_error: bool = False            # PEFT itself refuses it: only `cpeft adapter init` runs (must refuse)
    raw: bool = False                   # direction (ii) gets only the given keys, not PEFT's complete file: defaults


def _kasa():
    from peft.tuners.lora.config import KasaConfig
    return KasaConfig()


def _velora():
    from peft.tuners.lora.config import VeloraConfig
    return VeloraConfig(num_groups=2, init_type="random")


def _monteclora():
    from peft.tuners.lora.config import MontecloraConfig
    return MontecloraConfig(num_samples=2)


def _eva():
    from peft.tuners.lora.config import EvaConfig
    return EvaConfig()


def _corda():
    from peft.tuners.lora.config import CordaConfig
    return CordaConfig()


def _bdlora():
    from peft.tuners.lora.config import BdLoraConfig
    return BdLoraConfig(target_modules_bd_a=["q_proj"], nblocks=2, match_strict=False)


QWEN2_3L_LINEAR = [f"model.layers.{i}.{m}" for i in range(3) for m in (
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
    "mlp.down_proj")]
DEC = dict(r=8, lora_alpha=32, target_modules=None, lora_dropout=0.05, bias="none")   # test_decoder_models' LoRA
TDM, TCM, TCFG, TMA = ("test_decoder_models ALL_CONFIGS", "test_custom_models TEST_CASES", "test_config",
                       "test_custom_models MULTIPLE_ACTIVE_ADAPTERS_TEST_CASES")
FIELD = "LoraConfig field"
SEL = TDM + " (save_embedding_layers)"

CASES = [
    # test_decoder_models.py: the LoRA entries of ALL_CONFIGS, on each architecture
    *[Case(f"dec_default_{m}", m, dict(DEC), TDM) for m in ("gpt2", "neo", "llama", "mistral", "qwen2")],
    Case("dec_alora_llama", "llama", dict(DEC, alora_invocation_tokens=[1]), TDM, refuse="alora_invocation_tokens"),
    Case("dec_trainable_tokens_llama", "llama", dict(DEC, trainable_token_indices=[0, 1, 3]), TDM,
         refuse="trainable_token_indices"),
    # test_custom_models.py TEST_CASES, LoRA: lin0 -> an attention projection, lin1 -> an MLP projection,
    # emb -> the input embedding, conv1d -> GPT-2's Conv1D c_attn
    Case("mlp1_regex_string_neo", "neo", dict(target_modules=r".*q_proj"), TCM),
    Case("mlp2_list_lin0_llama", "llama", dict(target_modules=["q_proj"]), TCM),
    Case("mlp3_list_lin1_llama", "llama", dict(target_modules=["down_proj"]), TCM),
    Case("mlp4_lin0_lin1_qwen2", "qwen2", dict(target_modules=["q_proj", "gate_proj"]), TCM),
    Case("mlp5_mts_lin1_neo", "neo", dict(target_modules=["q_proj"], modules_to_save=["c_fc"]), TCM),
    Case("mlp5_mts_lin1_mistral", "mistral", dict(target_modules=["q_proj"], modules_to_save=["up_proj"]), TCM),
    Case("mlp6_alpha_dropout_gpt2", "gpt2", dict(target_modules=["c_attn"], lora_alpha=4, lora_dropout=0.1), TCM),
    Case("glora6_target_and_mts_llama", "llama", dict(target_modules=["q_proj", "v_proj"], modules_to_save=["v_proj"]),
         TCM + " (GLoRA 6 layout)"),
    Case("mlp7_dora_llama", "llama", dict(target_modules=["q_proj"], use_dora=True), TCM, refuse="use_dora"),
    Case("mlp9_dora_regex_neo", "neo", dict(target_modules=r".*v_proj", use_dora=True, lora_alpha=32), TCM,
         refuse="use_dora"),
    Case("mlp_kasa_llama", "llama", dict(target_modules=["q_proj"], kasa_config=_kasa, r=4), TCM, refuse="kasa_config"),
    Case("mlp_mica_llama", "llama", dict(target_modules=["q_proj"], init_lora_weights="mica", r=4), TCM,
         refuse="init_lora_weights"),
    Case("mlp10_velora_llama", "llama", dict(target_modules=["q_proj"], velora_config=_velora), TCM,
         refuse="velora_config"),
    Case("emb_conv1d_1_gpt2", "gpt2", dict(target_modules=["c_attn"]), TCM),
    Case("emb_conv1d_2_gpt2", "gpt2", dict(target_modules=["wte"]), TCM),
    Case("emb_conv1d_3_gpt2", "gpt2", dict(target_modules=["wte", "c_attn"]), TCM),
    Case("emb_conv1d_3_untied_gpt2", "gpt2_untied", dict(target_modules=["wte", "c_attn"]), TCM),
    Case("emb_conv1d_dora_gpt2", "gpt2", dict(target_modules=["c_attn"], use_dora=True), TCM, refuse="use_dora"),
    Case("emb_dora_llama", "llama", dict(target_modules=["embed_tokens"], use_dora=True), TCM, refuse="use_dora"),
    Case("emb_conv1d_trainable_tokens_gpt2", "gpt2",
         dict(target_modules=["c_attn"], trainable_token_indices={"wte": [0, 10]}),
         TCM, refuse="trainable_token_indices"),
    Case("mlp_lora_bias_llama", "llama", dict(target_modules=["q_proj", "down_proj"], lora_bias=True, lora_alpha=32),
         TCM,
         refuse="lora_bias"),
    Case("mlp_target_parameters_llama", "llama",
         dict(target_modules=["q_proj"], target_parameters=["mlp.down_proj.weight"]),
         TCM, refuse="target_parameters"),
    Case("mlp_monteclora_llama", "llama", dict(target_modules=["q_proj"], monteclora_config=_monteclora), TCM,
         refuse="monteclora_config"),
    Case("mlp_bdlora_llama", "llama", dict(target_modules=["q_proj", "v_proj"], use_bdlora=_bdlora), TCM,
         refuse="use_bdlora"),
    # MULTIPLE_ACTIVE_ADAPTERS_TEST_CASES: two adapters, both active
    Case("multi_same_neo", "neo", dict(target_modules=["q_proj"], init_lora_weights=False), TMA,
         second=dict(target_modules=["q_proj"], init_lora_weights=False, lora_alpha=16)),
    Case("multi_different_llama", "llama", dict(target_modules=["q_proj"], init_lora_weights=False), TMA,
         second=dict(target_modules=["down_proj"], init_lora_weights=False)),
    Case("multi_mixed_rank_gpt2", "gpt2", dict(target_modules=["c_attn"], init_lora_weights=False), TMA + " (mixed)",
         second=dict(target_modules=["c_attn"], r=16, init_lora_weights=False)),
    # target_modules forms
    *[Case(f"all_linear_{m}", m, dict(target_modules="all-linear", r=2, lora_alpha=4), FIELD)
      for m in ("neo", "llama", "mistral", "qwen2", "llama_tied", "gpt2_untied")],
    Case("regex_layers_llama", "llama",
         dict(target_modules=r"model\.layers\.1\.(self_attn\.(q|v)_proj|mlp\.up_proj)"), FIELD),
    Case("regex_embed_llama", "llama", dict(target_modules=r".*\.embed_tokens", init_lora_weights=False), TDM +
         " (targeting_lora_to_embedding_layer)"),
    Case("list_embed_lin0_llama", "llama", dict(target_modules=["q_proj", "embed_tokens"], init_lora_weights=False),
         TDM +
         " (targeting_lora_to_embedding_layer)"),
    Case("multi_part_suffix_gpt2", "gpt2", dict(target_modules=["mlp.c_proj", "attn.c_attn"]), FIELD),
    # r, alpha, rsLoRA, patterns
    Case("r1_alpha_float_llama", "llama", dict(target_modules=["q_proj", "k_proj"], r=1, lora_alpha=0.5), FIELD),
    Case("rslora_qwen2", "qwen2", dict(target_modules=["q_proj", "o_proj"], r=4, lora_alpha=8, use_rslora=True), FIELD),
    Case("rank_alpha_pattern_llama", "llama",
         dict(target_modules=["q_proj", "v_proj", "o_proj"], r=4, lora_alpha=8,
              rank_pattern={"q_proj": 2, r"layers\.1\.self_attn\.v_proj": 6}, alpha_pattern={"o_proj": 3}), FIELD),
    Case("rank_pattern_fullpath_gpt2", "gpt2",
         dict(target_modules=["c_attn", "c_proj"], r=2, lora_alpha=4, rank_pattern={"transformer.h.0.attn.c_attn": 3},
              alpha_pattern={"mlp.c_proj": 1}), FIELD),
    Case("rank_pattern_rslora_neo", "neo",
         dict(target_modules=["q_proj", "v_proj"], r=4, lora_alpha=8, use_rslora=True, rank_pattern={"v_proj": 2}),
         FIELD),
    # layers_to_transform / layers_pattern
    Case("layers_int_neo", "neo", dict(target_modules=["q_proj", "v_proj"], layers_to_transform=1), TCFG),
    Case("layers_zero_pattern_llama", "llama",
         dict(target_modules=["q_proj"], layers_to_transform=0, layers_pattern="layers"),
         TCFG + " (layers_to_transform_index_zero)"),
    Case("layers_list_pattern_str_llama", "llama",
         dict(target_modules=["q_proj", "up_proj"], layers_to_transform=[1], layers_pattern="layers"), TCFG),
    Case("layers_list_pattern_list_mistral", "mistral",
         dict(target_modules=["k_proj"], layers_to_transform=[0], layers_pattern=["layers"]), TCFG),
    Case("layers_pattern_path_qwen2", "qwen2",
         dict(target_modules=["q_proj", "v_proj"], layers_to_transform=[0, 1], layers_pattern="model.layers"), TCFG),
    Case("layers_pattern_h_gpt2", "gpt2",
         dict(target_modules=["c_attn", "c_fc"], layers_to_transform=[1], layers_pattern="h"),
         TCFG),
    Case("layers_pattern_list_neo", "neo",
         dict(target_modules=["out_proj"], layers_to_transform=[0, 2], layers_pattern=["h"]),
         TCFG),
    # exclude_modules
    Case("exclude_list_llama", "llama",
         dict(target_modules=["q_proj", "k_proj"], exclude_modules=["layers.0.self_attn.k_proj"]), FIELD),
    Case("exclude_regex_neo", "neo", dict(target_modules=["q_proj", "v_proj"], exclude_modules=r".*\.h\.1\..*"), FIELD),
    # bias
    Case("bias_all_llama_bias", "llama_bias", dict(target_modules=["q_proj", "o_proj"], bias="all"), FIELD),
    Case("bias_lora_only_qwen2", "qwen2", dict(target_modules=["q_proj", "k_proj"], bias="lora_only"), FIELD),
    Case("bias_all_gpt2", "gpt2", dict(target_modules=["c_attn"], bias="all"), FIELD),
    Case("bias_lora_only_neo", "neo", dict(target_modules=["out_proj", "c_fc"], bias="lora_only"), FIELD),
    Case("bias_lora_only_qwen2_sliding", "qwen2_sliding", dict(target_modules="all-linear", r=2, lora_alpha=4,
                                                                bias="lora_only"), FIELD),
    # fan_in_fan_out, init, dropout
    Case("fan_in_fan_out_gpt2", "gpt2", dict(target_modules=["c_attn", "c_fc"], fan_in_fan_out=True), FIELD),
    Case("fan_in_fan_out_linear_llama", "llama", dict(target_modules=["q_proj"], fan_in_fan_out=True), FIELD),
    Case("init_false_mistral", "mistral", dict(target_modules=["q_proj", "v_proj"], init_lora_weights=False), FIELD),
    Case("init_gaussian_llama", "llama", dict(target_modules=["q_proj", "v_proj"], init_lora_weights="gaussian"),
         FIELD),
    *[Case(f"init_{i}_llama", "llama", dict(target_modules=["q_proj"], init_lora_weights=i), FIELD,
           refuse="init_lora_weights")
      for i in ("pissa", "pissa_niter_2", "olora", "orthogonal")],
    Case("dropout_neo", "neo", dict(target_modules=["k_proj"], lora_dropout=0.3), FIELD),
    # task_type not given: auto_mapping
    *[Case(f"no_task_type_{m}", m, dict(target_modules=t, task_type=None), FIELD)
      for m, t in (("llama", ["v_proj"]), ("gpt2", ["c_proj"]), ("neo", ["c_fc"]), ("qwen2", ["up_proj"]))],
    # embeddings and save_embedding_layers
    Case("save_emb_auto_llama", "llama", dict(target_modules=["embed_tokens", "q_proj"]), SEL),
    Case("save_emb_true_mistral", "mistral", dict(target_modules=["embed_tokens", "v_proj"]), SEL,
         save_kw=dict(save_embedding_layers=True)),
    Case("save_emb_false_qwen2", "qwen2", dict(target_modules=["embed_tokens", "q_proj"]), SEL,
         save_kw=dict(save_embedding_layers=False)),
    Case("save_emb_true_untargeted_llama", "llama", dict(target_modules=["q_proj"]), SEL,
         save_kw=dict(save_embedding_layers=True)),
    Case("lm_head_tied_qwen2", "qwen2", dict(target_modules=["lm_head", "q_proj"]), FIELD),
    Case("lm_head_untied_llama", "llama", dict(target_modules=["lm_head"]), FIELD),
    Case("mts_lm_head_llama", "llama", dict(target_modules=["q_proj"], modules_to_save=["lm_head"]), FIELD),
    Case("mts_embed_tied_qwen2", "qwen2", dict(target_modules=["v_proj"], modules_to_save=["embed_tokens"]), FIELD),
    Case("mts_norm_llama", "llama", dict(target_modules=["q_proj"], modules_to_save=["norm"]), FIELD),
    Case("ensure_weight_tying_qwen2", "qwen2",
         dict(target_modules=["embed_tokens", "q_proj"], ensure_weight_tying=True), FIELD,
         refuse="ensure_weight_tying"),
    Case("ensure_weight_tying_untied_llama", "llama",
         dict(target_modules=["embed_tokens", "q_proj"], ensure_weight_tying=True),
         FIELD),
    Case("layer_replication_llama", "llama", dict(target_modules=["q_proj"], layer_replication=[[0, 1], [0, 2]]), TDM +
         " (lora_layer_replication)", refuse="layer_replication"),
    # other checkpoints: half-precision bases (cpeft keeps their matrices 16-bit and computes in f32; merging
    # widens what it writes, merged checkpoints keep the dtype),
    # odd shapes, RoPE variants, grouped-query attention, sliding and full layers
    Case("bf16_base_gpt2", "gpt2_bf16", dict(target_modules=["c_attn", "c_fc"]), FIELD),
    Case("f16_base_neo", "neo_f16", dict(target_modules=["q_proj", "v_proj"]), FIELD),
    Case("odd_shapes_neo", "neo_odd", dict(target_modules=["q_proj", "c_proj"], r=3, lora_alpha=5), FIELD),
    Case("odd_shapes_gpt2", "gpt2_odd", dict(target_modules=["c_fc", "c_proj"], r=3, lora_alpha=7), FIELD),
    Case("llama3_rope_all_linear", "llama3_rope", dict(target_modules="all-linear", r=2, lora_alpha=4), FIELD),
    Case("head_dim_qkvo_llama", "llama_head_dim", dict(target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]), FIELD),
    Case("layer_types_qv_qwen2", "qwen2_layer_types", dict(target_modules=["q_proj", "v_proj"]), FIELD),
    Case("dynamic_rope_qk_llama", "llama_dynamic_rope", dict(target_modules=["q_proj", "k_proj"]), FIELD),
    # corners of the matching rules and of the other fields
    Case("exact_name_bypasses_layers_llama", "llama",
         dict(target_modules=["model.layers.0.self_attn.q_proj", "v_proj"], layers_to_transform=[1]), FIELD),
    Case("many_names_shortened_qwen2", "qwen2_layer_types", dict(target_modules=QWEN2_3L_LINEAR, r=2, lora_alpha=4),
         FIELD + " (>= 20 names: matched and saved as minimal suffixes)"),
    Case("many_names_layer_filter_qwen2", "qwen2_layer_types",
         dict(target_modules=QWEN2_3L_LINEAR, layers_to_transform=[1], r=2, lora_alpha=4),
         FIELD + " (shortened names go through the layer filter that exact names skip)"),
    Case("few_names_layer_filter_skipped_llama", "llama",
         dict(target_modules=[n for n in QWEN2_3L_LINEAR if ".2." not in n], layers_to_transform=[1], r=2,
              lora_alpha=4),
         FIELD + " (14 exact names: the layer filter does not apply)"),
    Case("all_linear_excluded_qwen2", "qwen2_layer_types",
         dict(target_modules="all-linear", exclude_modules=["layers.0.self_attn.k_proj"], r=2, lora_alpha=4), FIELD),
    Case("duplicate_names_neo", "neo", dict(target_modules=["q_proj", "v_proj", "q_proj"], lora_alpha=16), FIELD,
         raw=True),
    Case("fan_in_fan_out_false_conv1d_gpt2", "gpt2", dict(target_modules=["c_attn"], fan_in_fan_out=False), FIELD),
    Case("mts_whole_mlp_llama", "llama", dict(target_modules=["q_proj"], modules_to_save=["mlp"]), FIELD),
    Case("mts_whole_mlp_gpt2", "gpt2", dict(target_modules=["c_attn"], modules_to_save=["mlp"]), FIELD),
    Case("mts_lm_head_wte_target_gpt2", "gpt2", dict(target_modules=["wte", "c_attn"], modules_to_save=["lm_head"]),
         FIELD),
    Case("alpha_pattern_regex_float_llama", "llama",
         dict(target_modules=["q_proj", "v_proj", "gate_proj"], alpha_pattern={r"self_attn\.(q|v)_proj": 2.5}), FIELD),
    Case("rank_pattern_untargeted_key_neo", "neo", dict(target_modules=["q_proj"], rank_pattern={"c_fc": 2}), FIELD),
    Case("r_above_width_llama", "llama", dict(target_modules=["q_proj", "down_proj"], r=48, lora_alpha=16), FIELD),
    Case("layers_pattern_two_names_neo", "neo",
         dict(target_modules=["q_proj"], layers_to_transform=[1], layers_pattern=["layers", "h"]), TCFG),
    Case("exclude_full_name_gpt2", "gpt2",
         dict(target_modules=["c_attn", "c_proj"], exclude_modules=["transformer.h.1.mlp.c_proj"]), FIELD),
    Case("exclude_nothing_llama", "llama", dict(target_modules=["k_proj"], exclude_modules=["nonexistent"]), FIELD),
    *[Case(f"task_{t.lower()}_{m}", m, dict(target_modules=["q_proj"], task_type=t), FIELD) for t, m in (
        ("FEATURE_EXTRACTION", "llama"), ("QUESTION_ANS", "qwen2"), ("SEQ_CLS", "mistral"), ("TOKEN_CLS", "neo"),
        ("SEQ_2_SEQ_LM", "llama"))],
    Case("loftq_config_unused_llama", "llama", dict(target_modules=["q_proj"], loftq_config={"loftq_bits": 4}), FIELD),
    Case("eva_config_unused_llama", "llama", dict(target_modules=["v_proj"], eva_config=_eva), FIELD),
    Case("corda_config_unused_mistral", "mistral", dict(target_modules=["v_proj"], corda_config=_corda), FIELD),
    # configurations PEFT refuses: cpeft must refuse them too
    Case("err_target_not_found", "neo", dict(target_modules=["nonexistent"]), TCFG, refuse="nonexistent",
         peft_error=True),
    Case("err_layers_pattern_alone", "llama", dict(target_modules=["q_proj"], layers_pattern="layers"), TCFG,
         refuse="layers_to_transform", peft_error=True),
    Case("err_regex_nothing", "llama", dict(target_modules=r".*\.nothing_(here|there)"), TCFG, refuse="nothing_",
         peft_error=True),
    Case("err_regex_with_layers", "llama", dict(target_modules=r".*q_proj", layers_to_transform=[0]), TCFG,
         refuse="layers_to_transform", peft_error=True),
    Case("err_task_type", "llama", dict(target_modules=["q_proj"], task_type="CAUSAL"), TCFG, refuse="task type",
         peft_error=True),
    Case("err_r_zero", "gpt2", dict(target_modules=["c_attn"], r=0), TCFG, refuse="`r`", peft_error=True),
    Case("raw_minimal_config_neo", "neo", dict(target_modules=["q_proj", "c_fc"]), TCFG + " (from_pretrained defaults)",
         raw=True),
    Case("raw_minimal_default_targets_gpt2", "gpt2", dict(r=4), TCFG + " (from_pretrained defaults)", raw=True),
    Case("err_all_excluded", "llama", dict(target_modules=["q_proj"], exclude_modules=["q_proj"]), TCFG,
         refuse="No modules",
         peft_error=True),
]


# =================================================================================================
# helpers


def resolve(kw: dict) -> dict:
    """LoraConfig kwargs: nested configs are built here (their classes live in peft); task_type CAUSAL_LM by default."""
    out = {k: (v() if callable(v) else v) for k, v in kw.items()}
    out.setdefault("task_type", "CAUSAL_LM")
    if out["task_type"] is None:
        del out["task_type"]
    return out


def model_path(case: Case) -> str:
    return os.path.join(FIXTURES, MODELS[case.model])


def load_base(path: str):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()


def storage_dtype(path: str) -> torch.dtype:
    cfg = json.load(open(os.path.join(path, "config.json")))
    return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(cfg.get("dtype") or cfg.get("torch_dtype"),
                                                                       torch.float32)


@torch.no_grad()
def forward(model, inp: dict) -> tuple[torch.Tensor, float]:
    out = model(input_ids=inp["input_ids"], attention_mask=inp["attention_mask"], labels=inp["labels"], use_cache=False)
    return out.logits.float().clone(), float(out.loss)


@torch.no_grad()
def row_loss(model, ids: torch.Tensor) -> float:
    return float(model(input_ids=ids[None], labels=ids[None], use_cache=False).loss)


def real_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> tuple[float, bool]:
    """max |a - b| over real tokens, and whether it is within TOL * max(1, max |b|): 2e-5 absolute, relative to the
    largest reference logit where that exceeds 1. An f32 ulp at 126 is 7.6e-6: with a tied embedding delta merged
    into the shared weight, PEFT's own f32 logits are 3 ulps (2.3e-5 .. 3.1e-5) from float64 on every entry of the
    row, whatever the entry's own size."""
    keep = mask.bool()
    d = (a[keep] - b[keep]).abs().max().item()
    return d, d <= TOL * max(1.0, b[keep].abs().max().item())


def quiet():
    """Silences PEFT's and transformers' warnings and prints (recorded elsewhere: oracle_lora.py)."""
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    return stack


class Runner:
    """Runs one case; collects checks as (name, value, ok, detail)."""

    def __init__(self, args, case: Case, work: str):
        self.args, self.case, self.work = args, case, work
        self.base_dir = model_path(case)
        self.checks: list[tuple[str, float | None, bool, str]] = []
        self.notes: list[str] = []

    # ---- cpeft processes ----

    def cpeft(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.args.cpeft, *argv], capture_output=True, text=True, env=self.args.env)

    def driver(self, adapters: list[str], inputs_path: str, out: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.args.driver, self.base_dir, inputs_path, out, *adapters], capture_output=True,
                              text=True, env=self.args.env)

    def check(self, name: str, value: float | None, ok: bool, detail: str = "") -> None:
        self.checks.append((name, value, ok, detail))

    def num(self, name: str, got: float, want: float) -> None:
        d = abs(got - want)
        self.check(name, d, d <= TOL * max(1.0, abs(want)), f"{got:.7g} vs PEFT {want:.7g}")

    def proc_ok(self, name: str, p: subprocess.CompletedProcess) -> bool:
        if p.returncode != 0:
            self.check(name, None, False, f"exit {p.returncode}: {(p.stderr or p.stdout).strip()[-400:]}")
            return False
        return True

    # ---- shared pieces ----

    def inputs(self, vocab: int) -> tuple[dict, str, str, torch.Tensor]:
        inp = lora_inputs(self.case.model, vocab)
        labels = inp["input_ids"].clone()
        labels[inp["attention_mask"] == 0] = -100
        inp["labels"] = labels
        path = os.path.join(self.work, "inputs.safetensors")
        save_tensors(path, inp, {})
        gen = torch.Generator().manual_seed(name_seed("sweep", self.case.model, "row"))
        row = torch.randint(1, vocab, (EVAL_T,), generator=gen, dtype=torch.int64)
        ids_path = os.path.join(self.work, "row.ids.txt")
        with open(ids_path, "w") as f:
            f.write(" ".join(str(int(t)) for t in row) + "\n")
        return inp, path, ids_path, row

    def load_peft(self, dirs: list[tuple[str, str]], is_trainable: bool = False):
        from peft import PeftModel
        with quiet():
            pm = PeftModel.from_pretrained(load_base(self.base_dir), dirs[0][0], adapter_name=dirs[0][1],
                                           is_trainable=is_trainable)
            for d, n in dirs[1:]:
                pm.load_adapter(d, adapter_name=n)
            if len(dirs) > 1:
                pm.base_model.set_adapter([n for _, n in dirs])
        return pm.eval()

    def compare_adapter(self, tag: str, dirs: list[tuple[str, str]], inp: dict, inputs_path: str, ids_path: str,
                        row: torch.Tensor, info: bool) -> None:
        """PEFT loads `dirs` (all active) -> logits, loss, merged logits; cpeft must compute the same."""
        pm = self.load_peft(dirs)
        ref_logits, ref_loss = forward(pm, inp)
        ref_row = row_loss(pm, row)
        specs = [d if i == 0 and n == "default" else f"{d}:{n}" for i, (d, n) in enumerate(dirs)]
        # driver: logits, loss, merge_adapter
        out = os.path.join(self.work, f"{tag}.cpeft.safetensors")
        p = self.driver(specs, inputs_path, out)
        with quiet():
            pm.merge_adapter()
        merged_logits, merged_loss = forward(pm, inp)
        if self.proc_ok(f"{tag}.logits", p):
            t, _ = load_tensors(out)
            self.check(f"{tag}.logits", *real_diff(t["logits"], ref_logits, inp["attention_mask"]))
            self.num(f"{tag}.loss", float(t["loss"]), ref_loss)
            self.check(f"{tag}.merged", *real_diff(t["logits_merged"], merged_logits, inp["attention_mask"]))
        # cpeft eval
        adapter_args = [a for s in specs for a in ("--adapter", s)]
        p = self.cpeft("eval", "--model", self.base_dir, "--data-ids", ids_path, "--seq-len", str(EVAL_T), "--json",
                       *adapter_args)
        if self.proc_ok(f"{tag}.eval", p):
            self.num(f"{tag}.eval", json.loads(p.stdout)["loss"], ref_row)
        # cpeft merge -> transformers
        merged_dir = os.path.join(self.work, f"{tag}.merged")
        p = self.cpeft("merge", "--model", self.base_dir, *adapter_args, "--out", merged_dir)
        if self.proc_ok(f"{tag}.merge", p):
            from transformers import AutoModelForCausalLM
            with quiet():
                mm, load_info = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32,
                                                                     attn_implementation="eager",
                                                                     output_loading_info=True)
                ref = self.load_peft(dirs).merge_and_unload()
            dt = storage_dtype(self.base_dir)
            if dt != torch.float32:      # the checkpoint keeps the base dtype: PEFT's merged weights rounded to it
                with torch.no_grad():
                    for prm in ref.parameters():
                        prm.copy_(prm.to(dt).float())
            got, _ = forward(mm.eval(), inp)
            want, _ = forward(ref.eval(), inp)
            bad = {k: v for k, v in load_info.items()
                   if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
            d, ok = real_diff(got, want, inp["attention_mask"])
            note = f"transformers reports {bad}" if bad else ""
            if dt != torch.float32 and not ok:
                # Both sides round the f32 sum W + ΔW to the storage dtype once; ΔW = B·A·s summed in another
                # order moves an element across a rounding boundary now and then, one unit in the last place
                # of the half-precision weight (~1e-3 relative), which moves logits past TOL. Equal weights
                # within that one unit are the check then; the logits difference is reported.
                ref_sd, got_sd = ref.state_dict(), mm.state_dict()
                most, flips, total = 0, 0, 0
                for k, w in ref_sd.items():
                    if k not in got_sd or got_sd[k].shape != w.shape:
                        continue
                    a = got_sd[k].to(dt).view(torch.int16).int()
                    b = w.to(dt).view(torch.int16).int()
                    u = (a - b).abs()
                    most = max(most, int(u.max()) if u.numel() else 0)
                    flips += int((u > 0).sum())
                    total += u.numel()
                ok = most <= 1
                note = (note + "; " if note else "") + (f"merged {str(dt).replace('torch.', '')} weights: {flips} of "
                                                        f"{total} elements 1 ulp apart, none more" if ok else
                                                        f"merged weights up to {most} ulps apart")
            self.check(f"{tag}.merge", d, ok and not bad, note)
        if info:
            self.compare_info(tag, dirs[0][0])

    def compare_info(self, tag: str, adapter_dir: str) -> None:
        """`cpeft info --adapter`: PeftModel.from_pretrained's print_trainable_parameters(), repr and the adapter's
        own count (what is_trainable=True reports as trainable)."""
        pm = self.load_peft([(adapter_dir, "default")])
        pt = self.load_peft([(adapter_dir, "default")], is_trainable=True)
        want_line, want_own, want_repr = counts(pm)["print_trainable_parameters"], counts(pt)["trainable"], str(pm)
        p = self.cpeft("info", self.base_dir, "--adapter", adapter_dir, "--tree", "--peft-format", "current")
        if not self.proc_ok(f"{tag}.info", p):
            return
        lines = p.stdout.rstrip("\n").split("\n")
        repr_, line, own = "\n".join(lines[:-2]), lines[-2], lines[-1]
        own_n = int(own.split(":")[1].split("(")[0].replace(",", "")) if own.startswith("adapter params:") else -1
        errs = []
        if line != want_line:
            errs.append(f"line {line!r} vs PEFT {want_line!r}")
        if own_n != want_own:
            errs.append(f"adapter params {own_n} vs PEFT (is_trainable=True) {want_own}")
        if repr_ != want_repr:
            a, b = repr_.split("\n"), want_repr.split("\n")
            i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
            errs.append(f"repr differs at line {i + 1}: {a[i] if i < len(a) else '<end>'!r} vs PEFT "
                        f"{b[i] if i < len(b) else '<end>'!r}")
        self.check(f"{tag}.info", None, not errs, "; ".join(errs))

    def expect_refusal(self, tag: str, p: subprocess.CompletedProcess) -> None:
        msg = (p.stderr + p.stdout).strip()
        ok = p.returncode == 1 and self.case.refuse in msg
        self.check(f"{tag}.refuses", None, ok, f"exit {p.returncode}: {msg[-300:]}")
        if ok and not self.notes:      # the reason, without the paths before it
            self.notes.append(msg.splitlines()[-1].split("adapter_config.json: ")[-1][:120])

    # ---- directions ----

    def peft_save(self) -> list[tuple[str, str]]:
        """get_peft_model (+ add_adapter "b"), trainables perturbed, save_pretrained: [(dir, adapter name)]."""
        from peft import LoraConfig, get_peft_model
        c = self.case
        torch.manual_seed(name_seed("sweep", c.name, "init"))
        with quiet():
            base = load_base(self.base_dir)
            names = ["default"] if c.second is None else ["a", "b"]
            pm = get_peft_model(base, LoraConfig(**resolve(c.kw)), adapter_name=names[0])
            if c.second is not None:
                pm.add_adapter("b", LoraConfig(**resolve(c.second)))
                pm.base_model.set_adapter(["a", "b"])       # both trainable, so both get perturbed
            perturb_trainables(pm, name_seed("sweep", c.name, "perturb"))
            d = os.path.join(self.work, "peft")
            pm.save_pretrained(d, selected_adapters=names, **c.save_kw)
        return [(d if n == "default" else os.path.join(d, n), n) for n in names]

    def cpeft_config(self, kw: dict, path: str, keep_init: bool) -> None:
        """The case's LoraConfig as the adapter_config.json PEFT writes for it (LoraConfig.save_pretrained), lora_B
        random (init_lora_weights false) unless the case sets init_lora_weights. Raw cases: only peft_type and the
        given keys. A config PEFT refuses: PEFT's file of the default LoraConfig with the given keys put in."""
        from peft import LoraConfig
        kw = resolve(kw)
        if not keep_init:
            kw.setdefault("init_lora_weights", False)
        os.makedirs(path)
        cfg_file = os.path.join(path, "adapter_config.json")
        if self.case.raw:
            with open(cfg_file, "w") as f:
                json.dump({"peft_type": "LORA", **kw}, f)
            return
        try:
            with quiet():
                LoraConfig(**kw).save_pretrained(path)
        except Exception:  # noqa: BLE001 - PEFT refuses the config itself: cpeft must, too
            with quiet():
                LoraConfig().save_pretrained(path)
            full = json.load(open(cfg_file))
            full.update(kw)
            with open(cfg_file, "w") as f:
                json.dump(full, f)

    def compare_files(self, tag: str, cfg_dir: str, cpeft_dir: str, same_base: bool) -> None:
        """cpeft's adapter_config.json and tensor names / dtypes / shapes against what get_peft_model + save_pretrained
        write for the same config file (LoraConfig.from_pretrained); target_modules / exclude_modules lists compared
        sorted (PEFT writes set order), base_model_name_or_path only when both used the same model directory."""
        from peft import LoraConfig, get_peft_model
        from oracle_lora import SET_KEYS, saved_tensors
        d = os.path.join(self.work, f"{tag}.peft_files")
        with quiet():
            get_peft_model(load_base(self.base_dir), LoraConfig.from_pretrained(cfg_dir)).save_pretrained(d)
        want, got = (json.load(open(os.path.join(x, "adapter_config.json"))) for x in (d, cpeft_dir))
        for c in (want, got):
            for k in SET_KEYS:
                if isinstance(c.get(k), list):
                    c[k] = sorted(c[k])
            if not same_base:
                c.pop("base_model_name_or_path", None)
        errs = [f"{k}: {got.get(k, '<absent>')!r} vs PEFT {want.get(k, '<absent>')!r}"
                for k in sorted(set(want) | set(got)) if want.get(k, "<absent>") != got.get(k, "<absent>")]
        tw, tg = (saved_tensors(os.path.join(x, "adapter_model.safetensors")) for x in (d, cpeft_dir))
        errs += [f"tensor {k}: {tg.get(k)} vs PEFT {tw.get(k)}"
                 for k in sorted(set(tw) | set(tg)) if tw.get(k) != tg.get(k)]
        self.check(f"{tag}.files", None, not errs, "; ".join(errs[:4]))

    def cpeft_init(self, tag: str, kw: dict, name: str) -> tuple[subprocess.CompletedProcess, str]:
        cfg_dir = os.path.join(self.work, f"{tag}.{name}.config")
        self.cpeft_config(kw, cfg_dir, keep_init="init_lora_weights" in kw)
        out = os.path.join(self.work, f"{tag}.{name}")
        p = self.cpeft("adapter", "init", "--model", self.base_dir, "--peft-config",
                       os.path.join(cfg_dir, "adapter_config.json"),
                       "--seed", str(name_seed("sweep", self.case.name) % 1000),
                       "--out", out)
        return p, out

    def cpeft_train(self, tag: str) -> str | None:
        """A 2-step `cpeft train` (lr 1e-2) with the case's config; the model directory gets the 97-token character
        tokenizer (V=97 models only)."""
        cfg = json.load(open(os.path.join(self.base_dir, "config.json")))
        if cfg["vocab_size"] != 97:
            return None
        mdir = os.path.join(self.work, "model+tok")
        os.makedirs(mdir)
        for f in os.listdir(self.base_dir):
            os.symlink(os.path.join(self.base_dir, f), os.path.join(mdir, f))
        for f in os.listdir(CHAR_TOKENIZER):
            shutil.copy(os.path.join(CHAR_TOKENIZER, f), mdir)
        cfg_dir = os.path.join(self.work, f"{tag}.config")
        self.cpeft_config(self.case.kw, cfg_dir, keep_init="init_lora_weights" in self.case.kw)
        out = os.path.join(self.work, f"{tag}.run")
        p = self.cpeft("train", "--model", mdir, "--data", self.args.train_text, "--output-dir", out, "--peft-config",
                       os.path.join(cfg_dir, "adapter_config.json"), "--max-steps", "2",
                       "--per-device-train-batch-size", "2",
                       "--learning-rate", "1e-2", "--max-seq-length", str(EVAL_T), "--seed", "1", "--progress", "lines")
        return out if self.proc_ok(f"{tag}.train", p) else None

    def run(self) -> None:
        c = self.case
        from transformers import AutoConfig
        vocab = AutoConfig.from_pretrained(self.base_dir).vocab_size
        inp, inputs_path, ids_path, row = self.inputs(vocab)
        if c.peft_error:
            p, _ = self.cpeft_init("ii", c.kw, "default")
            self.expect_refusal("ii.init", p)
            return
        # (i) PEFT -> cpeft
        dirs = self.peft_save()
        if c.refuse:
            specs = [d if n == "default" else f"{d}:{n}" for d, n in dirs]
            self.expect_refusal("i.driver", self.driver(specs, inputs_path, os.path.join(self.work, "x.safetensors")))
            self.expect_refusal("i.eval", self.cpeft("eval", "--model", self.base_dir, "--data-ids", ids_path,
                                                     "--adapter", specs[0], "--json"))
            self.expect_refusal("i.info", self.cpeft("info", self.base_dir, "--adapter", dirs[0][0]))
            self.expect_refusal("i.merge", self.cpeft("merge", "--model", self.base_dir, "--adapter", specs[0], "--out",
                                                      os.path.join(self.work, "x.merged")))
            p, _ = self.cpeft_init("ii", c.kw, "default")
            self.expect_refusal("ii.init", p)
            return
        self.compare_adapter("i", dirs, inp, inputs_path, ids_path, row, info=c.second is None)
        with quiet():
            base_logits, _ = forward(load_base(self.base_dir), inp)
            effect, _ = real_diff(self.load_peft(dirs).eval()(input_ids=inp["input_ids"],
                                                              attention_mask=inp["attention_mask"]).logits.float(),
                                  base_logits, inp["attention_mask"])
        self.notes.append(f"effect {effect:.2f}")
        # (ii) cpeft -> PEFT: adapter init
        made = []
        for n, kw in [("default", c.kw)] if c.second is None else [("a", c.kw), ("b", c.second)]:
            p, out = self.cpeft_init("ii", kw, n)
            if not self.proc_ok("ii.init", p):
                return
            made.append((out, n))
            self.compare_files(f"ii.{n}", os.path.join(self.work, f"ii.{n}.config"), out, same_base=True)
        self.compare_adapter("ii", made, inp, inputs_path, ids_path, row, info=c.second is None)
        # (ii) cpeft -> PEFT: a short training run
        if c.second is None and not self.args.no_train:
            out = self.cpeft_train("iit")
            if out:
                self.compare_files("iit", os.path.join(self.work, "iit.config"), out, same_base=False)
                self.compare_adapter("iit", [(out, "default")], inp, inputs_path, ids_path, row, info=False)


# =================================================================================================
# main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpeft", default="build/cpeft")
    ap.add_argument("--driver", default="build/sweep/sweep_logits")
    ap.add_argument("--only", action="append", help="case name glob (repeatable)")
    ap.add_argument("--keep", help="keep each case's files under this directory")
    ap.add_argument("--no-train", action="store_true", help="skip the `cpeft train` step of direction (ii)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every check")
    args = ap.parse_args()
    if args.list:
        for c in CASES:
            print(f"{c.name:36s} {c.model:14s} {c.source}{'  [refused: ' + c.refuse + ']' if c.refuse else ''}")
        return 0
    for exe in (args.cpeft, args.driver):
        if not os.access(exe, os.X_OK):
            print(f"sweep: {exe} is not built (make all build/sweep/sweep_logits)", file=sys.stderr)
            return 2
    args.cpeft, args.driver = os.path.abspath(args.cpeft), os.path.abspath(args.driver)
    args.env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    torch.set_num_threads(1)
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    cases = [c for c in CASES if not args.only or any(fnmatch.fnmatchcase(c.name, p) for p in args.only)]
    assert len({c.name for c in CASES}) == len(CASES), "duplicate case names"
    root = args.keep or tempfile.mkdtemp(prefix="cpeft-sweep-")
    os.makedirs(root, exist_ok=True)
    args.train_text = os.path.join(root, "train.txt")
    gen = torch.Generator().manual_seed(name_seed("sweep", "train-text"))
    letters = "abcdefghijklmnopqrstuvwxyz ,."
    with open(args.train_text, "w") as f:
        for _ in range(40):
            f.write("".join(letters[i] for i in torch.randint(0, len(letters), (60,), generator=gen).tolist()) + "\n")
    t0 = time.time()
    passed = failed = refused = 0
    for c in cases:
        work = os.path.join(root, c.name)
        if os.path.isdir(work):
            shutil.rmtree(work)
        os.makedirs(work)
        r = Runner(args, c, work)
        try:
            r.run()
        except Exception as e:  # noqa: BLE001 - a case that cannot run is a failed case, the sweep goes on
            r.check("run", None, False, f"{type(e).__name__}: {e}")
        bad = [ch for ch in r.checks if not ch[2]]
        worst = max((ch[1] for ch in r.checks if ch[1] is not None), default=None)
        if bad or not r.checks:
            failed += 1
            status = "FAIL"
        elif c.refuse:
            refused += 1
            status = "REFUSED-as-expected"
        else:
            passed += 1
            status = "PASS"
        w = f"max|diff| {worst:.1e}" if worst is not None else ""
        print(f"{status:20s} {c.name:36s} {w:18s} {len(r.checks):2d} checks  {'; '.join(r.notes)}", flush=True)
        for name, value, ok, detail in r.checks:
            if not ok or args.verbose:
                v = f"{value:.2e}" if value is not None else ""
                print(f"    {'ok  ' if ok else 'FAIL'} {name:12s} {v:9s} {detail}", flush=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    print(f"sweep: {len(cases)} cases in {time.time() - t0:.0f} s ({passed} PASS, {refused} REFUSED-as-expected, "
          f"{failed} FAIL); tolerance {TOL:g}")
    print(f"{passed + refused} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
