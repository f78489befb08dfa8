// The debug console: a small client for the Centrifugo JSON protocol (v2) over a browser
// WebSocket. It gets short-lived connection and subscription tokens from the dashboard,
// subscribes with join/leave, shows publications (data pretty-printed) and join/leave events as
// they arrive, logs disconnects and reconnects and restores its subscriptions after one, filters
// the log by channel, publishes or reads presence and history through the dashboard (server API
// on the project), and explains refusals (unknown namespace, permission denied, no history) with
// a link to the setting that would change them.
(function () {
  'use strict';
  const root = document.getElementById('console');
  if (!root) return;
  const csrf = (document.querySelector('meta[name=csrf-token]') || {}).content || '';
  const $ = function (id) { return document.getElementById(id); };
  const log = $('log');
  const stateEl = $('conn-state');
  const dot = $('conn-dot');
  const btn = $('connect-btn');
  const filterEl = $('log-filter');
  let hints = { namespaces: {}, labels: {}, namespaces_url: '' };
  try { hints = JSON.parse(root.dataset.hints || '{}'); } catch (e) { /* hints stay empty */ }

  let ws = null;
  let nextId = 1;
  let wanted = false;
  let retry = 0;
  let retryTimer = null;
  // Whether the connection was lost (not closed by the user): the next connect is a reconnect.
  let lost = false;
  // What the server said in a disconnect push before closing, if anything.
  let pushedDisconnect = null;
  const pending = new Map();
  // channel → { token: whether it was subscribed with a subscription token }
  const channels = new Map();
  const seenChannels = new Set();

  function setState(text, cls) {
    stateEl.textContent = text;
    dot.className = 'dot ' + cls;
    root.dataset.state = text.toLowerCase().split(' ')[0];
  }

  function matches(li) {
    const f = filterEl.value.trim();
    if (!f) return true;
    // Connection events concern every channel and stay in view.
    if (!li.dataset.channel) return true;
    return li.dataset.channel.indexOf(f) !== -1;
  }

  function applyFilter() {
    let shown = 0;
    Array.prototype.forEach.call(log.children, function (li) {
      const ok = matches(li);
      li.hidden = !ok;
      if (ok) shown += 1;
    });
    $('log-count').textContent = filterEl.value.trim()
      ? shown + ' of ' + log.children.length + ' shown' : '';
    root.dataset.shown = String(shown);
  }

  function rememberChannel(channel) {
    if (!channel || seenChannels.has(channel)) return;
    seenChannels.add(channel);
    const opt = document.createElement('option');
    opt.value = channel;
    $('log-channels').append(opt);
  }

  // One log line: its kind, channel and text, and `data` pretty-printed when given.
  function entry(kind, channel, body, data) {
    const li = document.createElement('li');
    li.className = 'k-' + kind;
    const time = document.createElement('time');
    time.textContent = new Date().toLocaleTimeString();
    const k = document.createElement('span');
    k.className = 'kind';
    k.textContent = kind;
    li.append(time, k, document.createTextNode((channel ? channel + ' ' : '') + body));
    if (data !== undefined) {
      const pre = document.createElement('pre');
      pre.className = 'json';
      pre.textContent = JSON.stringify(data, null, 2);
      li.append(pre);
    }
    li.dataset.kind = kind;
    if (channel) { li.dataset.channel = channel; rememberChannel(channel); }
    li.hidden = !matches(li);
    log.prepend(li);
    while (log.children.length > 500) log.lastChild.remove();
    if (filterEl.value.trim()) applyFilter();
  }

  // An error carrying the protocol's code, so hints can tell refusals apart.
  function coded(e) {
    const err = new Error(e.message + ' (code ' + e.code + ')');
    err.code = e.code;
    return err;
  }

  async function post(url, body) {
    const r = await fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: JSON.stringify(body || {}),
    });
    const type = r.headers.get('content-type') || '';
    if (!type.includes('application/json')) throw new Error('session expired: reload the page');
    const data = await r.json();
    if (!r.ok) throw new Error((data.error && data.error.message) || ('HTTP ' + r.status));
    return data;
  }

  function send(cmd) {
    return new Promise(function (resolve, reject) {
      if (!ws || ws.readyState !== WebSocket.OPEN) return reject(new Error('not connected'));
      const id = nextId++;
      pending.set(id, { resolve: resolve, reject: reject });
      cmd.id = id;
      ws.send(JSON.stringify(cmd));
    });
  }

  function namespaceOf(channel) {
    const name = channel.charAt(0) === '$' ? channel.slice(1) : channel;
    const i = name.indexOf(':');
    return i === -1 ? '' : name.slice(0, i);
  }

  // Shows `text` in the hint box `box`, with a link when given; hides it for null.
  function showHint(box, hint) {
    box.textContent = '';
    box.hidden = !hint;
    if (!hint) return;
    box.append(document.createTextNode(hint.text + ' '));
    if (hint.href) {
      const a = document.createElement('a');
      a.href = hint.href;
      a.textContent = hint.link;
      box.append(a);
    }
    box.dataset.code = String(hint.code);
  }

  // What to do about error `code` on `channel` when `action` (subscribe, history) was refused.
  function hintFor(channel, code, action) {
    const ns = namespaceOf(channel);
    const info = ns ? hints.namespaces[ns] : null;
    const labels = hints.labels || {};
    const list = hints.namespaces_url;
    if (code === 102) {
      return ns && !info
        ? { code: code, text: 'There is no namespace “' + ns + '” in this project, so “' + channel + '” cannot be used.', href: list + '#ns-new', link: 'Create the namespace “' + ns + '”' }
        : { code: code, text: 'The project does not know the channel “' + channel + '” (its namespace may have just been removed).', href: list, link: 'See the namespaces' };
    }
    if (code === 103 && action === 'subscribe') {
      if (channel.charAt(0) === '$') {
        return { code: code, text: 'Channels starting with $ are private: clients need a subscription token for them.' };
      }
      if (!ns) {
        return { code: code, text: 'Channels without a namespace let clients subscribe only with a subscription token. Put the channel in a namespace that has “' + labels.subscribe + '” turned on.', href: list, link: 'Namespaces' };
      }
      return { code: code, text: 'Namespace “' + ns + '” does not let connected users subscribe by themselves: turn on “' + labels.subscribe + '” (or give clients subscription tokens).', href: info ? info.url : list, link: 'Edit namespace “' + ns + '”' };
    }
    if (code === 108 && action === 'history') {
      if (!ns) {
        return { code: code, text: 'Channels without a namespace keep no history here. Use a namespace that keeps history.', href: list, link: 'Namespaces' };
      }
      return { code: code, text: 'Namespace “' + ns + '” keeps no history: set “' + labels.history_size + '” and “' + labels.history_ttl + '”.', href: info ? info.url : list, link: 'Edit namespace “' + ns + '”' };
    }
    if (code === 103) {
      return { code: code, text: 'Permission denied on “' + channel + '”.' };
    }
    return null;
  }

  function onReply(msg) {
    if (msg.id) {
      const p = pending.get(msg.id);
      if (!p) return;
      pending.delete(msg.id);
      if (msg.error) p.reject(coded(msg.error));
      else p.resolve(msg);
      return;
    }
    const push = msg.push;
    if (!push) {
      // An empty object is the server's ping: answer with a pong.
      if (ws && Object.keys(msg).length === 0) ws.send('{}');
      return;
    }
    const ch = push.channel || '';
    if (push.pub) {
      const who = push.pub.info ? ' from ' + push.pub.info.user : '';
      const at = push.pub.offset ? ' #' + push.pub.offset : '';
      entry('pub', ch, 'publication' + at + who, push.pub.data);
    } else if (push.join) {
      entry('join', ch, 'user ' + push.join.info.user + ' (client ' + push.join.info.client + ')');
    } else if (push.leave) {
      entry('leave', ch, 'user ' + push.leave.info.user + ' (client ' + push.leave.info.client + ')');
    } else if (push.unsubscribe) {
      channels.delete(ch);
      renderChips();
      entry('error', ch, 'unsubscribed by the server (code ' + push.unsubscribe.code + ')');
    } else if (push.disconnect) {
      pushedDisconnect = push.disconnect;
    }
  }

  async function subscribe(channel, withToken) {
    const cmd = { channel: channel, join_leave: true };
    if (withToken) cmd.token = (await post(root.dataset.tokenUrl, { channel: channel })).sub_token;
    await send({ subscribe: cmd });
    channels.set(channel, { token: withToken });
    renderChips();
  }

  function renderChips() {
    const ul = $('subscriptions');
    ul.textContent = '';
    channels.forEach(function (_, ch) {
      const li = document.createElement('li');
      li.textContent = ch;
      const x = document.createElement('button');
      x.type = 'button';
      x.textContent = '×';
      x.setAttribute('aria-label', 'Unsubscribe from ' + ch);
      x.addEventListener('click', function () {
        send({ unsubscribe: { channel: ch } }).catch(function () {});
        channels.delete(ch);
        renderChips();
        entry('info', ch, 'unsubscribed');
      });
      li.append(x);
      ul.append(li);
    });
  }

  // Subscribes again to everything that was subscribed before the connection was lost.
  async function restore() {
    for (const [ch, how] of Array.from(channels)) {
      try {
        await subscribe(ch, how.token);
        entry('restored', ch, 'subscription restored');
      } catch (e) {
        channels.delete(ch);
        renderChips();
        entry('error', ch, 'could not restore the subscription: ' + e.message);
      }
    }
  }

  async function connect() {
    wanted = true;
    clearTimeout(retryTimer);
    retryTimer = null;
    setState(lost ? 'Reconnecting…' : 'Connecting…', 'dot-wait');
    let t;
    try {
      t = await post(root.dataset.tokenUrl, {});
    } catch (e) {
      setState('Disconnected', 'dot-off');
      entry('error', '', 'token: ' + e.message);
      return scheduleRetry();
    }
    $('conn-user').textContent = t.user;
    root.dataset.user = t.user;
    pushedDisconnect = null;
    ws = new WebSocket(root.dataset.wsUrl);
    ws.onopen = function () {
      send({ connect: { token: t.token, name: 'rotor-dashboard' } }).then(async function (reply) {
        retry = 0;
        setState('Connected', 'dot-on');
        btn.textContent = 'Disconnect';
        if (lost) {
          entry('reconnect', '', 'reconnected as client ' + reply.connect.client +
            (channels.size ? '; restoring ' + channels.size + ' subscription(s)' : ''));
        } else {
          entry('info', '', 'connected as client ' + reply.connect.client);
        }
        const wasLost = lost;
        lost = false;
        if (wasLost) await restore();
        else {
          for (const [ch, how] of Array.from(channels)) {
            try { await subscribe(ch, how.token); entry('info', ch, 'subscribed'); } catch (e) { refused(ch, e); }
          }
        }
      }).catch(function (e) { entry('error', '', 'connect: ' + e.message); });
    };
    ws.onmessage = function (ev) {
      String(ev.data).split('\n').forEach(function (line) {
        if (!line.trim()) return;
        try { onReply(JSON.parse(line)); } catch (e) { entry('error', '', 'unreadable frame'); }
      });
    };
    ws.onclose = function (ev) {
      pending.forEach(function (p) { p.reject(new Error('connection closed')); });
      pending.clear();
      ws = null;
      btn.textContent = 'Connect';
      if (!wanted) { setState('Disconnected', 'dot-off'); return; }
      const code = pushedDisconnect ? pushedDisconnect.code : ev.code;
      const reason = pushedDisconnect ? pushedDisconnect.reason : ev.reason;
      // Centrifugo's codes: 3500–3999 and 4500–4999 ask clients not to reconnect.
      const terminal = (code >= 3500 && code < 4000) || (code >= 4500 && code < 5000);
      entry('disconnect', '', 'disconnected (code ' + code + (reason ? ', ' + reason : '') + ')' +
        (terminal ? '; the server asked not to reconnect' : '; reconnecting'));
      lost = true;
      if (terminal) {
        wanted = false;
        setState('Disconnected', 'dot-off');
        return;
      }
      scheduleRetry();
    };
  }

  function scheduleRetry() {
    if (!wanted) return;
    const delay = Math.min(20000, 500 * Math.pow(2, retry++)) * (0.75 + Math.random() / 2);
    setState('Reconnecting…', 'dot-wait');
    retryTimer = setTimeout(connect, delay);
  }

  // Logs a refused subscription and shows what would let it through.
  function refused(ch, e) {
    entry('error', ch, 'subscribe: ' + e.message);
    showHint($('sub-hint'), hintFor(ch, e.code, 'subscribe'));
  }

  btn.addEventListener('click', function () {
    if (ws || retryTimer && wanted) {
      wanted = false;
      lost = false;
      clearTimeout(retryTimer);
      retryTimer = null;
      if (ws) ws.close(1000, 'closed by user');
      setState('Disconnected', 'dot-off');
      btn.textContent = 'Connect';
    } else {
      connect();
    }
  });

  $('subscribe-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    const ch = $('sub-channel').value.trim();
    if (!ch) return;
    const withToken = $('sub-with-token').checked;
    showHint($('sub-hint'), null);
    if (!ws) { channels.set(ch, { token: withToken }); renderChips(); return connect(); }
    subscribe(ch, withToken).then(function () { entry('info', ch, 'subscribed'); })
      .catch(function (e) { refused(ch, e); });
  });

  filterEl.addEventListener('input', applyFilter);

  $('publish-form').addEventListener('submit', async function (ev) {
    ev.preventDefault();
    const err = $('pub-error');
    err.hidden = true;
    let data;
    try { data = JSON.parse($('pub-data').value); } catch (e) {
      err.textContent = 'Data must be valid JSON: ' + e.message;
      err.hidden = false;
      return;
    }
    const channel = $('pub-channel').value.trim();
    try {
      const r = await post(root.dataset.publishUrl, { channel: channel, data: data });
      if (r.error) throw coded(r.error);
      entry('info', channel, 'published through the server API');
    } catch (e) {
      err.textContent = 'Publish failed: ' + e.message;
      err.hidden = false;
      const hint = e.code === 102 ? hintFor(channel, 102, 'publish') : null;
      if (hint) err.textContent += ' ' + hint.text;
    }
  });

  $('presence-btn').addEventListener('click', async function () {
    const channel = $('pub-channel').value.trim();
    const box = $('presence');
    try {
      const r = await post(root.dataset.presenceUrl, { channel: channel });
      if (r.error) throw coded(r.error);
      const clients = Object.values(r.result.presence || {});
      box.textContent = '';
      const h = document.createElement('p');
      h.textContent = clients.length + ' client(s) in ' + channel;
      const ul = document.createElement('ul');
      clients.forEach(function (c) {
        const li = document.createElement('li');
        li.textContent = c.user + ' (client ' + c.client + ')';
        ul.append(li);
      });
      box.append(h, ul);
    } catch (e) {
      box.textContent = 'Presence: ' + e.message;
    }
  });

  $('history-btn').addEventListener('click', async function () {
    const channel = $('pub-channel').value.trim();
    const box = $('history');
    const hintBox = $('history-hint');
    showHint(hintBox, null);
    box.textContent = '';
    try {
      const r = await post(root.dataset.historyUrl, { channel: channel });
      if (r.error) throw coded(r.error);
      const pubs = r.result.publications || [];
      const h = document.createElement('p');
      h.textContent = pubs.length
        ? 'The newest ' + pubs.length + ' publication(s) kept in ' + channel + ' (stream position ' + r.result.offset + '):'
        : 'No publications kept in ' + channel + ' right now.';
      const ol = document.createElement('ol');
      pubs.forEach(function (p) {
        const li = document.createElement('li');
        li.dataset.offset = String(p.offset || 0);
        li.append(document.createTextNode('#' + (p.offset || 0) + (p.info ? ' from ' + p.info.user : '')));
        const pre = document.createElement('pre');
        pre.className = 'json';
        pre.textContent = JSON.stringify(p.data, null, 2);
        li.append(pre);
        ol.append(li);
      });
      box.append(h, ol);
    } catch (e) {
      box.textContent = 'History: ' + e.message;
      showHint(hintBox, hintFor(channel, e.code, 'history'));
    }
  });

  $('clear-log').addEventListener('click', function () { log.textContent = ''; applyFilter(); });
  connect();
})();
