"""Circuits: attribution patching, edge attribution (EAP, EAP-IG), the circuit it finds and its exact
faithfulness, and task generators for pairs of prompts (docs/lab.md, "Circuits").

    task = induction(model, seed=0)
    circuit = find_circuit(model, task.clean, task.corrupted, task.answers, edges=30)
    circuit.edges[0]          # Edge(src="L0H0", dst="L1H2", input="k", score=-1.3)
    circuit.faithfulness, circuit.curve
"""

from .attribution import attribution_patching
from .circuit import METHODS, Circuit, faithfulness, find_circuit
from .common import CircuitError, head_node, mlp_node
from .faithfulness import CURVE_SIZES
from .graph import INPUT_KINDS, Edge, Graph, edge_scores

__all__ = [
    "CURVE_SIZES",
    "INPUT_KINDS",
    "METHODS",
    "Circuit",
    "CircuitError",
    "Edge",
    "Graph",
    "attribution_patching",
    "edge_scores",
    "faithfulness",
    "find_circuit",
    "head_node",
    "mlp_node",
]
