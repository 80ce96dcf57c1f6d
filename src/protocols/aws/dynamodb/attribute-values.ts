import { StatelockError } from '../../../server/errors.js';

/**
 * DynamoDB's typed attribute values (`{"S":"…"}`, `{"N":"1"}`, …) and the request-member checks the
 * DynamoDB door shares. Pure: every refusal is a ValidationException (DYNAMODB_VALIDATION) whose reason
 * reads like DynamoDB's own.
 */

export type AttributeValue =
  | { S: string }
  | { N: string }
  | { B: string }
  | { BOOL: boolean }
  | { NULL: true }
  | { SS: string[] }
  | { NS: string[] }
  | { BS: string[] }
  | { L: AttributeValue[] }
  | { M: Record<string, AttributeValue> };

export type Item = Record<string, AttributeValue>;

const TYPES = ['S', 'N', 'B', 'BOOL', 'NULL', 'SS', 'NS', 'BS', 'L', 'M'] as const;
export type AttributeType = (typeof TYPES)[number];

export function validation(reason: string): StatelockError {
  return new StatelockError('DYNAMODB_VALIDATION', { reason });
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The JSON type of a member, in the words DynamoDB's serializer uses. */
function jsonKind(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a structure';
  return `a ${typeof v}`;
}

/**
 * Checks one attribute value from a request: an object with exactly one type descriptor holding a value
 * of the right JSON type. `where` names it in the reason (e.g. `Item.Info`, `ExpressionAttributeValues.:info`).
 */
export function parseAttributeValue(raw: unknown, where: string): AttributeValue {
  if (!isPlainObject(raw)) throw validation(`Supplied AttributeValue ${where} is ${jsonKind(raw)}, must be an object with exactly one of the supported datatypes (${TYPES.join(', ')})`);
  const keys = Object.keys(raw);
  if (keys.length === 0) throw validation(`Supplied AttributeValue ${where} is empty, must contain exactly one of the supported datatypes`);
  if (keys.length > 1) throw validation(`Supplied AttributeValue ${where} has more than one datatypes set (${keys.join(', ')}), must contain exactly one of the supported datatypes`);
  const type = keys[0]!;
  const v = raw[type];
  const bad = (what: string) => validation(`Supplied AttributeValue ${where}: the ${type} value must be ${what}, not ${jsonKind(v)}`);
  switch (type) {
    case 'S':
      if (typeof v !== 'string') throw bad('a string');
      return { S: v };
    case 'N':
      if (typeof v !== 'string') throw bad('a string holding a number');
      if (!isNumberText(v)) throw validation(`The parameter cannot be converted to a numeric value: ${v}`);
      return { N: v };
    case 'B':
      if (typeof v !== 'string') throw bad('a base64 string');
      return { B: v };
    case 'BOOL':
      if (typeof v !== 'boolean') throw bad('true or false');
      return { BOOL: v };
    case 'NULL':
      if (v !== true) throw validation(`One or more parameter values were invalid: Null attribute value types must have the value of true (${where})`);
      return { NULL: true };
    case 'SS':
    case 'NS':
    case 'BS': {
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw bad('a list of strings');
      if (v.length === 0) throw validation(`One or more parameter values were invalid: the ${type} set ${where} may not be empty`);
      if (new Set(v).size !== v.length) throw validation(`One or more parameter values were invalid: Input collection [${v.join(', ')}] contains duplicates.`);
      if (type === 'NS' && !v.every(isNumberText)) throw validation(`The parameter cannot be converted to a numeric value (${where})`);
      return type === 'SS' ? { SS: v as string[] } : type === 'NS' ? { NS: v as string[] } : { BS: v as string[] };
    }
    case 'L':
      if (!Array.isArray(v)) throw bad('a list');
      return { L: v.map((x, i) => parseAttributeValue(x, `${where}[${i}]`)) };
    case 'M': {
      if (!isPlainObject(v)) throw bad('a map');
      const out: Record<string, AttributeValue> = {};
      for (const [k, x] of Object.entries(v)) out[k] = parseAttributeValue(x, `${where}.${k}`);
      return { M: out };
    }
    default:
      throw validation(`Supplied AttributeValue ${where} has an unknown datatype "${type}"; the supported datatypes are ${TYPES.join(', ')}`);
  }
}

function isNumberText(s: string): boolean {
  return /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/.test(s);
}

/** Parses a map of attribute values (an Item, a Key, ExpressionAttributeValues). */
export function parseItem(raw: unknown, member: string): Item {
  if (!isPlainObject(raw)) throw validation(`1 validation error detected: Value at '${lowerFirst(member)}' failed to satisfy constraint: Member must be a map of attribute names to AttributeValues, not ${jsonKind(raw)}`);
  const out: Item = {};
  for (const [k, v] of Object.entries(raw)) out[k] = parseAttributeValue(v, `${member}.${k}`);
  return out;
}

/** The single type descriptor of a value. */
export function typeOf(v: AttributeValue): AttributeType {
  return Object.keys(v)[0] as AttributeType;
}

/** DynamoDB equality: same type and same value (numbers compared numerically, sets as sets). */
export function attributeEquals(a: AttributeValue, b: AttributeValue): boolean {
  const ta = typeOf(a);
  if (ta !== typeOf(b)) return false;
  const va = (a as Record<string, unknown>)[ta];
  const vb = (b as Record<string, unknown>)[ta];
  switch (ta) {
    case 'N':
      return Number(va) === Number(vb);
    case 'SS':
    case 'BS': {
      const x = va as string[];
      const y = new Set(vb as string[]);
      return x.length === y.size && x.every((e) => y.has(e));
    }
    case 'NS': {
      const x = (va as string[]).map(Number);
      const y = new Set((vb as string[]).map(Number));
      return x.length === y.size && x.every((e) => y.has(e));
    }
    case 'L': {
      const x = va as AttributeValue[];
      const y = vb as AttributeValue[];
      return x.length === y.length && x.every((e, i) => attributeEquals(e, y[i]!));
    }
    case 'M': {
      const x = va as Record<string, AttributeValue>;
      const y = vb as Record<string, AttributeValue>;
      const kx = Object.keys(x);
      return kx.length === Object.keys(y).length && kx.every((k) => y[k] !== undefined && attributeEquals(x[k]!, y[k]!));
    }
    default:
      return va === vb;
  }
}

/** DynamoDB's item size rule, simplified for string attributes: UTF-8 bytes of each name plus its value. */
export function itemSizeBytes(item: Item): number {
  let size = 0;
  for (const [name, value] of Object.entries(item)) {
    size += Buffer.byteLength(name, 'utf8');
    const type = typeOf(value);
    const v = (value as Record<string, unknown>)[type];
    size += type === 'S' || type === 'N' ? Buffer.byteLength(v as string, 'utf8') : Buffer.byteLength(JSON.stringify(v), 'utf8');
  }
  return size;
}

/** `TableName` → `tableName`, as DynamoDB names members in its validation messages. */
export function lowerFirst(s: string): string {
  return s.charAt(0).toLowerCase() + s.slice(1);
}

/** Reads an optional string member; wrong JSON types are refused with DynamoDB's wording. */
export function optionalString(req: Record<string, unknown>, member: string): string | undefined {
  const v = req[member];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw validation(`1 validation error detected: Value at '${lowerFirst(member)}' failed to satisfy constraint: Member must be a string, not ${jsonKind(v)}`);
  return v;
}

export function optionalBoolean(req: Record<string, unknown>, member: string): boolean | undefined {
  const v = req[member];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw validation(`1 validation error detected: Value at '${lowerFirst(member)}' failed to satisfy constraint: Member must be a boolean, not ${jsonKind(v)}`);
  return v;
}

export function optionalInteger(req: Record<string, unknown>, member: string, min: number): number | undefined {
  const v = req[member];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw validation(`1 validation error detected: Value at '${lowerFirst(member)}' failed to satisfy constraint: Member must be an integer, not ${jsonKind(v)}`);
  if (v < min) throw validation(`1 validation error detected: Value '${v}' at '${lowerFirst(member)}' failed to satisfy constraint: Member must have value greater than or equal to ${min}`);
  return v;
}

/** One of a fixed set of strings (ReturnValues, Select, BillingMode …). */
export function optionalEnum<T extends string>(req: Record<string, unknown>, member: string, allowed: readonly T[]): T | undefined {
  const v = optionalString(req, member);
  if (v === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(v)) {
    throw validation(`1 validation error detected: Value '${v}' at '${lowerFirst(member)}' failed to satisfy constraint: Member must satisfy enum value set: [${allowed.join(', ')}]`);
  }
  return v as T;
}

/**
 * TableName: required, 3–255 characters of [a-zA-Z0-9_.-], as DynamoDB requires — or a table ARN
 * (`arn:aws:dynamodb:<region>:<account>:table/<name>`), which DynamoDB also accepts: its name is used.
 */
export function tableNameOf(req: Record<string, unknown>): string {
  const given = optionalString(req, 'TableName');
  if (given === undefined) throw validation("1 validation error detected: Value null at 'tableName' failed to satisfy constraint: Member must not be null");
  const arn = /^arn:aws[a-z-]*:dynamodb:[^:]*:[^:]*:table\/([^/]+)$/.exec(given);
  const name = arn ? arn[1]! : given;
  if (name.length < 3) throw validation(`1 validation error detected: Value '${name}' at 'tableName' failed to satisfy constraint: Member must have length greater than or equal to 3`);
  if (name.length > 255) throw validation(`1 validation error detected: Value '${name}' at 'tableName' failed to satisfy constraint: Member must have length less than or equal to 255`);
  if (!/^[a-zA-Z0-9_.-]+$/.test(name)) throw validation(`1 validation error detected: Value '${name}' at 'tableName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+`);
  return name;
}

/** ExpressionAttributeNames: `#placeholder` → attribute name. */
export function parseNames(req: Record<string, unknown>): Record<string, string> | undefined {
  const raw = req.ExpressionAttributeNames;
  if (raw === undefined || raw === null) return undefined;
  if (!isPlainObject(raw)) throw validation(`1 validation error detected: Value at 'expressionAttributeNames' failed to satisfy constraint: Member must be a map of strings, not ${jsonKind(raw)}`);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (!/^#[A-Za-z0-9_]+$/.test(k)) throw validation(`ExpressionAttributeNames contains invalid key: Syntax error; key: "${k}"`);
    if (typeof v !== 'string') throw validation(`ExpressionAttributeNames contains invalid value for key ${k}: it must be a string, not ${jsonKind(v)}`);
    if (v === '') throw validation(`ExpressionAttributeNames contains invalid value: Empty attribute name; for key: "${k}"`);
    out[k] = v;
  }
  return out;
}

/** ExpressionAttributeValues: `:placeholder` → attribute value. */
export function parseValues(req: Record<string, unknown>): Record<string, AttributeValue> | undefined {
  const raw = req.ExpressionAttributeValues;
  if (raw === undefined || raw === null) return undefined;
  if (!isPlainObject(raw)) throw validation(`1 validation error detected: Value at 'expressionAttributeValues' failed to satisfy constraint: Member must be a map of AttributeValues, not ${jsonKind(raw)}`);
  const out: Record<string, AttributeValue> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (!/^:[A-Za-z0-9_]+$/.test(k)) throw validation(`ExpressionAttributeValues contains invalid key: Syntax error; key: "${k}"`);
    out[k] = parseAttributeValue(v, `ExpressionAttributeValues.${k}`);
  }
  return out;
}
