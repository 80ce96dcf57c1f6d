import { StatelockError } from '../../../server/errors.js';
import { xmlEscape } from '../xml-escape.js';

/** The namespace S3 puts on its response roots (optional for the SDKs, customary). */
export const S3_NS = 'http://s3.amazonaws.com/doc/2006-03-01/';

/* ------------------------------------------------------------------ */
/* Writer                                                              */
/* ------------------------------------------------------------------ */

/** `<name>escaped text</name>`; nothing at all for undefined/null (an optional element left out). */
export function text(name: string, value: string | number | boolean | null | undefined): string {
  if (value === undefined || value === null) return '';
  return `<${name}>${xmlEscape(String(value))}</${name}>`;
}

/** `<name>children</name>`: the children are already XML (made with {@link text} or {@link node}). */
export function node(name: string, ...children: string[]): string {
  return `<${name}>${children.join('')}</${name}>`;
}

/** A whole response document: declaration, then the root element carrying the S3 namespace. */
export function document(root: string, ...children: string[]): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<${root} xmlns="${S3_NS}">${children.join('')}</${root}>`;
}

/* ------------------------------------------------------------------ */
/* Parser                                                              */
/* ------------------------------------------------------------------ */

/** One element of a parsed request body: its local name (any `prefix:` dropped), child elements and text. */
export interface XmlElement {
  name: string;
  children: XmlElement[];
  /** The element's own character data (entities decoded), children's text excluded. */
  text: string;
}

const NAME = /[A-Za-z_][\w.\-]*(?::[A-Za-z_][\w.\-]*)?/y;

/** The XML name starting exactly at `at`, or null. */
function nameAt(src: string, at: number): string | null {
  NAME.lastIndex = at;
  return NAME.exec(src)?.[0] ?? null;
}
const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

function malformed(reason: string): StatelockError {
  return new StatelockError('S3_MALFORMED_XML', { reason });
}

/**
 * Parses the small request documents S3 clients send (CompleteMultipartUpload, CreateBucketConfiguration,
 * Delete). Enough XML for them and strict about structure: one root element, matching tags, known
 * entities only. Attributes are read past and ignored, comments and processing instructions skipped;
 * DOCTYPE declarations are refused (no entity expansion of any kind).
 * @throws StatelockError S3_MALFORMED_XML with the reason.
 */
export function parseXml(body: Buffer): XmlElement {
  const src = body.toString('utf8');
  let i = 0;
  const stack: XmlElement[] = [];
  let root: XmlElement | null = null;

  const skipMisc = (): boolean => {
    if (src.startsWith('<?', i)) {
      const end = src.indexOf('?>', i + 2);
      if (end < 0) throw malformed('unterminated processing instruction');
      i = end + 2;
      return true;
    }
    if (src.startsWith('<!--', i)) {
      const end = src.indexOf('-->', i + 4);
      if (end < 0) throw malformed('unterminated comment');
      i = end + 3;
      return true;
    }
    if (src.startsWith('<!DOCTYPE', i) || src.startsWith('<!doctype', i)) throw malformed('DOCTYPE declarations are not accepted');
    return false;
  };

  while (i < src.length) {
    const ch = src[i]!;
    if (ch !== '<') {
      const next = src.indexOf('<', i);
      const raw = src.slice(i, next < 0 ? src.length : next);
      i = next < 0 ? src.length : next;
      const top = stack[stack.length - 1];
      if (top) top.text += decodeEntities(raw);
      else if (raw.trim() !== '') throw malformed('text outside the root element');
      continue;
    }
    if (skipMisc()) continue;
    if (src.startsWith('<![CDATA[', i)) {
      const end = src.indexOf(']]>', i + 9);
      if (end < 0) throw malformed('unterminated CDATA section');
      const top = stack[stack.length - 1];
      if (!top) throw malformed('CDATA outside the root element');
      top.text += src.slice(i + 9, end);
      i = end + 3;
      continue;
    }
    if (src.startsWith('</', i)) {
      const name = nameAt(src, i + 2);
      if (name === null) throw malformed(`bad closing tag at offset ${i}`);
      const close = src.indexOf('>', i + 2 + name.length);
      if (close < 0 || src.slice(i + 2 + name.length, close).trim() !== '') throw malformed(`bad closing tag </${name}`);
      const open = stack.pop();
      if (!open || localName(name) !== open.name) throw malformed(`closing tag </${name}> does not match ${open ? `<${open.name}>` : 'any open element'}`);
      i = close + 1;
      continue;
    }
    const name = nameAt(src, i + 1);
    if (name === null) throw malformed(`bad element start at offset ${i}`);
    if (root !== null && stack.length === 0) throw malformed('more than one root element');
    const tagEnd = findTagEnd(src, i + 1 + name.length);
    const selfClosing = src[tagEnd - 1] === '/';
    checkAttributes(src.slice(i + 1 + name.length, selfClosing ? tagEnd - 1 : tagEnd));
    const el: XmlElement = { name: localName(name), children: [], text: '' };
    const parent = stack[stack.length - 1];
    if (parent) parent.children.push(el);
    else root = el;
    if (!selfClosing) stack.push(el);
    i = tagEnd + 1;
  }
  if (stack.length > 0) throw malformed(`element <${stack[stack.length - 1]!.name}> is not closed`);
  if (!root) throw malformed('the document has no root element');
  return root;
}

function localName(qname: string): string {
  const colon = qname.indexOf(':');
  return colon < 0 ? qname : qname.slice(colon + 1);
}

/** The index of the `>` ending a start tag, skipping quoted attribute values. */
function findTagEnd(src: string, from: number): number {
  let quote: string | null = null;
  for (let j = from; j < src.length; j++) {
    const c = src[j]!;
    if (quote) {
      if (c === quote) quote = null;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '<') throw malformed('"<" inside a start tag');
    else if (c === '>') return j;
  }
  throw malformed('unterminated start tag');
}

const ATTRIBUTE = /^\s+[A-Za-z_][\w.\-]*(?::[A-Za-z_][\w.\-]*)?\s*=\s*("[^"<]*"|'[^'<]*')/;

function checkAttributes(raw: string): void {
  let rest = raw;
  for (;;) {
    const m = ATTRIBUTE.exec(rest);
    if (!m) break;
    decodeEntities(m[1]!.slice(1, -1));
    rest = rest.slice(m[0].length);
  }
  if (rest.trim() !== '') throw malformed(`bad attribute syntax "${rest.trim().slice(0, 40)}"`);
}

function decodeEntities(raw: string): string {
  return raw.replace(/&([^;&<>\s]*);?/g, (whole, name: string) => {
    if (!whole.endsWith(';')) throw malformed(`unterminated entity reference "${whole}"`);
    if (name in ENTITIES) return ENTITIES[name]!;
    const num = /^#(?:x([0-9a-fA-F]+)|([0-9]+))$/.exec(name);
    if (num) {
      const code = num[1] !== undefined ? parseInt(num[1], 16) : parseInt(num[2]!, 10);
      if (code > 0 && code <= 0x10ffff && !(code >= 0xd800 && code <= 0xdfff)) return String.fromCodePoint(code);
    }
    throw malformed(`unknown entity reference "${whole}"`);
  });
}

/** The children of `el` called `name`. */
export function childrenNamed(el: XmlElement, name: string): XmlElement[] {
  return el.children.filter((c) => c.name === name);
}

/** The text of the single child called `name`, or undefined when there is none. */
export function childText(el: XmlElement, name: string): string | undefined {
  const found = childrenNamed(el, name);
  if (found.length > 1) throw malformed(`<${el.name}> has more than one <${name}>`);
  return found[0]?.text;
}

/* ------------------------------------------------------------------ */
/* The request documents                                               */
/* ------------------------------------------------------------------ */

export interface CompletedPart {
  partNumber: number;
  /** The ETag as sent, quotes removed. */
  etag: string;
}

/**
 * CompleteMultipartUpload's body: `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"…"</ETag>
 * (+ optional Checksum* elements, ignored)</Part>…`, in the order given (the caller checks the order).
 */
export function parseCompleteMultipartUpload(body: Buffer): CompletedPart[] {
  const root = parseXml(body);
  if (root.name !== 'CompleteMultipartUpload') throw malformed(`the root element is <${root.name}>, not <CompleteMultipartUpload>`);
  const parts = childrenNamed(root, 'Part').map((p, index) => {
    const number = childText(p, 'PartNumber')?.trim();
    const etag = childText(p, 'ETag')?.trim();
    if (number === undefined || !/^\d{1,5}$/.test(number)) throw malformed(`part ${index + 1} has no valid <PartNumber>`);
    if (etag === undefined || etag === '') throw malformed(`part ${number} has no <ETag>`);
    return { partNumber: Number(number), etag: unquote(etag) };
  });
  if (parts.length === 0) throw malformed('the list of parts is empty');
  return parts;
}

/** CreateBucket's optional body: `<CreateBucketConfiguration><LocationConstraint>eu-west-1</LocationConstraint>…`. */
export function parseCreateBucketConfiguration(body: Buffer): { locationConstraint: string | null } {
  const root = parseXml(body);
  if (root.name !== 'CreateBucketConfiguration') throw malformed(`the root element is <${root.name}>, not <CreateBucketConfiguration>`);
  const location = childText(root, 'LocationConstraint')?.trim();
  return { locationConstraint: location ? location : null };
}

export interface DeleteRequestObject {
  key: string;
  versionId: string | null;
}

/** DeleteObjects' body: `<Delete><Quiet>true</Quiet><Object><Key>k</Key><VersionId>…</VersionId></Object>…</Delete>`. */
export function parseDeleteObjects(body: Buffer): { quiet: boolean; objects: DeleteRequestObject[] } {
  const root = parseXml(body);
  if (root.name !== 'Delete') throw malformed(`the root element is <${root.name}>, not <Delete>`);
  const objects = childrenNamed(root, 'Object').map((o) => {
    const key = childText(o, 'Key');
    if (key === undefined || key === '') throw malformed('an <Object> has no <Key>');
    const versionId = childText(o, 'VersionId')?.trim();
    return { key, versionId: versionId ? versionId : null };
  });
  if (objects.length === 0) throw malformed('no <Object> to delete');
  if (objects.length > 1000) throw malformed('more than 1000 objects to delete');
  return { quiet: childText(root, 'Quiet')?.trim().toLowerCase() === 'true', objects };
}

/** An ETag without its surrounding double quotes (clients send either form). */
export function unquote(etag: string): string {
  const t = etag.trim();
  return t.length >= 2 && t.startsWith('"') && t.endsWith('"') ? t.slice(1, -1) : t;
}
