// Splitting a stream of text lines into documents: per file, per paragraph (blank lines), per line, or at code
// declarations (a JSDoc comment, a declaration keyword or a Markdown heading after a blank line), streaming.

/** How an input text is cut into documents. */
export type SplitMode = "file" | "paragraph" | "line" | "code";

/** The split modes, for help texts and checks. */
export const SPLIT_MODES: readonly SplitMode[] = ["file", "paragraph", "line", "code"];

/** Receives document bytes; `endDocument` closes the current document (possibly empty). */
export interface DocumentSink {
  write(bytes: Uint8Array): void;
  endDocument(): void;
}

const NEWLINE = Uint8Array.of(0x0a);
/** A line that starts a new document in `code` mode (after a blank line), at indentation 0-4. */
const DECLARATION =
  /^[ \t]{0,4}(\/\*\*|export |declare |interface |function |async function |class |abstract class |type |namespace |enum |const |let |var |#{1,6} )/;

function isBlank(line: Uint8Array): boolean {
  for (const b of line) if (b !== 0x20 && b !== 0x09 && b !== 0x0d) return false;
  return true;
}

const latin = new TextDecoder("latin1");

/** Cuts lines into documents (for the line-based modes; `file` mode needs no splitter). */
export class LineSplitter {
  #inDoc = false;
  #blanks = 0;
  #afterBlank = true;

  constructor(readonly mode: Exclude<SplitMode, "file">, readonly sink: DocumentSink) {}

  /** One line without its newline (a trailing `\r` is dropped). */
  line(raw: Uint8Array): void {
    const line = raw.length && raw[raw.length - 1] === 0x0d ? raw.subarray(0, raw.length - 1) : raw;
    const blank = isBlank(line);
    switch (this.mode) {
      case "line":
        if (!blank) {
          this.sink.write(line);
          this.sink.endDocument();
        }
        return;
      case "paragraph":
        if (blank) this.end();
        else this.#append(line, 0);
        return;
      case "code":
        if (blank) {
          if (this.#inDoc) this.#blanks++;
          this.#afterBlank = true;
          return;
        }
        if (this.#inDoc && this.#afterBlank && DECLARATION.test(latin.decode(line.subarray(0, 24)))) this.end();
        this.#append(line, this.#blanks);
        this.#afterBlank = false;
        return;
    }
  }

  #append(line: Uint8Array, blanks: number): void {
    if (this.#inDoc) { for (let i = 0; i <= blanks; i++) this.sink.write(NEWLINE); }
    this.sink.write(line);
    this.#inDoc = true;
    this.#blanks = 0;
  }

  /** Closes the current document, if any (end of a paragraph or of the input). */
  end(): void {
    if (this.#inDoc) this.sink.endDocument();
    this.#inDoc = false;
    this.#blanks = 0;
    this.#afterBlank = true;
  }
}

/** Splits a byte stream into lines (without the newline byte), chunk by chunk. */
export async function* byteLines(
  stream: ReadableStream<Uint8Array>,
  onChunk?: (bytes: number) => void,
): AsyncGenerator<Uint8Array> {
  let carry: Uint8Array | undefined;
  for await (const chunk of stream) {
    onChunk?.(chunk.length);
    let start = 0;
    for (let i = chunk.indexOf(0x0a); i >= 0; i = chunk.indexOf(0x0a, start)) {
      if (carry) {
        const joined = new Uint8Array(carry.length + i - start);
        joined.set(carry);
        joined.set(chunk.subarray(start, i), carry.length);
        carry = undefined;
        yield joined;
      } else {
        yield chunk.subarray(start, i);
      }
      start = i + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      if (carry) {
        const joined = new Uint8Array(carry.length + rest.length);
        joined.set(carry);
        joined.set(rest, carry.length);
        carry = joined;
      } else {
        carry = rest.slice();
      }
    }
  }
  if (carry) yield carry;
}
