"""Heads explained: why a head attends where it does (QK attribution of a cell), what it reads and
writes from its weights (composition and copying scores, OV and QK token tables), and its role in the
model independent of any text (`model_roles`). Every quantity is defined in docs/lab.md.

    from gpt2.heads import qk_attribution, composition_scores, model_roles
    cell = qk_attribution(model, ids, layer=1, head=0, query=20, key=10)
    cell.labels, cell.key_contrast          # which parts make key 10 win
    composition_scores(model, "k")[0, 0, 1, 0]   # L0 H0 into L1 H0's keys
    model_roles(model).labels               # (L, H) role names
"""

from .circuits import MODES, TokenTable, composition_scores, copying_scores, normalized_embeddings, ov_table, qk_table
from .common import CellError, HeadsError, UnknownModeError, forget, head_weights, known_tokens
from .qk import HeadOutputs, QKAttribution, part_labels, qk_attribution, qk_attribution_from
from .roles import NATURAL_TEXT, ROLE_RULES, ROLE_SCORES, ModelRoles, model_roles

__all__ = [
    "MODES",
    "NATURAL_TEXT",
    "ROLE_RULES",
    "ROLE_SCORES",
    "ModelRoles",
    "CellError",
    "HeadOutputs",
    "HeadsError",
    "QKAttribution",
    "TokenTable",
    "UnknownModeError",
    "composition_scores",
    "copying_scores",
    "forget",
    "head_weights",
    "known_tokens",
    "model_roles",
    "normalized_embeddings",
    "ov_table",
    "part_labels",
    "qk_attribution",
    "qk_attribution_from",
    "qk_table",
]
