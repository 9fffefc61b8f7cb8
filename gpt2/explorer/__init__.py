"""The app's logic as plain functions, testable without a browser, split by job:

- `inputs`: what a visitor sends, checked (prompts, settings, heads);
- `models`: the models served, loaded once and shared;
- `session`: a visitor's token ids and the window of them the model sees;
- `cache`: the analyses of recent texts, bounded in bytes;
- `views` and `lab_views`: the figures and numbers shown;
- `export`: downloads;
- `service`: the process-wide model store and cache, and streaming;
- `api`: the named API endpoints;
- `ui`: the Gradio app that wires widgets to all of these (`gpt2-explorer` starts it).
"""
