"""A tiny InternVL2 checkpoint in its original remote-code layout (model_type internvl_chat, InternViT
and InternLM2 key names, packed qkv and wqkv), written from a tiny transformers InternVL with
Llama text, so a conversion can be checked against the model it came from.

The packing is written here independently of the converter: for InternLM2's wqkv, each KV head's
query heads, then its key and value, one head at a time, as InternLM2Attention unpacks it."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from backend.models.families import INTERNVL_TOKENS, TinySize, _llama_like_text


def build_reference(folder: Path, seed: int = 0) -> Path:
    """A tiny transformers InternVL shaped like InternVL2-2B (InternViT with biased qkv and layer scale,
    InternLM2 text as Llama: 4 heads to 2 KV heads), saved with the tiny model's processor."""
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    from backend.models.families import TINY
    from backend.models.tiny import train_tokenizer

    size = TinySize()
    torch.manual_seed(seed)
    tokenizer = train_tokenizer(INTERNVL_TOKENS)
    vision = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                  image_size=[56, 56], patch_size=[14, 14], attention_bias=True, layer_scale_init_value=0.1,
                  initializer_range=0.1)
    text = _llama_like_text(tokenizer, size, "llama", rope_parameters={"rope_type": "dynamic", "factor": 2.0,
                                                                       "rope_theta": 1_000_000.0},
                            rms_norm_eps=1e-5)
    config = InternVLConfig(vision_config=vision, text_config=text, downsample_ratio=0.5, image_seq_length=4,
                            image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"), tie_word_embeddings=False)
    model = InternVLForConditionalGeneration(config).eval()
    with torch.no_grad():  # layer scale and biases away from their initial values, so a misplaced one shows
        for name, param in model.named_parameters():
            if "lambda" in name or name.endswith("bias"):
                param.normal_(0, 0.1)
    model.save_pretrained(folder)
    TINY["internvl"].processor(tokenizer, size).save_pretrained(folder)
    return folder


def write_original(reference: Path, folder: Path) -> Path:
    """The reference model's weights and config in the original InternVL2 layout."""
    from safetensors.torch import save_file
    from transformers import AutoModelForImageTextToText, PreTrainedTokenizerFast

    model = AutoModelForImageTextToText.from_pretrained(str(reference))
    config = model.config
    text, vision = config.text_config, config.vision_config
    state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    original: dict[str, torch.Tensor] = {}
    heads, kv_heads = text.num_attention_heads, text.num_key_value_heads
    head_dim, groups = text.hidden_size // heads, heads // kv_heads
    for name, tensor in state.items():
        if name.startswith("model.vision_tower."):
            key = "vision_model." + name.removeprefix("model.vision_tower.")
            key = (key.replace(".cls_token", ".class_embedding")
                   .replace(".patch_embeddings.projection.", ".patch_embedding.")
                   .replace(".position_embeddings", ".position_embedding")
                   .replace(".encoder.layer.", ".encoder.layers.")
                   .replace(".lambda_1", ".ls1").replace(".lambda_2", ".ls2")
                   .replace(".attention.projection_layer.", ".attn.proj.").replace(".layernorm_before.", ".norm1.")
                   .replace(".layernorm_after.", ".norm2."))
            if ".attention.q_proj." in key:
                part = key.rsplit(".", 1)[1]
                stem = key.split(".attention.q_proj.")[0]
                original[f"{stem}.attn.qkv.{part}"] = torch.cat(
                    [state[name], state[name.replace("q_proj", "k_proj")], state[name.replace("q_proj", "v_proj")]])
            elif ".attention.k_proj." in key or ".attention.v_proj." in key:
                continue
            else:
                original[key] = tensor
        elif name.startswith("model.multi_modal_projector."):
            key = (name.replace("model.multi_modal_projector.layer_norm.", "mlp1.0.")
                   .replace("model.multi_modal_projector.linear_1.", "mlp1.1.")
                   .replace("model.multi_modal_projector.linear_2.", "mlp1.3."))
            original[key] = tensor
        elif name == "lm_head.weight":
            original["language_model.output.weight"] = tensor
        elif name.startswith("model.language_model."):
            key = "language_model.model." + name.removeprefix("model.language_model.")
            key = (key.replace(".embed_tokens.", ".tok_embeddings.").replace(".self_attn.o_proj.", ".attention.wo.")
                   .replace(".mlp.gate_proj.", ".feed_forward.w1.").replace(".mlp.up_proj.", ".feed_forward.w3.")
                   .replace(".mlp.down_proj.", ".feed_forward.w2.").replace(".input_layernorm.", ".attention_norm.")
                   .replace(".post_attention_layernorm.", ".ffn_norm."))
            if ".self_attn.q_proj." in key:
                q, k, v = (state[name.replace("q_proj", p)] for p in ("q_proj", "k_proj", "v_proj"))
                rows = []
                for h in range(kv_heads):
                    for g in range(groups):
                        head = h * groups + g
                        rows.append(q[head * head_dim:(head + 1) * head_dim])
                    rows += [k[h * head_dim:(h + 1) * head_dim], v[h * head_dim:(h + 1) * head_dim]]
                original[key.replace(".self_attn.q_proj.", ".attention.wqkv.")] = torch.cat(rows)
            elif ".self_attn.k_proj." in key or ".self_attn.v_proj." in key:
                continue
            else:
                original[key] = tensor
        else:
            raise AssertionError(f"unexpected weight {name}")
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in original.items()}, str(folder / "model.safetensors"))
    llm_config = dict(architectures=["InternLM2ForCausalLM"], model_type="internlm2", vocab_size=text.vocab_size,
                      hidden_size=text.hidden_size, intermediate_size=text.intermediate_size,
                      num_hidden_layers=text.num_hidden_layers, num_attention_heads=heads,
                      num_key_value_heads=kv_heads, max_position_embeddings=4096, rms_norm_eps=text.rms_norm_eps,
                      rope_theta=1_000_000.0, rope_scaling={"type": "dynamic", "factor": 2.0}, bias=False,
                      hidden_act="silu", bos_token_id=text.bos_token_id, eos_token_id=text.eos_token_id,
                      pad_token_id=text.pad_token_id, tie_word_embeddings=False,
                      auto_map={"AutoModel": "modeling_internlm2.InternLM2ForCausalLM"})
    vision_config = dict(architectures=["InternVisionModel"], model_type="intern_vit_6b",
                         hidden_size=vision.hidden_size, num_hidden_layers=vision.num_hidden_layers,
                         num_attention_heads=vision.num_attention_heads,
                         intermediate_size=vision.intermediate_size, patch_size=14, image_size=56, qkv_bias=True,
                         qk_normalization=False, norm_type="layer_norm", layer_norm_eps=vision.layer_norm_eps,
                         hidden_act="gelu", initializer_factor=0.1, use_flash_attn=False)
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["InternVLChatModel"], "model_type": "internvl_chat", "torch_dtype": "float32",
        "auto_map": {"AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
                     "AutoModel": "modeling_internvl_chat.InternVLChatModel"},
        "llm_config": llm_config, "vision_config": vision_config, "downsample_ratio": 0.5, "force_image_size": 56,
        "select_layer": -1, "template": "internlm2-chat", "ps_version": "v2", "dynamic_image_size": True,
        "max_dynamic_patch": 12, "min_dynamic_patch": 1, "use_thumbnail": True}, indent=2), encoding="utf-8")
    (folder / "modeling_internvl_chat.py").write_text("# the original's remote code (never run by Foodie Studio)\n")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(reference))
    tokenizer.save_pretrained(folder)
    return folder
