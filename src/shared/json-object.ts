const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Decodes a request body as strict UTF-8 JSON that must be an object. `invalid(reason)` builds the
 * caller's own error (each body kind has its own registry code).
 */
export function parseJsonObject(body: Buffer, invalid: (reason: string) => Error): { text: string; doc: Record<string, unknown> } {
  let text: string;
  try {
    text = utf8.decode(body);
  } catch {
    throw invalid('the body is not valid UTF-8');
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw invalid(`the body is not valid JSON (${(err as Error).message})`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw invalid('the body is not a JSON object');
  return { text, doc: doc as Record<string, unknown> };
}
