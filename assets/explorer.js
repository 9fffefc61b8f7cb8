() => {
  // The page's script, run once when the app loads. Clicks on a head in the grid or a score map, on
  // a heatmap cell, on a head in the lab's maps or on the composition map reach Python through the
  // hidden #click-bridge box as "owner:row,column", and the panel that answers is scrolled into view
  // if it is off screen; Ctrl/Cmd+Enter in the prompt generates; byte tokens get a hover title.
  const bridge = (value) => {
    const box = document.querySelector('#click-bridge textarea, #click-bridge input');
    if (!box) return;
    box.value = value + '@' + Date.now();
    box.dispatchEvent(new Event('input', {bubbles: true}));
  };
  // the plots whose clicks Python handles, each with where its answer appears (widgets.CLICK_TARGETS)
  const targets = __CLICK_TARGETS__;
  // the panel that answers a click, scrolled up if it starts below mid-screen (a phone) or above the
  // screen, once it is shown (a click may open another tab first)
  let pending = null;
  const tryReveal = () => {
    if (!pending || Date.now() > pending.until) { pending = null; return; }
    const panel = document.querySelector(pending.selector);
    if (!panel || !panel.offsetParent) { setTimeout(tryReveal, 100); return; }
    const box = panel.getBoundingClientRect();
    if (box.top < 0 || box.top > window.innerHeight / 2) window.scrollTo({top: window.scrollY + box.top - 8});
    pending = null;
  };
  const reveal = (selector) => {
    pending = selector ? {selector, until: Date.now() + 8000} : null;
    tryReveal();
  };
  window.revealAnswer = reveal;  // the Lab's results, below their inputs, call it too (wiring.scroll_to)
  const bind = () => {
    for (const [id, answer] of Object.entries(targets)) {
      const gd = document.querySelector(`#${id} .js-plotly-plot`);
      if (!gd || gd.__explorerBound || typeof gd.on !== 'function') continue;
      gd.__explorerBound = true;
      gd.on('plotly_click', (event) => {
        const point = event.points && event.points[0];
        if (!point) return;
        // a heatmap's cell is [row, column]; a point of a bar or scatter chart is [index, its trace]
        let [row, col] = Array.isArray(point.pointNumber) ? point.pointNumber : [point.pointNumber, point.curveNumber];
        if (id === 'grid') {
          const cell = gd.layout.meta && gd.layout.meta.cell;
          if (!cell) return;
          row = Math.floor(row / cell);
          col = Math.floor(col / cell);
        }
        bridge(`${id}:${row},${col}`);
        reveal(answer);
      });
    }
  };
  // a byte token (part of a character, shown as its hex bytes like ‹F0›‹9F›): its group's hover
  // names the whole character
  const utf8 = new TextEncoder();
  const chipBytes = (text) => {
    const bytes = [];
    for (const part of text.replace(/␣/g, ' ').replace(/↵/g, '\n').split(/(‹[0-9A-F]{2}›)/)) {
      if (/^‹[0-9A-F]{2}›$/.test(part)) bytes.push(parseInt(part.slice(1, -1), 16));
      else bytes.push(...utf8.encode(part));
    }
    return bytes;
  };
  const isBytes = (chip) => /‹[0-9A-F]{2}›/.test(chip.textContent);
  const nameByteChips = () => {
    for (const box of document.querySelectorAll('#chips, #attn-chips')) {
      const chips = [...box.querySelectorAll('.token')];
      for (let i = 0; i < chips.length; ) {
        if (!isBytes(chips[i])) { i++; continue; }
        let j = i;
        while (j < chips.length && isBytes(chips[j])) j++;
        const run = chips.slice(i, j);
        const text = new TextDecoder().decode(new Uint8Array(run.flatMap((c) => chipBytes(c.querySelector('.text')?.textContent || ''))));
        run.forEach((c) => { c.title = `bytes of “${text.trim()}”`; });
        i = j;
      }
    }
  };
  new MutationObserver(() => { bind(); nameByteChips(); }).observe(document.body, {childList: true, subtree: true});
  // a plot drawn while its tab was hidden took a default width: redraw plots when a tab opens
  document.addEventListener('click', (event) => {
    if (event.target.closest('[role=tab]')) setTimeout(() => window.dispatchEvent(new Event('resize')), 60);
  });
  document.addEventListener('keydown', (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key === 'Enter' && event.target.closest('#prompt')) {
      event.preventDefault();
      document.querySelector('#generate')?.click();
    }
  });
}
