// Finds the functions of a deno-fmt formatted TypeScript file and their lengths, without a parser: a function starts
// at a line that declares one (a `function`, a class or object method, or an arrow with a block body) and ends at the
// first later line with the same indentation that starts with `}`. deno fmt's indentation makes that exact for the
// code in this repository; a header whose parameters wrap ends at the `)` line of the same indentation.

/** One function: its name (or `<arrow>`), first and last line (1-based, inclusive) and length in lines. */
export interface FunctionSpan {
  name: string;
  start: number;
  end: number;
  lines: number;
}

const CONTROL = new Set(["if", "for", "while", "switch", "catch", "with", "return", "await", "new", "typeof"]);
const FUNCTION_RE = /^(?:export\s+)?(?:default\s+)?(?:async\s+)?function\s*\*?\s*([\w$]*)\s*[<(]/;
const METHOD_RE =
  /^(?:(?:public|private|protected|static|async|override|readonly|get|set)\s+)*\*?(#?[\w$]+)\s*(?:<[^(]*>)?\(/;
const ARROW_NAME_RE =
  /^(?:export\s+)?(?:const|let|var)\s+([\w$]+)|^(?:(?:private|public|protected|static|readonly)\s+)*(#?[\w$]+)\s*[:=]/;

function indentOf(line: string): number {
  return line.length - line.trimStart().length;
}

/** The name a header line declares, or undefined when it declares no function. `body` is its line ending in `{`. */
function declaredName(head: string, body: string): string | undefined {
  const fn = head.match(FUNCTION_RE);
  if (fn) return fn[1] || "<function>";
  if (/=>\s*\{$/.test(body)) {
    const n = head.match(ARROW_NAME_RE);
    return n?.[1] ?? n?.[2] ?? "<arrow>";
  }
  const m = head.match(METHOD_RE);
  if (m && !CONTROL.has(m[1]) && /\)\s*(?::[^=]*)?\{$/.test(body)) return m[1];
  return undefined;
}

/** The functions of `text` (nested ones too, each measured on its own). */
export function functionSpans(text: string): FunctionSpan[] {
  const lines = text.split("\n");
  const spans: FunctionSpan[] = [];
  for (let i = 0; i < lines.length; i++) {
    const head = lines[i].trim();
    if (head === "" || head.startsWith("//") || head.startsWith("*") || head.startsWith("}")) continue;
    const indent = indentOf(lines[i]);
    let bodyLine = i;
    if (head.endsWith("(") || head.endsWith("<")) {
      // Wrapped parameters: the header ends at the next line of the same indentation.
      bodyLine = lines.findIndex((l, j) => j > i && l.trim() !== "" && indentOf(l) === indent);
      if (bodyLine < 0 || !/^[)>]/.test(lines[bodyLine].trim())) continue;
    }
    const body = lines[bodyLine].trimEnd();
    if (!body.endsWith("{")) continue;
    const name = declaredName(head, body.trim());
    if (name === undefined) continue;
    const end = lines.findIndex((l, j) => j > bodyLine && indentOf(l) === indent && l.trim().startsWith("}"));
    if (end < 0) continue;
    spans.push({ name, start: i + 1, end: end + 1, lines: end - i + 1 });
  }
  return spans;
}
