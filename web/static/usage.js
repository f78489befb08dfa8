// The usage page: fetch the series for the chosen range and namespace, draw the charts (with
// the plan's limits as labelled lines) and the totals, and refresh every five seconds while the
// page is open. "Connections now" is the project's live count, the same on every range; API
// calls and errors are counted for the whole project only, and say so when a namespace is chosen.
(function () {
  'use strict';
  const root = document.getElementById('usage');
  if (!root) return;
  const src = root.dataset.src;
  const updated = document.getElementById('usage-updated');
  const NOT_PER_NAMESPACE = 'not per namespace';
  let last = null;

  function camel(k) { return k.replace(/(^|_)(\w)/g, function (m, a, b) { return b.toUpperCase(); }); }
  function num(v) { return Number(v || 0).toLocaleString(); }

  function limitOf(data, key) {
    const v = data.limits && data.limits[key];
    if (!v) return null;
    if (key === 'connections') return { value: v, label: 'plan limit ' + num(v) };
    return { value: v, label: 'plan limit ' + num(data.limits.publish_rate) + '/s = ' + num(v) + ' a ' + data.step };
  }

  function render(data) {
    last = data;
    const project = data.not_per_namespace || [];
    ['connections', 'published', 'delivered', 'api_calls', 'errors'].forEach(function (k) {
      const el = document.getElementById('stat-' + k);
      const v = data.totals[k];
      const whole = project.indexOf(k) !== -1;
      if (el) {
        el.textContent = whole ? NOT_PER_NAMESPACE : num(v);
        el.classList.toggle('stat-na', whole);
      }
      root.dataset['total' + camel(k)] = whole ? 'n/a' : String(v || 0);
    });
    const connLimit = data.limits && data.limits.connections;
    document.getElementById('stat-connections-limit').textContent =
      connLimit ? 'of ' + num(connLimit) + ' allowed' : '';
    root.querySelectorAll('canvas[data-series]').forEach(function (c) {
      const names = c.dataset.series.split(',');
      const limit = c.dataset.limit ? limitOf(data, c.dataset.limit) : null;
      // A series counted for the whole project only is not drawn as zeros for a namespace.
      const drawn = names.filter(function (n) { return project.indexOf(n) === -1; });
      window.RotorChart.draw(c, data.points, drawn, data.step, { limit: limit });
      if (c.dataset.limit) {
        const note = document.getElementById('limit-' + c.dataset.limit);
        note.textContent = limit ? 'Dashed line: ' + limit.label + ' (the project’s, for all channels).' : '';
      }
      const na = names.filter(function (n) { return project.indexOf(n) !== -1; });
      const noteNa = document.getElementById('note-' + names[0]);
      if (noteNa) {
        noteNa.textContent = na.length ? 'Counted for the whole project only: ' + NOT_PER_NAMESPACE + '.' : '';
      }
      const sums = names.map(function (n) {
        if (project.indexOf(n) !== -1) return n.replace('_', ' ') + ' ' + NOT_PER_NAMESPACE;
        return n.replace('_', ' ') + ' ' + data.points.reduce(function (a, p) { return a + (p[n] || 0); }, 0);
      });
      c.setAttribute('aria-label', c.parentElement.querySelector('figcaption').textContent + ': ' + sums.join(', '));
    });
    updated.textContent = 'Live · updated ' + new Date().toLocaleTimeString();
    root.dataset.updates = String(Number(root.dataset.updates || 0) + 1);
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
