// clawgate WebChat: talks the OpenClaw gateway protocol (v4) to the gateway
// that served this page. No framework, no build step; text goes in with textContent only.
'use strict';

const PROTOCOL = 4;
const SCOPES = ['operator.read', 'operator.write'];
const CLIENT = { id: 'webchat', version: '1.0.0', platform: 'web', mode: 'webchat', displayName: 'WebChat' };
const REQUEST_TIMEOUT_MS = 30000;

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.hash.slice(1));
const sessionKey = params.get('session') || 'main';
if (params.has('token')) {
  sessionStorage.setItem('clawgate.token', params.get('token'));
  params.delete('token');
  const rest = params.toString();
  history.replaceState(null, '', location.pathname + location.search + (rest ? '#' + rest : ''));
}

// ---- encodings ----
const enc = new TextEncoder();
function b64url(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

// ---- IndexedDB: the device key (non-extractable) and the device token ----
function idb() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open('clawgate-webchat', 1);
    req.onupgradeneeded = () => req.result.createObjectStore('kv');
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}
async function kv(mode, fn) {
  const db = await idb();
  return new Promise((resolve, reject) => {
    const tx = db.transaction('kv', mode);
    const req = fn(tx.objectStore('kv'));
    tx.oncomplete = () => { db.close(); resolve(req.result); };
    tx.onerror = () => { db.close(); reject(tx.error); };
  });
}
const kvGet = (k) => kv('readonly', (s) => s.get(k));
const kvPut = (k, v) => kv('readwrite', (s) => s.put(v, k));
const kvDel = (k) => kv('readwrite', (s) => s.delete(k));

async function loadIdentity() {
  const have = await kvGet('identity');
  if (have && have.privateKey && have.deviceId) return have;
  const kp = await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']);
  const raw = new Uint8Array(await crypto.subtle.exportKey('raw', kp.publicKey));
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', raw));
  const id = { privateKey: kp.privateKey, publicKey: b64url(raw), deviceId: hex(digest) };
  await kvPut('identity', id);
  return id;
}

// v3|deviceId|client.id|client.mode|role|scopes|signedAt|token|nonce|platform|deviceFamily
async function signConnect(identity, nonce, signedAt, token) {
  const payload = ['v3', identity.deviceId, CLIENT.id, CLIENT.mode, 'operator', SCOPES.join(','),
    String(signedAt), token, nonce, CLIENT.platform.toLowerCase(), ''].join('|');
  const sig = await crypto.subtle.sign({ name: 'Ed25519' }, identity.privateKey, enc.encode(payload));
  return b64url(new Uint8Array(sig));
}

// ---- UI ----
function setStatus(state, text) {
  const el = $('status');
  el.dataset.state = state;
  el.textContent = text || state;
  const ready = state === 'connected';
  $('input').disabled = !ready;
  $('send').disabled = !ready;
  updateAbort();
}
function showError(msg) {
  const el = $('error');
  el.hidden = !msg;
  el.textContent = msg || '';
}
const bubbles = new Map(); // runId → assistant bubble
let activeRuns = new Set();

function updateAbort() {
  $('abort').disabled = !(conn && conn.ready && activeRuns.size > 0);
}
function bubble(role, text, runId) {
  const el = document.createElement('div');
  el.className = 'msg ' + role;
  const t = document.createElement('span');
  t.className = 'text';
  t.textContent = text;
  el.appendChild(t);
  if (runId) el.dataset.runId = runId;
  $('messages').appendChild(el);
  el.scrollIntoView({ block: 'end' });
  return el;
}
function setNote(el, note) {
  let n = el.querySelector('.note');
  if (!n) {
    n = document.createElement('span');
    n.className = 'note';
    el.appendChild(n);
  }
  n.textContent = note;
}
function textOf(message) {
  if (!message || !Array.isArray(message.content)) return '';
  return message.content.filter((c) => c && c.type === 'text').map((c) => c.text).join('');
}
function assistantBubble(runId) {
  let el = bubbles.get(runId);
  if (!el) {
    el = bubble('assistant', '', runId);
    bubbles.set(runId, el);
  }
  return el;
}
function renderHistory(messages) {
  $('messages').replaceChildren();
  bubbles.clear();
  for (const m of messages) {
    if (m.role !== 'user' && m.runId) activeRuns.delete(m.runId); // it ended while we were away
    const el = bubble(m.role === 'user' ? 'user' : 'assistant', textOf(m), m.role === 'user' ? '' : m.runId);
    if (m.role !== 'user' && m.runId) bubbles.set(m.runId, el);
    if (m.stopReason === 'aborted') setNote(el, 'stopped');
    if (m.stopReason === 'error') { el.classList.add('error'); setNote(el, 'error: ' + (m.errorMessage || 'failed')); }
  }
  // Runs still going on the gateway keep streaming into new bubbles.
  for (const runId of activeRuns) assistantBubble(runId).classList.add('streaming');
}

