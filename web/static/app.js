// Rotor dashboard: progressive enhancement shared by every page (copy buttons, the project
// tabs' scroll position). Confirmations are pages of their own, not dialogs.
(function () {
  'use strict';
  document.documentElement.classList.add('js');

  function flash(button, text) {
    const old = button.textContent;
    button.textContent = text;
    setTimeout(function () { button.textContent = old; }, 1500);
  }

  async function copy(text, button) {
    try {
      await navigator.clipboard.writeText(text);
      flash(button, 'Copied');
    } catch (e) {
      // Clipboard API unavailable (non-secure context): select the text for a manual copy.
      const area = document.createElement('textarea');
      area.value = text;
      document.body.appendChild(area);
      area.select();
      const ok = document.execCommand && document.execCommand('copy');
      area.remove();
      flash(button, ok ? 'Copied' : 'Press Ctrl+C');
    }
  }

  document.addEventListener('click', function (ev) {
    const b = ev.target.closest('[data-copy], [data-copy-target]');
    if (!b) return;
    const text = b.dataset.copy !== undefined
      ? b.dataset.copy
      : (document.getElementById(b.dataset.copyTarget) || {}).textContent || '';
    copy(text, b);
  });

  // On a narrow screen the project tabs scroll sideways: bring the current one into view.
  document.querySelectorAll('.tabs').forEach(function (bar) {
    const current = bar.querySelector('[aria-current=page]');
    if (!current || bar.scrollWidth <= bar.clientWidth) return;
    const at = current.getBoundingClientRect().left - bar.getBoundingClientRect().left + bar.scrollLeft;
    bar.scrollLeft = Math.max(0, at - (bar.clientWidth - current.offsetWidth) / 2);
  });

  // Filters that apply on change (the submit button is there for use without JavaScript).
  document.querySelectorAll('#ns-filter select').forEach(function (s) {
    s.addEventListener('change', function () { s.form.submit(); });
  });
})();
