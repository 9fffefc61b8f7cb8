"""GPT-2 small's shape with random weights, made to have GPT-2's large activation features.

Trained GPT-2 has a few residual dimensions whose activations are far larger than the rest, and
so have the inputs of its MLPs' output layers: exactly what per-tensor activation quantization
handles worst. Random weights have none, so an int8 accuracy measured on them alone would flatter.
`with_outlier_features` scales a few LayerNorm gains and a few MLP hidden units to make them.
"""

import torch

from gpt2 import GPT2


@torch.no_grad()
def with_outlier_features(model: GPT2, dims=(17, 138, 447), hidden_units=(5, 300, 2000), scale: float = 20.0) -> GPT2:
    """`model`, changed in place: `scale` times the LayerNorm gains at residual `dims` (the inputs of
    every attention and MLP layer) and the MLPs' input rows for `hidden_units` (the inputs of every
    MLP output layer)."""
    width = model.config.embed_dim
    dims = sorted({d % width for d in dims})  # (a narrower model gets them folded into its width)
    hidden_units = sorted({u % (4 * width) for u in hidden_units})
    for block in model.blocks:
        for norm in (block.ln_1, block.ln_2):
            norm.weight[dims] *= scale
        block.mlp.c_fc.weight[hidden_units] *= scale
    return model