function onChat(p) {
  if (p.sessionKey !== sessionKey) return;
  if (p.message && p.message.role === 'user') { // a provider user's message, not a reply
    if (p.state === 'final') bubble('user', textOf(p.message));
    return;
  }
  const el = assistantBubble(p.runId);
  const text = textOf(p.message);
  switch (p.state) {
    case 'delta':
      activeRuns.add(p.runId);
      el.classList.add('streaming');
      el.querySelector('.text').textContent = text;
      break;
    case 'final':
      activeRuns.delete(p.runId);
      el.classList.remove('streaming');
      el.querySelector('.text').textContent = text;
      break;
    case 'aborted':
      activeRuns.delete(p.runId);
      el.classList.remove('streaming');
      if (p.message) el.querySelector('.text').textContent = text;
      setNote(el, 'stopped');
      break;
    case 'error':
      activeRuns.delete(p.runId);
      el.classList.remove('streaming');
      el.classList.add('error');
      setNote(el, 'error: ' + (p.errorMessage || 'failed'));
      break;
  }
  el.scrollIntoView({ block: 'end' });
  updateAbort();
}

// ---- connection ----
let conn = null;
let backoff = 1000;
let reconnectTimer = null;

class Conn {
  constructor(identity) {
    this.identity = identity;
    this.ready = false;
    this.pending = new Map();
    this.nextId = 1;
    this.lastSeq = 0;
    this.ws = new WebSocket(location.origin.replace(/^http/, 'ws'));
    this.ws.onmessage = (ev) => this.onFrame(ev.data);
    this.ws.onclose = (ev) => this.onClose(ev);
  }
  send(obj) { this.ws.send(JSON.stringify(obj)); }
  request(method, params) {
    const id = String(this.nextId++);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.pending.delete(id); reject(new Error(method + ': timed out')); }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
      this.send({ type: 'req', id, method, params });
    });
  }
  async onFrame(data) {
    let f;
    try { f = JSON.parse(data); } catch { return; }
    if (f.type === 'event' && f.event === 'connect.challenge') return this.connect(f.payload);
    if (f.type === 'res') {
      const p = this.pending.get(f.id);
      if (!p) return;
      this.pending.delete(f.id);
      clearTimeout(p.timer);
      if (f.ok) p.resolve(f.payload); else p.reject(Object.assign(new Error(f.error.message), { shape: f.error }));
      return;
    }
    if (f.type === 'event' && this.ready) {
      if (typeof f.seq === 'number') {
        const gap = this.lastSeq && f.seq !== this.lastSeq + 1;
        this.lastSeq = f.seq;
        if (gap) refreshHistory();
      }
      if (f.event === 'chat') onChat(f.payload);
    }
  }
  async connect(challenge) {
    const deviceToken = await kvGet('deviceToken');
    const shared = sessionStorage.getItem('clawgate.token') || '';
    const auth = {};
    let sigToken = '';
    if (deviceToken) { auth.deviceToken = deviceToken; sigToken = deviceToken; this.usedDeviceToken = true; }
    else if (shared) { auth.token = shared; sigToken = shared; }
    if (!sigToken) { this.ws.close(); return showTokenPanel(); }
    const signedAt = challenge.ts || Date.now();
    const signature = await signConnect(this.identity, challenge.nonce, signedAt, sigToken);
    try {
      const hello = await this.request('connect', {
        minProtocol: PROTOCOL, maxProtocol: PROTOCOL, client: CLIENT, role: 'operator', scopes: SCOPES, caps: [],
        auth, device: { id: this.identity.deviceId, publicKey: this.identity.publicKey, signature, signedAt, nonce: challenge.nonce },
      });
      if (hello.auth && hello.auth.deviceToken) await kvPut('deviceToken', hello.auth.deviceToken);
      this.ready = true;
      backoff = 1000;
      $('pairing').hidden = true;
      $('token-panel').hidden = true;
      showError('');
      setStatus('connected');
      await refreshHistory();
    } catch (err) {
      this.onConnectError(err);
    }
  }
  async onConnectError(err) {
    const shape = err.shape || {};
    const code = (shape.details && shape.details.code) || '';
    if (code === 'PAIRING_REQUIRED') {
      $('request-id').textContent = shape.details.requestId || '(pending)';
      $('device-id').textContent = this.identity.deviceId;
      $('pairing').hidden = false;
      setStatus('pairing', 'waiting for approval');
      this.retryIn = 2000;
      return;
    }
    if (code === 'AUTH_DEVICE_TOKEN_MISMATCH' || code === 'AUTH_SCOPE_MISMATCH') {
      await kvDel('deviceToken'); // revoked or rotated: pair again with the gateway token
      this.retryIn = 500;
      return;
    }
    if (code === 'AUTH_TOKEN_MISMATCH' || code === 'AUTH_TOKEN_MISSING') {
      sessionStorage.removeItem('clawgate.token');
      this.retryIn = -1;
      showTokenPanel('That token was not accepted.');
      return;
    }
    if (code === 'AUTH_RATE_LIMITED') {
      this.retryIn = shape.retryAfterMs || 60000;
      showError('Too many failed attempts; retrying in ' + Math.round(this.retryIn / 1000) + ' s.');
      return;
    }
    showError(err.message);
  }
  onClose() {
    for (const p of this.pending.values()) { clearTimeout(p.timer); p.reject(new Error('connection closed')); }
    this.pending.clear();
    const wasReady = this.ready;
    this.ready = false;
    if (conn !== this) return;
    if (this.retryIn === -1) return; // waiting for the user
    let delay = this.retryIn || backoff;
    if (!this.retryIn) backoff = Math.min(backoff * 2, 10000);
    if (wasReady || $('status').dataset.state !== 'pairing') setStatus('reconnecting', 'reconnecting…');
    updateAbort();
    reconnectTimer = setTimeout(start, delay);
  }
}

