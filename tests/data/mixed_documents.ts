// A deterministic mix of hard documents for tokenizer tests: code, Unicode (accents, CJK, emoji, combining marks,
// right-to-left), long words, whitespace runs, digits and punctuation.

import { Rng } from "../../orchestrator/data/rng.ts";

const UNICODE = [
  "naïve café résumé Øresund",
  "日本語のテキストと漢字",
  "中文分词测试：你好，世界！",
  "한국어 문장입니다",
  "emoji 🎉🚀👩‍💻 flags 🇩🇪🇯🇵",
  "combining e\u0301 a\u0308 n\u0303",
  "עברית מימין לשמאל",
  "العربية نص",
  "Ελληνικά γράμματα",
  "Кириллица и ёлка",
  "math ∑∫√∞ ≤ ≥ ≠",
  "zero\u200bwidth\u200djoiner",
  "ﬁ ligature ＡＢＣ fullwidth",
];
const CODE = [
  "export function add(a: number, b: number): number {\n  return a + b;\n}\n",
  "def f(x):\n\tif x > 0:\n\t\treturn x ** 2\n\treturn -x\n",
  '#include <stdio.h>\nint main(void) { printf("%d\\n", 42); return 0; }\n',
  "const re = /^[a-z_][\\w$]*$/giu; // identifier\nlet s = `tpl ${re.source}`;\n",
  "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;\n",
  '{"key": [1, 2.5, -3e10, true, null], "nested": {"a": "b"}}\n',
];
const WORDS = ["the", "model", "sequence", "parallel", "token", "Deno", "attention", "gradient", "cluster", "a"];

/** `n` mixed documents from `corpus` (real text) and the pieces above, deterministic for a seed. */
export function mixedDocuments(corpus: string, n: number, seed = 7): string[] {
  const rng = new Rng(seed);
  const paras = corpus.split("\n\n").filter((p) => p.trim().length > 0);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const kind = i % 6;
    const pick = <T>(a: T[]) => a[rng.int(a.length)];
    let doc: string;
    if (kind === 0) doc = pick(paras);
    else if (kind === 1) doc = pick(CODE) + pick(paras).slice(0, 200);
    else if (kind === 2) doc = Array.from({ length: 2 + rng.int(5) }, () => pick(UNICODE)).join(pick([" ", "\n", ""]));
    else if (kind === 3) {
      // Long words: glued words, a long digit run, a long repeated character.
      doc = Array.from({ length: 8 + rng.int(20) }, () => pick(WORDS)).join("") + " " +
        "9".repeat(20 + rng.int(60)) + " " + "x".repeat(50 + rng.int(300)) + " supercalifragilisticexpialidocious";
    } else if (kind === 4) {
      // Whitespace runs: spaces, tabs, newlines, carriage returns, non-breaking spaces.
      const ws = [" ", "  ", "    ", "\t", "\t\t", "\n", "\n\n\n", "\r\n", "\u00a0", "        "];
      doc = Array.from({ length: 10 + rng.int(20) }, () => pick(WORDS) + pick(ws)).join("") + pick(ws);
    } else {
      doc = pick(paras).slice(0, 80) + " " + pick(UNICODE) + "\t" + pick(CODE).slice(0, 60) +
        "  !!?? ... --- (1,234.56)";
    }
    out.push(doc);
  }
  return out;
}
