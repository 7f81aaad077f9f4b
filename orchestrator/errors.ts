// User-facing errors: one clear message naming what is wrong and how to fix it, never a stack trace.

/** An error the user caused (bad config, unreachable host, impossible batch). CLIs print only its message. */
export class UserError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    // Subclasses (e.g. NoProfileError) name themselves.
    this.name = new.target.name;
  }
}

/**
 * A write the run depends on failed (a full disk, a read-only or vanished directory, an I/O error): the message names
 * the path and the OS error (`cannot write runs/x/ledger.jsonl: ENOSPC, No space left on device`).
 */
export class WriteFailure extends Error {
  /** `cause`: the error, or the OS's message as another process reported it (`... (os error 28)`). */
  constructor(readonly path: string, cause: unknown) {
    const text = String((cause as Error)?.message ?? cause);
    const errno = Number(text.match(/\(os error (\d+)\)/)?.[1]);
    const code = (cause as { code?: string })?.code ?? ERRNO_NAMES[errno];
    const what = text.replace(/ \(os error \d+\)/, "").replace(/: \w+ '[^']*'$/, "");
    super(`cannot write ${path}: ${code ? `${code}, ` : ""}${what}`, { cause });
    this.name = "WriteFailure";
  }
}

/** Linux errno names of the failures a write meets. */
const ERRNO_NAMES: Record<number, string> = {
  2: "ENOENT",
  5: "EIO",
  13: "EACCES",
  27: "EFBIG",
  28: "ENOSPC",
  30: "EROFS",
  122: "EDQUOT",
};

/** Runs `fn` (a write of `path`), turning any failure into a WriteFailure naming `path`. */
export async function writing<T>(path: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw e instanceof WriteFailure ? e : new WriteFailure(path, e);
  }
}

/** Runs a CLI main function: a UserError prints its message and exits 1; anything else keeps its stack. */
export async function runCli(main: () => Promise<number | void>): Promise<never> {
  try {
    const code = await main();
    Deno.exit(code ?? 0);
  } catch (e) {
    if (e instanceof UserError || e instanceof WriteFailure) {
      console.error(`error: ${e.message}`);
      Deno.exit(1);
    }
    throw e;
  }
}
