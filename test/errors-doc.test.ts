import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ERROR_REGISTRY } from '../src/server/errors.js';

/**
 * Keeps docs/errors.md and the error registry (src/server/errors.ts) in sync: the doc's one table
 * `| Code | Status | Message |` must list every registry entry, with the same status and message
 * template, in registry order — and nothing else. Adding a code without documenting it fails here.
 */

// Tests compile to dist/test/*.js, so the repository root is two levels up.
const DOC_URL = new URL('../../docs/errors.md', import.meta.url);
const HEADER = '| Code | Status | Message |';

interface DocRow {
  line: number;
  code: string;
  status: number;
  message: string;
}

/** Splits a markdown table row into its cells; `\|` is a literal bar inside a cell. */
function cells(row: string): string[] {
  const inner = row.trim().replace(/^\|/, '').replace(/\|$/, '');
  return inner.split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, '|'));
}

function readTable(): { rows: DocRow[]; rest: string } {
  const text = readFileSync(DOC_URL, 'utf8');
  const lines = text.split(/\r?\n/);
  const headerAt = lines.findIndex((l) => l.trim() === HEADER);
  assert.ok(headerAt >= 0, `docs/errors.md has no table whose header is exactly "${HEADER}"`);
  assert.match(lines[headerAt + 1] ?? '', /^\s*\|(\s*:?-{3,}:?\s*\|){3}\s*$/, 'the line after the header must be the table separator |---|---|---|');
  const rows: DocRow[] = [];
  let i = headerAt + 2;
  for (; i < lines.length && lines[i]!.trim().startsWith('|'); i++) {
    const lineNo = i + 1;
    const parts = cells(lines[i]!);
    assert.equal(parts.length, 3, `docs/errors.md line ${lineNo}: expected 3 cells (code, status, message), got ${parts.length}: ${lines[i]}`);
    const [codeCell, statusCell, message] = parts as [string, string, string];
    const code = /^`([A-Z0-9_]+)`$/.exec(codeCell)?.[1];
    assert.ok(code, `docs/errors.md line ${lineNo}: the code cell must be a backticked CODE, got ${codeCell}`);
    assert.match(statusCell, /^\d{3}$/, `docs/errors.md line ${lineNo} (${code}): the status cell must be a 3-digit HTTP status, got ${statusCell}`);
    rows.push({ line: lineNo, code, status: Number(statusCell), message });
  }
  return { rows, rest: lines.slice(i).join('\n') };
}

const registry = ERROR_REGISTRY as Record<string, { status: number; message: string }>;
const registryCodes = Object.keys(registry);

test('docs/errors.md documents exactly the codes of ERROR_REGISTRY', () => {
  const { rows } = readTable();
  const documented = rows.map((r) => r.code);
  const duplicates = documented.filter((c, i) => documented.indexOf(c) !== i);
  assert.deepEqual(duplicates, [], `codes listed more than once in docs/errors.md: ${duplicates.join(', ')}`);
  const missing = registryCodes.filter((c) => !documented.includes(c));
  assert.deepEqual(missing, [], `codes in ERROR_REGISTRY but missing from docs/errors.md: ${missing.join(', ')}`);
  const extra = documented.filter((c) => !(c in registry));
  assert.deepEqual(extra, [], `codes in docs/errors.md but not in ERROR_REGISTRY: ${extra.join(', ')}`);
});

test('each documented status and message template equals the registry entry', () => {
  const { rows } = readTable();
  const problems: string[] = [];
  for (const row of rows) {
    const entry = registry[row.code];
    if (!entry) continue; // reported as extra by the test above
    if (row.status !== entry.status) problems.push(`${row.code} (line ${row.line}): status ${row.status} in the doc, ${entry.status} in the registry`);
    if (row.message !== entry.message) problems.push(`${row.code} (line ${row.line}): message differs\n  doc:      ${row.message}\n  registry: ${entry.message}`);
  }
  assert.deepEqual(problems, [], `docs/errors.md differs from ERROR_REGISTRY:\n${problems.join('\n')}`);
});

test('docs/errors.md lists the codes in registry order', () => {
  const { rows } = readTable();
  const documented = rows.map((r) => r.code).filter((c) => c in registry);
  const expected = registryCodes.filter((c) => documented.includes(c));
  const firstOff = expected.findIndex((c, i) => documented[i] !== c);
  assert.equal(firstOff, -1, `order differs from ERROR_REGISTRY at row ${firstOff + 1}: expected ${expected[firstOff]}, found ${documented[firstOff]}`);
});

test('every code is explained below the table', () => {
  const { rest } = readTable();
  const unexplained = registryCodes.filter((c) => !rest.includes(`\`${c}\``));
  assert.deepEqual(unexplained, [], `codes with no explanation in the sections after the table of docs/errors.md: ${unexplained.join(', ')}`);
});
