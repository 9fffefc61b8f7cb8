"""The words and examples the app shows, and the names of its choices."""

REPEATED_EXAMPLE = (
    "sword crown honey winter tongue lamb night castle bread river. "
    "sword crown honey winter tongue lamb night castle bread river."
)
EXAMPLES = [
    [REPEATED_EXAMPLE],
    ["ROMEO:\nBut soft, what light through yonder window breaks?"],
    ["The quick brown fox jumps over the lazy dog because"],
    ["First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\nFirst Citizen:\n"],
]
PATCH_EXAMPLE = (
    "sword crown honey winter tongue lamb night castle. sword crown honey winter",
    "sword crown honey winter tongue lamb night castle. sword crown honey river",
)
CLEAN, ABLATED = "clean", "ablated"
ATTENTION_TAB, WEIGHTS_TAB, TRAINING_TAB = "attention", "weights", "training"
CIRCUIT_PANEL = "circuit"  # the Lab's Circuit sub-tab
TASK_SEED = 2  # the task presets' first pair (the tutorial's); another seed draws another
ATTENDS_PANEL, WHY_PANEL = "attends", "why"  # the query's two panels in the Attention tab
LAB_START = (
    "Start with the Tutorial: it loads an example and finds the induction circuit in three clicks. "
    "Or generate a text, then open a tool: each works on the text shown (Patching on its own two prompts)."
)
TUTORIAL = """**Find the induction circuit in three clicks.** The bundled model has one: layer 1 copies what
followed an earlier occurrence of the current token, and it needs the previous-token head L0 H0 to
know what followed what.

1. **Load the example** (a sequence of ten words, repeated), then **Ablate layer 1**: the loss on the
   repeat jumps from about 2 nats to about 8, as bad as guessing.
2. **Ablate L0 H0**: the same jump. In the *Attention* tab, choose run *ablated* and head L1 H0: its
   induction stripes are gone (compare run *clean*).
3. **Ablate L4 H2**, a head with no part in this: nothing changes.
4. **Find the circuit**: the induction task as a graph, from the embeddings to the logits, checked
   by exact faithfulness: L0 H0 feeds the keys of layer 1's induction heads, which feed the logits.

Then ask which heads carry a prediction directly (*Attribution*) and what a change of one word moves
(*Patching*)."""
MEAN_OPTION, SINK_OPTION, LOG_OPTION = "mean of the layer", "hide the sink", "log colours"
MODEL_ROLES = "the model's own roles"  # the score map's choice that shows roles measured without the text
WEIGHTS_START = (
    "What each head reads and writes, from the weights alone: click a cell of the composition map, "
    "or a partner, to open that head's passport."
)
TRAINING_NONE = "No training history for this model."
TRAINING_START = (
    "How this model's heads formed during training, from the history its run recorded "
    "(`python -m gpt2.train` writes one; serve the run with `--model DIR`)."
)
QK_START = "Click a token or a heatmap cell: why that query attends to that key, part by part."
WAITING = "Generating… the maps appear when the text is complete."
FONTS = ["system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"]
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]
