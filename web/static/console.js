// The debug console: a small client for the Centrifugo JSON protocol (v2) over a browser
// WebSocket. It gets short-lived connection and subscription tokens from the dashboard,
// subscribes with join/leave, shows publications and join/leave events as they arrive, and
// publishes or reads presence through the dashboard (server API on the project).
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

  let ws = null;
  let nextId = 1;
  let wanted = false;
  let retry = 0;
  let retryTimer = null;
  const pending = new Map();
  const channels = new Set();

  function setState(text, cls) {
    stateEl.textContent = text;
    dot.className = 'dot ' + cls;
    root.dataset.state = text.toLowerCase().split(' ')[0];
  }

  function entry(kind, channel, body) {
    const li = document.createElement('li');
    li.className = 'k-' + kind;
    const time = document.createElement('time');
    time.textContent = new Date().toLocaleTimeString();
    const k = document.createElement('span');
    k.className = 'kind';
    k.textContent = kind;
    li.append(time, k, document.createTextNode((channel ? channel + ' ' : '') + body));
    li.dataset.kind = kind;
    if (channel) li.dataset.channel = channel;
    log.prepend(li);
    while (log.children.length > 500) log.lastChild.remove();
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

  function onReply(msg) {
    if (msg.id) {
      const p = pending.get(msg.id);
      if (!p) return;
      pending.delete(msg.id);
      if (msg.error) p.reject(new Error(msg.error.message + ' (code ' + msg.error.code + ')'));
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
      entry('pub', ch, JSON.stringify(push.pub.data) + who);
    } else if (push.join) {
      entry('join', ch, 'user ' + push.join.info.user + ' (client ' + push.join.info.client + ')');
    } else if (push.leave) {
      entry('leave', ch, 'user ' + push.leave.info.user + ' (client ' + push.leave.info.client + ')');
    } else if (push.unsubscribe) {
      channels.delete(ch);
      renderChips();
      entry('error', ch, 'unsubscribed by the server (code ' + push.unsubscribe.code + ')');
    } else if (push.disconnect) {
      entry('error', '', 'disconnected: ' + push.disconnect.reason + ' (code ' + push.disconnect.code + ')');
    }
  }

  async function subscribe(channel) {
    const t = await post(root.dataset.tokenUrl, { channel: channel });
    await send({ subscribe: { channel: channel, token: t.sub_token, join_leave: true } });
    channels.add(channel);
    renderChips();
    entry('info', channel, 'subscribed');
  }

  function renderChips() {
    const ul = $('subscriptions');
    ul.textContent = '';
    channels.forEach(function (ch) {
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

  async function connect() {
    wanted = true;
    clearTimeout(retryTimer);
    setState('Connecting…', 'dot-wait');
    let t;
    try {
      t = await post(root.dataset.tokenUrl, {});
    } catch (e) {
      setState('Disconnected', 'dot-off');
      entry('error', '', 'token: ' + e.message);
      return scheduleRetry();
    }
    $('conn-user').textContent = t.user;
    ws = new WebSocket(root.dataset.wsUrl);
    ws.onopen = function () {
      send({ connect: { token: t.token, name: 'rotor-dashboard' } }).then(async function (reply) {
        retry = 0;
        setState('Connected', 'dot-on');
        btn.textContent = 'Disconnect';
        entry('info', '', 'connected as client ' + reply.connect.client);
        for (const ch of Array.from(channels)) {
          try { await subscribe(ch); } catch (e) { entry('error', ch, e.message); }
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
      setState('Disconnected', 'dot-off');
      btn.textContent = 'Connect';
      if (wanted) {
        entry('error', '', 'connection closed (' + ev.code + (ev.reason ? ' ' + ev.reason : '') + ')');
        scheduleRetry();
      }
    };
  }

  function scheduleRetry() {
    if (!wanted) return;
    const delay = Math.min(20000, 500 * Math.pow(2, retry++)) * (0.75 + Math.random() / 2);
    setState('Reconnecting…', 'dot-wait');
    retryTimer = setTimeout(connect, delay);
  }

  btn.addEventListener('click', function () {
    if (ws || retryTimer && wanted) {
      wanted = false;
      clearTimeout(retryTimer);
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
    if (!ws) { channels.add(ch); renderChips(); return connect(); }
    subscribe(ch).catch(function (e) { entry('error', ch, 'subscribe: ' + e.message); });
  });

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
      if (r.error) throw new Error(r.error.message + ' (code ' + r.error.code + ')');
      entry('info', channel, 'published through the server API');
    } catch (e) {
      err.textContent = 'Publish failed: ' + e.message;
      err.hidden = false;
    }
  });

  $('presence-btn').addEventListener('click', async function () {
    const channel = $('pub-channel').value.trim();
    const box = $('presence');
    try {
      const r = await post(root.dataset.presenceUrl, { channel: channel });
      if (r.error) throw new Error(r.error.message + ' (code ' + r.error.code + ')');
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

  $('clear-log').addEventListener('click', function () { log.textContent = ''; });
  connect();
})();
