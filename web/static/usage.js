// The usage page: fetch the series for the chosen range and namespace, draw the charts and
// the totals, and refresh every five seconds while the page is open.
(function () {
  'use strict';
  const root = document.getElementById('usage');
  if (!root) return;
  const src = root.dataset.src;
  const updated = document.getElementById('usage-updated');
  let last = null;

  function render(data) {
    last = data;
    ['connections', 'published', 'delivered', 'api_calls', 'errors'].forEach(function (k) {
      const el = document.getElementById('stat-' + k);
      if (el) el.textContent = Number(data.totals[k] || 0).toLocaleString();
      root.dataset['total' + k.replace(/(^|_)(\w)/g, function (m, a, b) { return b.toUpperCase(); })] = String(data.totals[k] || 0);
    });
    root.querySelectorAll('canvas[data-series]').forEach(function (c) {
      const names = c.dataset.series.split(',');
      window.RotorChart.draw(c, data.points, names, data.step);
      const sums = names.map(function (n) {
        return n.replace('_', ' ') + ' ' + data.points.reduce(function (a, p) { return a + (p[n] || 0); }, 0);
      });
      c.setAttribute('aria-label', c.parentElement.querySelector('figcaption').textContent + ': ' + sums.join(', '));
    });
    updated.textContent = 'Live · updated ' + new Date().toLocaleTimeString();
  }

  async function refresh() {
    try {
      const r = await fetch(src, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
      if (!r.ok) throw new Error('HTTP ' + r.status);
      render(await r.json());
    } catch (e) {
      updated.textContent = 'Could not load usage (' + e.message + '); retrying…';
    }
  }

  refresh();
  setInterval(function () { if (!document.hidden) refresh(); }, 5000);
  window.addEventListener('resize', function () { if (last) render(last); });
})();
