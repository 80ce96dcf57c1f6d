/**
 * Rewrites the top-level `serial` and `lineage` of a state body and leaves every other byte as it
 * was. A parse-and-reserialise would reformat the document and round integers above 2^53 in
 * resource attributes; this scanner only finds the two values' spans at depth 1.
 * The body must already have passed parseStateHeader (a JSON object with both keys).
 */
export function rewriteStateHeader(body: Buffer, header: { serial: number; lineage: string }): Buffer {
  const text = body.toString('utf8');
  const spans = topLevelValueSpans(text, ['serial', 'lineage']);
  const replacements = [
    { ...spans.get('serial')!, value: String(header.serial) },
    { ...spans.get('lineage')!, value: JSON.stringify(header.lineage) },
  ].sort((a, b) => b.start - a.start);
  let out = text;
  for (const r of replacements) out = out.slice(0, r.start) + r.value + out.slice(r.end);
  return Buffer.from(out, 'utf8');
}

/** Start and end offsets of the values of the named top-level keys (the last occurrence wins, as in JSON.parse). */
export function topLevelValueSpans(text: string, names: string[]): Map<string, { start: number; end: number }> {
  const found = new Map<string, { start: number; end: number }>();
  let i = skipWs(text, 0);
  if (text[i] !== '{') throw new Error('not a JSON object');
  i++;
  for (;;) {
    i = skipWs(text, i);
    if (text[i] === '}') break;
    const keyEnd = stringEnd(text, i);
    const key = JSON.parse(text.slice(i, keyEnd)) as string;
    i = skipWs(text, keyEnd);
    if (text[i] !== ':') throw new Error(`expected ":" at ${i}`);
    const start = skipWs(text, i + 1);
    const end = valueEnd(text, start);
    if (names.includes(key)) found.set(key, { start, end });
    i = skipWs(text, end);
    if (text[i] === ',') i++;
    else if (text[i] !== '}') throw new Error(`expected "," or "}" at ${i}`);
  }
  for (const n of names) if (!found.has(n)) throw new Error(`no top-level "${n}"`);
  return found;
}

function skipWs(t: string, i: number): number {
  while (i < t.length && (t[i] === ' ' || t[i] === '\n' || t[i] === '\r' || t[i] === '\t')) i++;
  return i;
}

/** Offset just past the string starting at i (which must be a quote). */
function stringEnd(t: string, i: number): number {
  if (t[i] !== '"') throw new Error(`expected a string at ${i}`);
  for (let j = i + 1; j < t.length; j++) {
    if (t[j] === '\\') j++;
    else if (t[j] === '"') return j + 1;
  }
  throw new Error('unterminated string');
}

function valueEnd(t: string, i: number): number {
  const c = t[i];
  if (c === '"') return stringEnd(t, i);
  if (c === '{' || c === '[') {
    let depth = 0;
    for (let j = i; j < t.length; j++) {
      const d = t[j];
      if (d === '"') j = stringEnd(t, j) - 1;
      else if (d === '{' || d === '[') depth++;
      else if (d === '}' || d === ']') {
        depth--;
        if (depth === 0) return j + 1;
      }
    }
    throw new Error('unterminated container');
  }
  let j = i;
  while (j < t.length && !',}] \n\r\t'.includes(t[j]!)) j++;
  return j;
}
