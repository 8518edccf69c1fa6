// The text of every drawn plotly chart on the page, as quadrilaterals in viewport pixels, and the
// pairs that overlap or leave their chart. Called by page.evaluate(SOURCE, tolerance_px).
//
// A text element's box is its SVG bounding box mapped through its screen transform, so rotated tick
// labels are tested as the rotated rectangles they are (not as their larger axis-aligned hull).
(tol) => {
  const DATA_TEXT = '.hoverlayer, .textpoint, .bartext, .trace text, .modebar';
  const corners = (el) => {
    const b = el.getBBox();
    const m = el.getScreenCTM();
    return [[b.x, b.y], [b.x + b.width, b.y], [b.x + b.width, b.y + b.height], [b.x, b.y + b.height]]
      .map(([x, y]) => [m.a * x + m.c * y + m.e, m.b * x + m.d * y + m.f]);
  };
  const shown = (el) => {
    for (let e = el; e && e.tagName !== 'svg'; e = e.parentElement) {
      const s = getComputedStyle(e);
      if (s.display === 'none' || s.visibility === 'hidden' || Number(s.opacity) === 0) return false;
    }
    const b = el.getBBox();
    return b.width > 0 && b.height > 0 && el.textContent.trim() !== '';
  };
  const kind = (el) => {
    const g = el.closest('[class*="tick"], .legend, .colorbar, .annotation, [class$="title"]');
    const c = (el.getAttribute('class') || '') + ' ' + (g ? g.getAttribute('class') : '');
    return c.trim();
  };
  // Separating-axis test on two convex quadrilaterals: the depth of overlap on the shallowest axis.
  const overlapDepth = (a, b) => {
    let depth = Infinity;
    for (const poly of [a, b]) {
      for (let i = 0; i < 4; i++) {
        const [x1, y1] = poly[i], [x2, y2] = poly[(i + 1) % 4];
        const len = Math.hypot(x2 - x1, y2 - y1) || 1;
        const nx = -(y2 - y1) / len, ny = (x2 - x1) / len;
        const pa = a.map(([x, y]) => x * nx + y * ny), pb = b.map(([x, y]) => x * nx + y * ny);
        depth = Math.min(depth, Math.min(Math.max(...pa), Math.max(...pb)) - Math.max(Math.min(...pa), Math.min(...pb)));
      }
    }
    return depth;
  };
  const report = [];
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  plots.forEach((plot, index) => {
    const frame = plot.getBoundingClientRect();
    if (frame.width === 0 || frame.height === 0) return;           // in a closed expander or hidden tab
    const title = (plot.querySelector('.gtitle') || {}).textContent || `chart #${index}`;
    const items = [...plot.querySelectorAll('.main-svg text')]
      .filter((el) => !el.closest(DATA_TEXT) && shown(el))
      .map((el) => ({ text: el.textContent.trim().slice(0, 60), kind: kind(el), quad: corners(el) }));
    // colour-bar bodies: text must not sit on them either
    for (const bar of plot.querySelectorAll('.colorbar .cbfills')) {
      const r = bar.getBoundingClientRect();
      if (r.width > 0) items.push({ text: '[colour bar]', kind: 'cbfills',
        quad: [[r.left, r.top], [r.right, r.top], [r.right, r.bottom], [r.left, r.bottom]] });
    }
    const problems = [];
    // an axis's tick labels and title must stay off every panel that axis does not belong to
    const panels = [...plot.querySelectorAll('.nsewdrag[data-subplot]')].map((d) => {
      const r = d.getBoundingClientRect();
      return { id: d.getAttribute('data-subplot'),
        quad: [[r.left, r.top], [r.right, r.top], [r.right, r.bottom], [r.left, r.bottom]] };
    });
    for (const it of items) {
      const axis = (it.kind.match(/\b([xy]\d*)(tick|title)\b/) || [])[1];
      if (!axis) continue;
      for (const panel of panels) {
        const [, px, py] = panel.id.match(/^(x\d*)(y\d*)$/) || [];
        if (px !== axis && py !== axis && overlapDepth(it.quad, panel.quad) > tol) {
          problems.push(`"${it.text}" (${it.kind}) lies on the panel ${panel.id}`);
        }
      }
    }
    for (const it of items) {
      const xs = it.quad.map((p) => p[0]), ys = it.quad.map((p) => p[1]);
      if (Math.min(...xs) < frame.left - tol || Math.max(...xs) > frame.right + tol ||
          Math.min(...ys) < frame.top - tol || Math.max(...ys) > frame.bottom + tol) {
        problems.push(`"${it.text}" (${it.kind}) leaves the figure`);
      }
    }
    for (let i = 0; i < items.length; i++) {
      for (let j = i + 1; j < items.length; j++) {
        if (items[i].kind === 'cbfills' && items[j].kind === 'cbfills') continue;
        if (overlapDepth(items[i].quad, items[j].quad) > tol) {
          problems.push(`"${items[i].text}" (${items[i].kind}) overlaps "${items[j].text}" (${items[j].kind})`);
        }
      }
    }
    report.push({ title, texts: items.length, problems });
  });
  return report;
}
