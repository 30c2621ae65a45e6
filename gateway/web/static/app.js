// vpngw pages: confirmations, WireGuard keys made in the browser, live device status.
// Plain script, no build step; the pages work for reading without it.
'use strict';

const KEY_PREFIX = 'vpngw-key:';

function b64urlToB64(text) {
  let s = text.replace(/-/g, '+').replace(/_/g, '/');
  while (s.length % 4) s += '=';
  return s;
}

let x25519 = null;
async function canMakeKeys() {
  if (x25519 === null) {
    try {
      await crypto.subtle.generateKey({ name: 'X25519' }, true, ['deriveBits']);
      x25519 = true;
    } catch (_) {
      x25519 = false;
    }
  }
  return x25519;
}

// A WireGuard key pair: X25519, raw 32-byte keys in standard base64.
async function makeKeyPair() {
  const pair = await crypto.subtle.generateKey({ name: 'X25519' }, true, ['deriveBits']);
  const jwk = await crypto.subtle.exportKey('jwk', pair.privateKey);
  return { publicKey: b64urlToB64(jwk.x), privateKey: b64urlToB64(jwk.d) };
}

async function setUpKeyForm(form) {
  const supported = await canMakeKeys();
  const browserChoice = form.querySelector('[data-browser-key]');
  const hiddenSource = form.querySelector('input[type=hidden][name=key_source]');
  if (supported) {
    if (browserChoice) browserChoice.checked = true;
    if (hiddenSource) hiddenSource.value = 'browser';
  } else {
    if (browserChoice) browserChoice.disabled = true;
    const note = form.querySelector('[data-keygen-note]');
    if (note) note.hidden = false;
  }
  form.addEventListener('submit', async (event) => {
    const source = new FormData(form).get('key_source');
    const publicField = form.querySelector('input[name=public_key]');
    if (source !== 'browser' || publicField.value) return;
    event.preventDefault();
    const pair = await makeKeyPair();
    // Kept in this tab only, until the device page has shown the config once.
    sessionStorage.setItem(KEY_PREFIX + pair.publicKey, pair.privateKey);
    publicField.value = pair.publicKey;
    form.submit();
  });
}

function formatBytes(value) {
  let size = Number(value || 0);
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  for (const unit of units) {
    if (size < 1024 || unit === 'GiB') return unit === 'B' ? `${size.toFixed(0)} B` : `${size.toFixed(1)} ${unit}`;
    size /= 1024;
  }
  return `${size.toFixed(1)} TiB`;
}

function showStatus(table, peers) {
  for (const row of table.querySelectorAll('tr[data-peer-id]')) {
    const s = peers[row.dataset.peerId];
    if (!s) continue;
    const cells = {
      connected: s.connected ? 'yes' : 'no',
      latest_handshake: s.latest_handshake || 'never',
      endpoint: s.endpoint || '',
      rx_bytes: formatBytes(s.rx_bytes),
      tx_bytes: formatBytes(s.tx_bytes),
    };
    for (const [field, text] of Object.entries(cells)) {
      const cell = row.querySelector(`[data-field="${field}"]`);
      if (cell && cell.textContent !== text) cell.textContent = text;
    }
  }
}

function refreshLiveStatus(table) {
  const url = table.dataset.liveStatus;
  const period = Number(table.dataset.livePeriod || 5000);
  const tick = async () => {
    try {
      const resp = await fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
      if (!resp.ok || !(resp.headers.get('Content-Type') || '').startsWith('application/json')) return;
      showStatus(table, (await resp.json()).peers);
      table.dataset.liveUpdated = new Date().toISOString();
    } catch (_) {
      // The next tick tries again.
    }
  };
  setInterval(tick, period);
}

document.addEventListener('DOMContentLoaded', () => {
  for (const form of document.querySelectorAll('form[data-confirm]')) {
    form.addEventListener('submit', (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
  for (const form of document.querySelectorAll('form[data-keygen]')) setUpKeyForm(form);
  for (const table of document.querySelectorAll('table[data-live-status]')) refreshLiveStatus(table);
});
