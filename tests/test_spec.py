"""The three examples of the spec (../shared/seed/gpt2-from-scratch.md), as written."""

import torch

from gpt2 import GPT2, MLP, CausalSelfAttention, TransformerBlock


def test_example_1_forward_pass_shapes():
    model = GPT2(
        vocab_size=100,
        embed_dim=64,
        num_heads=4,
        num_layers=2,
        block_size=32,
        dropout_p=0.0,
    )

    idx = torch.randint(0, 100, (2, 10))  # (B=2, T=10)
    logits = model(idx)
    assert logits.shape == torch.Size([2, 10, 100])


def test_example_2_causal_attention_prevents_future_leakage():
    torch.manual_seed(42)

    attn = CausalSelfAttention(embed_dim=8, num_heads=2, block_size=4, dropout_p=0.0)
    attn.eval()

    x = torch.randn(1, 4, 8)  # (B=1, T=4, C=8)
    y = attn(x)

    x2 = x.clone()
    x2[0, 3, :] = 999.0  # modify last token
    y2 = attn(x2)

    assert torch.allclose(y[0, :3], y2[0, :3])


def test_example_3_mlp_dimensions():
    mlp = MLP(embed_dim=16, dropout_p=0.0)
    x = torch.randn(2, 5, 16)
    y = mlp(x)
    assert y.shape == torch.Size([2, 5, 16])


def test_transformer_block_keeps_shape_and_positional_signature():
    block = TransformerBlock(16, 2, 8, 0.0)
    assert block(torch.randn(3, 8, 16)).shape == (3, 8, 16)
    model = GPT2(50, 16, 2, 1, 8)  # dropout_p defaults to 0.0
    assert model.config.dropout_p == 0.0
    assert isinstance(model(torch.zeros(1, 8, dtype=torch.long)), torch.Tensor)
