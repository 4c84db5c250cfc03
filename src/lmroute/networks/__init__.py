"""The torch networks of the classifier routers, shared by ``routers`` (scoring) and ``training``.

``base_models`` (where MiniLM and SmolLM2 come from, and their weights' fingerprint), ``batching``
(tokenising prompts and length-sorted batches; no torch), ``precision`` (float32 or bfloat16, and
what each promises about batching), ``encoder_classifier`` (the ``bert`` router's encoder + head),
``label_reader`` (the ``causal_llm`` router's LM that reads outcome labels, with LoRA adapters),
``onnx_encoder`` (a fine-tuned encoder exported to ONNX and scored without torch). Modules that
import torch say so; nothing here is imported by ``import lmroute``.
"""
