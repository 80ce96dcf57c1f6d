/** A small SVG chart of a state's size and resource count over its versions, built with DOM calls (no library, no markup). */
import type { Version } from '../api-types.js';
import { h, svg } from '../dom.js';
import { formatBytes, formatTime } from '../format.js';

const W = 480;
const H = 210;
const M = { left: 70, right: 44, top: 14, bottom: 42 };

/** A round-ish upper bound for an axis: 1, 2, 2.5 or 5 times a power of ten (powers of 1024 feel wrong for a chart). */
function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** A round upper bound for byte sizes: a nice number of B, KiB, MiB or GiB (so the labels read 2.0 KiB, not 1.95 KiB). */
function niceBytesMax(v: number): number {
  let unit = 1;
  while (v / unit >= 1024 && unit < 1024 ** 3) unit *= 1024;
  return niceMax(v / unit) * unit;
}

function path(points: Array<[number, number] | null>): string {
  let d = '';
  let pen = false;
  for (const p of points) {
    if (!p) {
      pen = false;
      continue;
    }
    d += `${pen ? 'L' : 'M'}${p[0].toFixed(1)},${p[1].toFixed(1)} `;
    pen = true;
  }
  return d.trim();
}

export function historyChart(history: Version[]): HTMLElement {
  const versions = [...history].sort((a, b) => a.seq - b.seq);
  const n = versions.length;
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const x = (i: number) => (n <= 1 ? M.left + plotW / 2 : M.left + (i * plotW) / (n - 1));
  const sizeMax = niceBytesMax(Math.max(0, ...versions.map((v) => v.size)));
  const counts = versions.map((v) => (typeof v.resources === 'number' ? v.resources : null));
  const resMax = niceMax(Math.max(0, ...counts.map((c) => c ?? 0)));
  const ySize = (v: number) => M.top + plotH - (v / sizeMax) * plotH;
  const yRes = (v: number) => M.top + plotH - (v / resMax) * plotH;

  const first = versions[0];
  const last = versions[n - 1];
  const label = n ? `Size and resource count of versions seq ${first!.seq} to ${last!.seq}` : 'No versions';
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label, 'data-testid': 'history-chart', class: 'history-chart' }, svg('title', {}, label));

  // Grid and axes: 0, half and top on both scales.
  for (const f of [0, 0.5, 1]) {
    const y = M.top + plotH - f * plotH;
    root.append(
      svg('line', { x1: M.left, x2: W - M.right, y1: y, y2: y, class: f === 0 ? 'axis' : 'grid' }),
      svg('text', { x: M.left - 6, y: y + 4, 'text-anchor': 'end', class: 'tick tick-size' }, formatBytes(sizeMax * f)),
      svg('text', { x: W - M.right + 6, y: y + 4, 'text-anchor': 'start', class: 'tick tick-resources' }, String(Math.round(resMax * f * 10) / 10)),
    );
  }
  root.append(
    svg('line', { x1: M.left, x2: M.left, y1: M.top, y2: M.top + plotH, class: 'axis' }),
    svg('line', { x1: W - M.right, x2: W - M.right, y1: M.top, y2: M.top + plotH, class: 'axis' }),
    svg('text', { x: M.left + plotW / 2, y: H - 6, 'text-anchor': 'middle', class: 'axis-title' }, 'version (seq)'),
    svg('text', { x: 12, y: M.top + plotH / 2, 'text-anchor': 'middle', transform: `rotate(-90 12 ${M.top + plotH / 2})`, class: 'axis-title title-size' }, 'size'),
    svg('text', { x: W - 8, y: M.top + plotH / 2, 'text-anchor': 'middle', transform: `rotate(90 ${W - 8} ${M.top + plotH / 2})`, class: 'axis-title title-resources' }, 'resources'),
  );
  // X ticks: first, middle and last seq.
  const tickIdx = n <= 1 ? [0] : n === 2 ? [0, 1] : [0, Math.floor((n - 1) / 2), n - 1];
  for (const i of n ? tickIdx : []) {
    root.append(svg('text', { x: x(i), y: M.top + plotH + 16, 'text-anchor': n <= 1 ? 'middle' : i === 0 ? 'start' : i === n - 1 ? 'end' : 'middle', class: 'tick' }, String(versions[i]!.seq)));
  }

  root.append(
    svg('path', { d: path(versions.map((v, i) => [x(i), ySize(v.size)])), class: 'line line-size', fill: 'none' }),
    svg('path', { d: path(counts.map((c, i) => (c === null ? null : [x(i), yRes(c)]))), class: 'line line-resources', fill: 'none' }),
  );
  if (n <= 40) {
    versions.forEach((v, i) => {
      const when = formatTime(v.createdAt);
      root.append(svg('circle', { cx: x(i), cy: ySize(v.size), r: 2.5, class: 'dot dot-size' }, svg('title', {}, `seq ${v.seq} · serial ${v.serial} · ${formatBytes(v.size)} · ${when}`)));
      const c = counts[i];
      if (c !== null && c !== undefined) root.append(svg('rect', { x: x(i) - 2.5, y: yRes(c) - 2.5, width: 5, height: 5, class: 'dot dot-resources' }, svg('title', {}, `seq ${v.seq} · ${c} resource instance${c === 1 ? '' : 's'}`)));
    });
  }

  const legend = h(
    'p',
    { className: 'legend' },
    h('span', { className: 'legend-item' }, h('span', { className: 'swatch swatch-size', attrs: { 'aria-hidden': 'true' } }), 'Size (left axis)'),
    h('span', { className: 'legend-item' }, h('span', { className: 'swatch swatch-resources', attrs: { 'aria-hidden': 'true' } }), 'Resource instances (right axis)'),
  );
  return h('figure', { className: 'chart' }, root, h('figcaption', null, legend));
}
