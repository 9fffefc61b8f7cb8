"""The app's logic as plain functions, testable without a browser, split by job:

- `inputs`: what a visitor sends, checked (prompts, settings, heads);
- `cache`: one per-key-locked LRU (`KeyedCache`), and the analyses of recent texts in one;
- `models`: the models served (each with its int8 copy), loaded once and shared;
- `session`: a visitor's token ids and the window of them the model sees;
- `views` and `lab_views`: the numbers shown, each figure described as a `chart.Chart`;
- `figures`: the Plotly figures drawn from those charts, and their shared style;
- `export`: downloads, in one folder per visitor's session;
- `service`: the process-wide stores (made when the app is built), and streaming;
- `errors`: a visitor's mistake as one status line and toast, or one API error line;
- `api`: the named API endpoints (numbers only, nothing drawn);
- `widgets`, `texts`, `generation_tab`, `attention_tab`, `lab_tab`, `layout`: the page's
  components, words, handlers by tab and wiring;
- `ui`: `build_demo()` and `launch` (`gpt2-explorer` starts it).
"""
