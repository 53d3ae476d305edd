/**
 * Shape checks of data messages, compiled from proto/schemas at build time (validators.gen.ts).
 * The client checks the envelope of every push ({@link envelopeProblem}): all of it but the
 * list items and readings, which the widget showing them checks in full ({@link schemaProblem})
 * so that a broken item becomes an error card in that one widget rather than a dropped push.
 *
 * @packageDocumentation
 */

import * as generated from "./validators.gen.js";

interface SchemaError {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
}

type Validator = ((data: unknown) => boolean) & { errors?: SchemaError[] | null };

const FULL: Record<string, Validator> = {
  alerts: generated.alerts as Validator,
  fleet: generated.fleet as Validator,
  telemetry: generated.telemetry as Validator,
  event: generated.event as Validator,
};

const ENVELOPE: Record<string, Validator> = {
  alerts: generated.alertsEnvelope as Validator,
  fleet: generated.fleetEnvelope as Validator,
  telemetry: generated.telemetryEnvelope as Validator,
  event: generated.event as Validator,
};

/** The part of a message only the widget showing it checks (see scripts/generate-wire.mjs). */
const PART: Record<string, Validator> = {
  alerts: generated.alertsPart as Validator,
  fleet: generated.fleetPart as Validator,
  telemetry: generated.telemetryPart as Validator,
};

/** The `type`s of data messages. */
export const DATA_TYPES: ReadonlySet<string> = new Set(Object.keys(FULL));

/**
 * Why `value`, a data message of `type`, breaks the contract (`alerts[0].severity must be an
 * integer`, naming the first broken field), or `undefined` when it matches in full.
 */
export function schemaProblem(type: string, value: unknown): string | undefined {
  return problem(FULL[type], value);
}

/** Like {@link schemaProblem}, for the envelope only: list items and readings may be anything. */
export function envelopeProblem(type: string, value: unknown): string | undefined {
  return problem(ENVELOPE[type], value);
}

/**
 * Like {@link schemaProblem}, for the list items and readings only (the rest of `value` may be
 * anything): for REST bodies that list what a message lists, `{ alerts: page.items }`.
 */
export function partProblem(type: string, value: unknown): string | undefined {
  return problem(PART[type], value);
}

function problem(validate: Validator | undefined, value: unknown): string | undefined {
  if (!validate) return "not a data message";
  if (validate(value)) return undefined;
  const error = validate.errors?.[0];
  if (!error) return "does not match the schema";
  return describe(error);
}

/** One schema error in the words a log reader expects: `alerts[0].status must be OPEN, …`. */
function describe(error: SchemaError): string {
  const path = fieldPath(error.instancePath);
  const p = error.params;
  switch (error.keyword) {
    case "required":
      return `${path === "message" ? "" : `${path}.`}${String(p.missingProperty)} is missing`;
    case "type": {
      const type = String(p.type).replace(",null", " or null");
      return `${path} must be ${/^[aeiou]/.test(type) ? "an" : "a"} ${type}`;
    }
    case "enum":
    case "const": {
      const allowed = (Array.isArray(p.allowedValues) ? p.allowedValues : [p.allowedValue]).map(String);
      return `${path} must be ${allowed.length > 1 ? `${allowed.slice(0, -1).join(", ")} or ${allowed.at(-1)}` : allowed[0]}`;
    }
    case "format":
      return p.format === "date-time" ? `${path} must be an RFC 3339 timestamp` : `${path} must be ${String(p.format)}`;
    case "minimum":
      return `${path} must be ≥ ${String(p.limit)}`;
    case "pattern":
      return `${path} must be 1 to 64 letters, digits, _ or -`;
    default:
      return `${path} ${error.message ?? "is invalid"}`;
  }
}

/** `/alerts/0/severity` (a JSON pointer) as `alerts[0].severity`; `message` for the root. */
function fieldPath(pointer: string): string {
  if (!pointer) return "message";
  return pointer
    .slice(1)
    .split("/")
    .map((part) => part.replaceAll("~1", "/").replaceAll("~0", "~"))
    .reduce((path, part) => (/^\d+$/.test(part) ? `${path}[${part}]` : path ? `${path}.${part}` : part), "");
}
