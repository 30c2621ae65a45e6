// Device page: when this tab made the device's key, show the full config once
// (served config + the private key only this browser holds) as text, QR code and file.
import qrcode from './vendor/qrcode.mjs';
import { stringToBytes } from './vendor/qrcode_UTF8.mjs';

qrcode.stringToBytes = stringToBytes;
const PLACEHOLDER = "# PrivateKey = <this device's private key>";
const SVG = 'http://www.w3.org/2000/svg';

function drawQr(target, text) {
  const qr = qrcode(0, 'M');
  qr.addData(text, 'Byte');
  qr.make();
  const count = qr.getModuleCount();
  const border = 4;
  const size = count + 2 * border;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${size} ${size}`);
  svg.setAttribute('width', String(size * 4));
  svg.setAttribute('height', String(size * 4));
  svg.setAttribute('shape-rendering', 'crispEdges');
  const background = document.createElementNS(SVG, 'rect');
  background.setAttribute('width', String(size));
  background.setAttribute('height', String(size));
  background.setAttribute('fill', '#fff');
  svg.appendChild(background);
  let d = '';
  for (let row = 0; row < count; row += 1) {
    for (let col = 0; col < count; col += 1) {
      if (qr.isDark(row, col)) d += `M${col + border},${row + border}h1v1h-1z`;
    }
  }
  const path = document.createElementNS(SVG, 'path');
  path.setAttribute('d', d);
  path.setAttribute('fill', '#000');
  svg.appendChild(path);
  target.replaceChildren(svg);
}

async function showBrowserConfig() {
  const box = document.getElementById('browser-config');
  if (!box) return;
  const storageKey = `vpngw-key:${box.dataset.publicKey}`;
  const privateKey = sessionStorage.getItem(storageKey);
  if (!privateKey) return;
  const resp = await fetch(box.dataset.configUrl, { credentials: 'same-origin' });
  if (!resp.ok) return;
  const served = await resp.text();
  const full = served.replace(PLACEHOLDER, `PrivateKey = ${privateKey}`);
  document.getElementById('browser-config-text').value = full;
  drawQr(document.getElementById('browser-qr'), full);
  const download = document.getElementById('config-download');
  download.href = URL.createObjectURL(new Blob([full], { type: 'text/plain' }));
  box.hidden = false;
  box.dataset.ready = 'true';
  sessionStorage.removeItem(storageKey);
}

showBrowserConfig();
