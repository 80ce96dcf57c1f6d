import { attributeEquals, validation, type AttributeValue, type Item } from './attribute-values.js';

/**
 * The DynamoDB expression subset statelock understands — pure: parsing, evaluation against an item, and
 * the bookkeeping of which `#name` / `:value` placeholders were used.
 *
 * Condition grammar (keywords case-insensitive, NOT binds tighter than AND, AND tighter than OR):
 *
 *     condition := disjunct ( OR disjunct )*
 *     disjunct  := conjunct ( AND conjunct )*
 *     conjunct  := NOT conjunct | '(' condition ')' | attribute_exists '(' path ')'
 *                | attribute_not_exists '(' path ')' | operand ( '=' | '<>' ) operand
 *     operand   := path | ':value'
 *     path      := name | '#name'                  (top-level attributes only)
 *
 * Projection grammar: `path ( ',' path )*`.
 *
 * Anything else DynamoDB knows (other comparators, BETWEEN, IN, begins_with, contains, size,
 * attribute_type, nested paths) is refused with a ValidationException saying what statelock supports.
 */

export type Operand = { kind: 'path'; name: string } | { kind: 'value'; placeholder: string };

export type Condition =
  | { kind: 'exists'; name: string; exists: boolean }
  | { kind: 'compare'; op: '=' | '<>'; left: Operand; right: Operand }
  | { kind: 'and' | 'or'; left: Condition; right: Condition }
  | { kind: 'not'; operand: Condition };

export const SUPPORTED_CONDITIONS = 'attribute_exists(path), attribute_not_exists(path), path = :value, path <> :value, AND, OR, NOT and parentheses, over top-level attribute names (or #name placeholders)';

type Token =
  | { t: 'name'; v: string; at: number }
  | { t: 'hash'; v: string; at: number }
  | { t: 'colon'; v: string; at: number }
  | { t: 'punct'; v: string; at: number }
  | { t: 'number'; v: string; at: number }
  | { t: 'end'; v: ''; at: number };

const PUNCT = ['<>', '<=', '>=', '(', ')', ',', '=', '<', '>', '.', '[', ']'];
const KEYWORDS = new Set(['AND', 'OR', 'NOT', 'BETWEEN', 'IN']);
const OTHER_FUNCTIONS = new Set(['attribute_type', 'begins_with', 'contains', 'size']);

/**
 * The placeholders of one request (ExpressionAttributeNames / ExpressionAttributeValues) and which of
 * them its expressions used: DynamoDB refuses a request that defines a placeholder no expression uses.
 */
export class ExpressionContext {
  readonly usedNames = new Set<string>();
  readonly usedValues = new Set<string>();

  constructor(
    readonly names: Record<string, string> | undefined,
    readonly values: Record<string, AttributeValue> | undefined,
  ) {}

  resolveName(placeholder: string, parameter: string): string {
    const name = this.names?.[placeholder];
    if (name === undefined) throw validation(`Invalid ${parameter}: An expression attribute name used in the document path is not defined; attribute name: ${placeholder}`);
    this.usedNames.add(placeholder);
    return name;
  }

  checkValue(placeholder: string, parameter: string): void {
    if (this.values?.[placeholder] === undefined) throw validation(`Invalid ${parameter}: An expression attribute value used in expression is not defined; attribute value: ${placeholder}`);
    this.usedValues.add(placeholder);
  }

  value(placeholder: string): AttributeValue | undefined {
    return this.values?.[placeholder];
  }

  /** After every expression of the request was parsed: no placeholder may be left unused. */
  assertAllUsed(): void {
    const unusedNames = Object.keys(this.names ?? {}).filter((k) => !this.usedNames.has(k));
    if (unusedNames.length > 0) throw validation(`Value provided in ExpressionAttributeNames unused in expressions: keys: {${unusedNames.join(', ')}}`);
    const unusedValues = Object.keys(this.values ?? {}).filter((k) => !this.usedValues.has(k));
    if (unusedValues.length > 0) throw validation(`Value provided in ExpressionAttributeValues unused in expressions: keys: {${unusedValues.join(', ')}}`);
  }
}

