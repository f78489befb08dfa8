// A small line chart on <canvas>: time on x, one or more series on y, sharp on high-DPI
// screens. The y axis counts in whole numbers; an optional limit is drawn as a labelled dashed
// line (the scale always reaches it); hovering shows the values at the nearest point. Rotor's
// own; no charting library needed for four charts.
(function () {
  'use strict';
  const COLORS = ['#4338ca', '#0ea5e9', '#16a34a', '#dc2626'];
  const LIMIT_COLOR = '#b91c1c';

  // A whole-number tick step giving at most four steps up to `v`: 1, 2 or 5 times a power of ten.
  function step(v) {
    const raw = Math.max(1, v / 4);
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const n = raw / p;
    return Math.max(1, (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * p);
  }

  function label(t, unit) {
    const d = new Date(t);
    if (unit === 'day') return (d.getMonth() + 1) + '/' + d.getDate();
    return String(d.getHours()).padStart(2, '0') + ':' + String(d.getMinutes()).padStart(2, '0');
  }

  function fmt(v) {
    if (v >= 1e6) return (v / 1e6).toFixed(v % 1e6 ? 1 : 0) + 'M';
    if (v >= 1e3) return (v / 1e3).toFixed(v % 1e3 ? 1 : 0) + 'k';
    return String(v);
  }

  function words(name) { return name.replace(/_/g, ' '); }

  // Draws `points` (objects with `t` and one number per name in `names`). `opts.limit`:
  // { value, label } for the limit line.
  function draw(canvas, points, names, unit, opts) {
    opts = opts || {};
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 600;
    const h = canvas.clientHeight || 200;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const pad = { l: 44, r: 10, t: 18, b: 22 };
    const iw = w - pad.l - pad.r;
    const ih = h - pad.t - pad.b;
    let top = 0;
    points.forEach(function (p) { names.forEach(function (n) { top = Math.max(top, p[n] || 0); }); });
    const limit = opts.limit && opts.limit.value > 0 ? opts.limit : null;
    if (limit) top = Math.max(top, limit.value);
    const s = step(top);
    const max = Math.max(s, Math.ceil(top / s) * s);
    const yOf = function (v) { return pad.t + ih - (ih * v) / max; };
    ctx.font = '11px system-ui, sans-serif';
    ctx.fillStyle = '#5b6178';
    ctx.strokeStyle = '#e3e6ef';
    ctx.lineWidth = 1;
    const ticks = [];
    for (let v = 0; v <= max; v += s) {
      ticks.push(v);
      const y = yOf(v);
      ctx.beginPath(); ctx.moveTo(pad.l, y); ctx.lineTo(w - pad.r, y); ctx.stroke();
      ctx.textAlign = 'right'; ctx.textBaseline = 'middle';
      ctx.fillText(fmt(v), pad.l - 6, y);
    }
    canvas.dataset.ticks = ticks.join(',');
    const n = points.length;
    const x = function (i) { return pad.l + (n <= 1 ? iw / 2 : (iw * i) / (n - 1)); };
    ctx.textAlign = 'center'; ctx.textBaseline = 'top';
    const xt = Math.min(6, n);
    for (let k = 0; k < xt; k++) {
      const i = Math.round((k * (n - 1)) / Math.max(1, xt - 1));
      // The first and last labels hug the plot's edges so they are never clipped.
      ctx.textAlign = k === 0 && xt > 1 ? 'left' : k === xt - 1 && xt > 1 ? 'right' : 'center';
      if (points[i]) ctx.fillText(label(points[i].t, unit), x(i), h - pad.b + 6);
    }
    if (limit) {
      const y = yOf(limit.value);
      ctx.save();
      ctx.strokeStyle = LIMIT_COLOR;
      ctx.setLineDash([6, 4]);
      ctx.lineWidth = 1.5;
      ctx.beginPath(); ctx.moveTo(pad.l, y); ctx.lineTo(w - pad.r, y); ctx.stroke();
      ctx.restore();
      ctx.fillStyle = LIMIT_COLOR;
      // Under the line, inside the plot, clear of the legend above it.
      ctx.textAlign = 'right'; ctx.textBaseline = 'top';
      ctx.fillText(limit.label, w - pad.r - 2, y + 3);
      canvas.dataset.limitValue = String(limit.value);
      canvas.dataset.limitLabel = limit.label;
    } else {
      delete canvas.dataset.limitValue;
      delete canvas.dataset.limitLabel;
    }
    names.forEach(function (name, si) {
      ctx.strokeStyle = COLORS[si % COLORS.length];
      ctx.lineWidth = 2;
      ctx.beginPath();
      points.forEach(function (p, i) {
        const y = yOf(p[name] || 0);
        if (i === 0) ctx.moveTo(x(i), y); else ctx.lineTo(x(i), y);
      });
      ctx.stroke();
      ctx.fillStyle = COLORS[si % COLORS.length];
      ctx.textAlign = 'left'; ctx.textBaseline = 'top';
      ctx.fillText('● ' + words(name), pad.l + 4 + si * 90, 2);
    });
    canvas._chart = { points: points, names: names, unit: unit, x: x, n: n, pad: pad, iw: iw };
    hover(canvas);
  }

  // The tooltip: on pointer moves over the plot, the nearest point's time and values.
  function hover(canvas) {
    if (canvas._hover) return;
    canvas._hover = true;
    const fig = canvas.parentElement;
    const tip = document.createElement('div');
    tip.className = 'chart-tip';
    tip.hidden = true;
    tip.setAttribute('role', 'status');
    fig.append(tip);
    function show(ev) {
      const c = canvas._chart;
      if (!c || !c.n) return;
      const rect = canvas.getBoundingClientRect();
      const px = ev.clientX - rect.left;
      const i = c.n <= 1 ? 0 : Math.max(0, Math.min(c.n - 1, Math.round(((px - c.pad.l) / c.iw) * (c.n - 1))));
      const p = c.points[i];
      const when = new Date(p.t);
      const head = c.unit === 'day' ? when.toLocaleDateString() : when.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
      tip.textContent = '';
      tip.append(document.createTextNode(head));
      c.names.forEach(function (name) {
        tip.append(document.createElement('br'));
        const v = p[name];
        tip.append(document.createTextNode(words(name) + ': ' + (v === null || v === undefined ? '–' : Number(v).toLocaleString())));
      });
      tip.hidden = false;
      const left = Math.min(Math.max(0, canvas.offsetLeft + c.x(i) + 8), fig.clientWidth - tip.offsetWidth - 4);
      tip.style.left = Math.max(0, left) + 'px';
      tip.style.top = (canvas.offsetTop + 4) + 'px';
      canvas.dataset.hoverIndex = String(i);
    }
    canvas.addEventListener('pointermove', show);
    canvas.addEventListener('pointerdown', show);
    canvas.addEventListener('pointerleave', function () { tip.hidden = true; delete canvas.dataset.hoverIndex; });
  }

  window.RotorChart = { draw: draw };
})();
