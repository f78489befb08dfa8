// A small line chart on <canvas>: time on x, one or more series on y, sharp on high-DPI
// screens. Rotor's own; no charting library needed for four charts.
(function () {
  'use strict';
  const COLORS = ['#4338ca', '#0ea5e9', '#16a34a', '#dc2626'];

  function niceMax(v) {
    if (v <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    const n = v / p;
    return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * p;
  }

  function label(t, step) {
    const d = new Date(t);
    if (step === 'day') return (d.getMonth() + 1) + '/' + d.getDate();
    return String(d.getHours()).padStart(2, '0') + ':' + String(d.getMinutes()).padStart(2, '0');
  }

  function fmt(v) {
    if (v >= 1e6) return (v / 1e6).toFixed(1) + 'M';
    if (v >= 1e3) return (v / 1e3).toFixed(1) + 'k';
    return String(v);
  }

  function draw(canvas, points, names, step) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 600;
    const h = canvas.clientHeight || 200;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const pad = { l: 40, r: 10, t: 18, b: 22 };
    const iw = w - pad.l - pad.r;
    const ih = h - pad.t - pad.b;
    let max = 0;
    points.forEach(function (p) { names.forEach(function (n) { max = Math.max(max, p[n] || 0); }); });
    max = niceMax(max);
    ctx.font = '11px system-ui, sans-serif';
    ctx.fillStyle = '#5b6178';
    ctx.strokeStyle = '#e3e6ef';
    ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = pad.t + ih - (ih * i) / 4;
      ctx.beginPath(); ctx.moveTo(pad.l, y); ctx.lineTo(w - pad.r, y); ctx.stroke();
      ctx.textAlign = 'right'; ctx.textBaseline = 'middle';
      ctx.fillText(fmt((max * i) / 4), pad.l - 6, y);
    }
    const n = points.length;
    const x = function (i) { return pad.l + (n <= 1 ? iw / 2 : (iw * i) / (n - 1)); };
    ctx.textAlign = 'center'; ctx.textBaseline = 'top';
    const ticks = Math.min(6, n);
    for (let k = 0; k < ticks; k++) {
      const i = Math.round((k * (n - 1)) / Math.max(1, ticks - 1));
      // The first and last labels hug the plot's edges so they are never clipped.
      ctx.textAlign = k === 0 && ticks > 1 ? 'left' : k === ticks - 1 && ticks > 1 ? 'right' : 'center';
      if (points[i]) ctx.fillText(label(points[i].t, step), x(i), h - pad.b + 6);
    }
    names.forEach(function (name, si) {
      ctx.strokeStyle = COLORS[si % COLORS.length];
      ctx.lineWidth = 2;
      ctx.beginPath();
      points.forEach(function (p, i) {
        const y = pad.t + ih - (ih * (p[name] || 0)) / max;
        if (i === 0) ctx.moveTo(x(i), y); else ctx.lineTo(x(i), y);
      });
      ctx.stroke();
      ctx.fillStyle = COLORS[si % COLORS.length];
      ctx.textAlign = 'left'; ctx.textBaseline = 'top';
      ctx.fillText('● ' + name.replace('_', ' '), pad.l + 4 + si * 90, 2);
    });
  }

  window.RotorChart = { draw: draw };
})();
