// User-facing errors: one clear message naming what is wrong and how to fix it, never a stack trace.

/** An error the user caused (bad config, unreachable host, impossible batch). CLIs print only its message. */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UserError";
  }
}

/** Runs a CLI main function: a UserError prints its message and exits 1; anything else keeps its stack. */
export async function runCli(main: () => Promise<number | void>): Promise<never> {
  try {
    const code = await main();
    Deno.exit(code ?? 0);
  } catch (e) {
    if (e instanceof UserError) {
      console.error(`error: ${e.message}`);
      Deno.exit(1);
    }
    throw e;
  }
}