function tokenize(text: string, parameter: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    const rest = text.slice(i);
    let m: RegExpExecArray | null;
    if ((m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(rest))) out.push({ t: 'name', v: m[0], at: i });
    else if ((m = /^#[A-Za-z0-9_]+/.exec(rest))) out.push({ t: 'hash', v: m[0], at: i });
    else if ((m = /^:[A-Za-z0-9_]+/.exec(rest))) out.push({ t: 'colon', v: m[0], at: i });
    else if ((m = /^\d+/.exec(rest))) out.push({ t: 'number', v: m[0], at: i });
    else {
      const p = PUNCT.find((x) => rest.startsWith(x));
      if (!p) throw validation(`Invalid ${parameter}: Syntax error; token: "${c}", near: "${near(text, i, 1)}"`);
      out.push({ t: 'punct', v: p, at: i });
      i += p.length;
      continue;
    }
    i += m[0].length;
  }
  out.push({ t: 'end', v: '', at: text.length });
  return out;
}

function near(text: string, at: number, len: number): string {
  return text.slice(Math.max(0, at - 12), Math.min(text.length, at + len + 12)).trim();
}

class Parser {
  private pos = 0;
  private readonly tokens: Token[];

  constructor(
    private readonly text: string,
    private readonly ctx: ExpressionContext,
    private readonly parameter: string,
  ) {
    if (text.trim() === '') throw validation(`Invalid ${parameter}: The expression can not be empty;`);
    this.tokens = tokenize(text, parameter);
  }

  private peek(): Token {
    return this.tokens[this.pos]!;
  }

  private next(): Token {
    const t = this.tokens[this.pos]!;
    if (t.t !== 'end') this.pos++;
    return t;
  }

  private isKeyword(t: Token, kw: string): boolean {
    return t.t === 'name' && t.v.toUpperCase() === kw;
  }

  syntaxError(t: Token): Error {
    const shown = t.t === 'end' ? '<EOF>' : t.v;
    return validation(`Invalid ${this.parameter}: Syntax error; token: "${shown}", near: "${near(this.text, t.at, t.v.length)}"`);
  }

  unsupported(what: string): Error {
    return validation(`Invalid ${this.parameter}: statelock supports ${this.parameter === 'ProjectionExpression' ? 'a comma-separated list of top-level attribute names (or #name placeholders)' : SUPPORTED_CONDITIONS} only; ${what} is not supported`);
  }

  private expect(punct: string): void {
    const t = this.next();
    if (t.t !== 'punct' || t.v !== punct) throw this.syntaxError(t);
  }

  parseCondition(): Condition {
    const c = this.or();
    const t = this.peek();
    if (t.t !== 'end') throw this.syntaxError(t);
    return c;
  }

  parseProjection(): string[] {
    const names: string[] = [];
    for (;;) {
      names.push(this.path());
      const t = this.next();
      if (t.t === 'end') return names;
      if (t.t !== 'punct' || t.v !== ',') throw this.syntaxError(t);
    }
  }

  private or(): Condition {
    let left = this.and();
    while (this.isKeyword(this.peek(), 'OR')) {
      this.next();
      left = { kind: 'or', left, right: this.and() };
    }
    return left;
  }

  private and(): Condition {
    let left = this.not();
    while (this.isKeyword(this.peek(), 'AND')) {
      this.next();
      left = { kind: 'and', left, right: this.not() };
    }
    return left;
  }

  private not(): Condition {
    if (this.isKeyword(this.peek(), 'NOT')) {
      this.next();
      return { kind: 'not', operand: this.not() };
    }
    return this.primary();
  }

  private primary(): Condition {
    const t = this.peek();
    if (t.t === 'punct' && t.v === '(') {
      this.next();
      const inner = this.or();
      this.expect(')');
      return inner;
    }
    const after = this.tokens[this.pos + 1]!;
    if (t.t === 'name' && after.t === 'punct' && after.v === '(') {
      if (t.v === 'attribute_exists' || t.v === 'attribute_not_exists') {
        this.next();
        this.next();
        const name = this.path();
        const close = this.peek();
        if (close.t === 'punct' && close.v === ',') throw validation(`Invalid ${this.parameter}: Incorrect number of operands for operator or function; operator or function: ${t.v}, number of operands: 2`);
        this.expect(')');
        return { kind: 'exists', name, exists: t.v === 'attribute_exists' };
      }
      if (OTHER_FUNCTIONS.has(t.v)) throw this.unsupported(`the function ${t.v}`);
      throw validation(`Invalid ${this.parameter}: Invalid function name; function: ${t.v}`);
    }
    const left = this.operand();
    const op = this.next();
    if (op.t === 'punct' && (op.v === '=' || op.v === '<>')) return { kind: 'compare', op: op.v, left, right: this.operand() };
    if (op.t === 'punct' && ['<', '<=', '>', '>='].includes(op.v)) throw this.unsupported(`the comparator ${op.v}`);
    if (this.isKeyword(op, 'BETWEEN') || this.isKeyword(op, 'IN')) throw this.unsupported(op.v.toUpperCase());
    throw this.syntaxError(op);
  }

  private operand(): Operand {
    const t = this.peek();
    if (t.t === 'colon') {
      this.next();
      this.ctx.checkValue(t.v, this.parameter);
      return { kind: 'value', placeholder: t.v };
    }
    return { kind: 'path', name: this.path() };
  }

  /** A top-level attribute name, given literally or as a `#name` placeholder. */
  private path(): string {
    const t = this.next();
    let name: string;
    if (t.t === 'hash') name = this.ctx.resolveName(t.v, this.parameter);
    else if (t.t === 'name' && !KEYWORDS.has(t.v.toUpperCase())) name = t.v;
    else throw this.syntaxError(t);
    const after = this.peek();
    if (after.t === 'punct' && (after.v === '.' || after.v === '[')) throw this.unsupported(`the nested document path ${t.v}${after.v}…`);
    return name;
  }
}

/**
 * Parses a ConditionExpression (or another condition-typed parameter, named by `parameter` in the
 * reasons). Placeholders must be defined in `ctx`; their use is recorded there.
 * @throws StatelockError DYNAMODB_VALIDATION with DynamoDB's "Invalid ConditionExpression: …" wording.
 */
export function parseCondition(text: string, ctx: ExpressionContext, parameter = 'ConditionExpression'): Condition {
  return new Parser(text, ctx, parameter).parseCondition();
}

/**
 * Parses a ProjectionExpression into the attribute names to return, in order.
 * @throws StatelockError DYNAMODB_VALIDATION.
 */
export function parseProjection(text: string, ctx: ExpressionContext): string[] {
  const names = new Parser(text, ctx, 'ProjectionExpression').parseProjection();
  const seen = new Set<string>();
  for (const n of names) {
    if (seen.has(n)) throw validation(`Invalid ProjectionExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [${n}], path two: [${n}]`);
    seen.add(n);
  }
  return names;
}

/**
 * Evaluates a condition against the item as it is now (null when there is none).
 * `a = b` holds when both sides exist and are equal (same type and value); `a <> b` is its negation,
 * so it holds when an attribute is missing.
 */
export function evaluateCondition(cond: Condition, item: Item | null, ctx: ExpressionContext): boolean {
  switch (cond.kind) {
    case 'exists':
      return (item !== null && item[cond.name] !== undefined) === cond.exists;
    case 'compare': {
      const l = operandValue(cond.left, item, ctx);
      const r = operandValue(cond.right, item, ctx);
      const equal = l !== undefined && r !== undefined && attributeEquals(l, r);
      return cond.op === '=' ? equal : !equal;
    }
    case 'and':
      return evaluateCondition(cond.left, item, ctx) && evaluateCondition(cond.right, item, ctx);
    case 'or':
      return evaluateCondition(cond.left, item, ctx) || evaluateCondition(cond.right, item, ctx);
    case 'not':
      return !evaluateCondition(cond.operand, item, ctx);
  }
}

function operandValue(o: Operand, item: Item | null, ctx: ExpressionContext): AttributeValue | undefined {
  return o.kind === 'value' ? ctx.value(o.placeholder) : (item?.[o.name] ?? undefined);
}

/** The top-level AND-ed parts of a condition (`a AND (b AND c)` → [a, b, c]). */
export function conjuncts(cond: Condition): Condition[] {
  return cond.kind === 'and' ? [...conjuncts(cond.left), ...conjuncts(cond.right)] : [cond];
}

/** Keeps only the projected attributes of an item (all of them without a projection). */
export function project(item: Item, attributes: readonly string[] | null): Item {
  if (attributes === null) return item;
  const out: Item = {};
  for (const a of attributes) if (item[a] !== undefined) out[a] = item[a]!;
  return out;
}
