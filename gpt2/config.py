"""The model's configuration: one dataclass, the named presets, and the Hugging Face config.json mapping.

Also the two numbers every part of the project shares: GPT-2's vocabulary size and the id of
`<|endoftext|>`.
"""

from dataclasses import asdict, dataclass

VOCAB_SIZE = 50257  # GPT-2's byte-pair vocabulary: 50,256 merges plus <|endoftext|>
EOT_ID = 50256  # <|endoftext|>


@dataclass(frozen=True)
class GPT2Config:
    vocab_size: int = VOCAB_SIZE
    embed_dim: int = 768
    num_heads: int = 12
    num_layers: int = 12
    block_size: int = 1024
    dropout_p: float = 0.0

    def __post_init__(self):
        for name in ("vocab_size", "embed_dim", "num_heads", "num_layers", "block_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})")
        if not 0.0 <= self.dropout_p < 1.0:
            raise ValueError(f"dropout_p must be in [0, 1), got {self.dropout_p!r}")

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    def to_dict(self) -> dict:
        return asdict(self)

    def to_hf_dict(self) -> dict:
        """config.json in Hugging Face's GPT-2 layout, so `GPT2LMHeadModel.from_pretrained` reads our checkpoints."""
        return {
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "vocab_size": self.vocab_size,
            "n_embd": self.embed_dim,
            "n_head": self.num_heads,
            "n_layer": self.num_layers,
            "n_positions": self.block_size,
            "n_ctx": self.block_size,
            "n_inner": None,
            "activation_function": "gelu_new",
            "layer_norm_epsilon": 1e-5,
            "resid_pdrop": self.dropout_p,
            "embd_pdrop": self.dropout_p,
            "attn_pdrop": self.dropout_p,
            "initializer_range": 0.02,
            "scale_attn_weights": True,
            "tie_word_embeddings": True,
            "bos_token_id": EOT_ID,
            "eos_token_id": EOT_ID,
        }

    @classmethod
    def from_hf_dict(cls, hf: dict) -> "GPT2Config":
        """Read a Hugging Face GPT-2 config.json; refuse variants this model does not implement."""
        if hf.get("model_type", "gpt2") != "gpt2":
            raise ValueError(f"model_type is {hf.get('model_type')!r}, expected 'gpt2'")
        activation = hf.get("activation_function", "gelu_new")
        if activation not in ("gelu_new", "gelu_pytorch_tanh"):
            raise ValueError(f"activation_function {activation!r} is not GPT-2's tanh GELU")
        n_embd = hf["n_embd"]
        if hf.get("n_inner") not in (None, 4 * n_embd):
            raise ValueError(f"n_inner {hf['n_inner']} is not 4 * n_embd")
        if abs(hf.get("layer_norm_epsilon", 1e-5) - 1e-5) > 1e-12:
            raise ValueError(f"layer_norm_epsilon {hf['layer_norm_epsilon']} is not GPT-2's 1e-5")
        for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
            if hf.get(flag):
                raise ValueError(f"{flag} is not supported")
        return cls(
            vocab_size=hf["vocab_size"],
            embed_dim=n_embd,
            num_heads=hf["n_head"],
            num_layers=hf["n_layer"],
            block_size=hf.get("n_positions", hf.get("n_ctx", 1024)),
            dropout_p=float(hf.get("resid_pdrop", 0.0)),
        )


# Every named model shape: OpenAI's released sizes, and the two this project trains from scratch.
PRESETS = {
    "gpt2": GPT2Config(embed_dim=768, num_heads=12, num_layers=12),
    "gpt2-medium": GPT2Config(embed_dim=1024, num_heads=16, num_layers=24),
    "gpt2-large": GPT2Config(embed_dim=1280, num_heads=20, num_layers=36),
    "gpt2-xl": GPT2Config(embed_dim=1600, num_heads=25, num_layers=48),
    "distilgpt2": GPT2Config(embed_dim=768, num_heads=12, num_layers=6),
    "shakespeare": GPT2Config(embed_dim=128, num_heads=4, num_layers=6, block_size=256),  # the bundled model
    "tiny": GPT2Config(embed_dim=32, num_heads=2, num_layers=2, block_size=64),  # for tests
}