async function refreshHistory() {
  if (!conn || !conn.ready) return;
  try {
    const h = await conn.request('chat.history', { sessionKey, limit: 200 });
    renderHistory(h.messages || []);
  } catch (err) {
    showError('history: ' + err.message);
  }
}

function showTokenPanel(msg) {
  $('token-panel').hidden = false;
  setStatus('token', 'token required');
  if (msg) showError(msg);
  $('token-input').focus();
}

let identityPromise = null;
async function start() {
  clearTimeout(reconnectTimer);
  if (!window.isSecureContext || !crypto.subtle) {
    setStatus('error', 'unsupported');
    showError('WebChat needs a secure context (https, or http on localhost) for WebCrypto.');
    return;
  }
  try {
    identityPromise = identityPromise || loadIdentity();
    const identity = await identityPromise;
    if ($('status').dataset.state === 'starting') setStatus('connecting', 'connecting…');
    conn = new Conn(identity);
  } catch (err) {
    identityPromise = null;
    setStatus('error', 'error');
    showError('Could not create a device key (this browser needs WebCrypto Ed25519): ' + err.message);
  }
}

$('token-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const t = $('token-input').value.trim();
  if (!t) return;
  sessionStorage.setItem('clawgate.token', t);
  $('token-input').value = '';
  $('token-panel').hidden = true;
  showError('');
  start();
});

$('composer').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const text = $('input').value;
  if (!text.trim() || !conn || !conn.ready) return;
  $('input').value = '';
  const runId = crypto.randomUUID();
  bubble('user', text);
  activeRuns.add(runId);
  assistantBubble(runId).classList.add('streaming');
  updateAbort();
  try {
    await conn.request('chat.send', { sessionKey, message: text, idempotencyKey: runId });
  } catch (err) {
    activeRuns.delete(runId);
    const el = assistantBubble(runId);
    el.classList.remove('streaming');
    el.classList.add('error');
    setNote(el, 'error: ' + err.message);
    updateAbort();
  }
});

$('input').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey) {
    ev.preventDefault();
    $('composer').requestSubmit();
  }
});

$('abort').addEventListener('click', async () => {
  if (!conn || !conn.ready) return;
  try {
    await conn.request('chat.abort', { sessionKey });
  } catch (err) {
    showError('stop: ' + err.message);
  }
});

$('session').textContent = sessionKey;
start();
