// The byte channel to one agent, whatever carries it (an SSH exec channel or a local subprocess's pipes).

/** How a channel ended. */
export interface ChannelExit {
  /** Exit code of the agent process, when known. */
  code: number | null;
  /** Signal that ended the agent process (e.g. "KILL"), when known. */
  signal: string | null;
  /** Set when the transport itself failed (connection reset, keepalive timeout, ...). */
  error?: string;
}

/** A bidirectional byte channel to one agent process. */
export interface AgentChannel {
  /** Where it goes, for messages: `root@10.0.0.1:22` or `local`. */
  readonly label: string;
  /** The agent's stdout (protocol lines). */
  readonly stdout: ReadableStream<Uint8Array>;
  /** The agent's stderr (free text). */
  readonly stderr: ReadableStream<Uint8Array>;
  /** Queues bytes for the agent's stdin; false when the channel is already closed. */
  write(text: string): boolean;
  /** Closes the agent's stdin (end of file). */
  closeInput(): void;
  /** Resolves once the channel is closed for good. */
  readonly closed: Promise<ChannelExit>;
  /** Tears the channel down now (the agent sees end of file or is killed). */
  kill(): void;
}

/** Builds a ReadableStream fed by push callbacks (for event-emitter sources). */
export function pushStream(): {
  stream: ReadableStream<Uint8Array>;
  push: (chunk: Uint8Array) => void;
  end: () => void;
} {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let done = false;
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
    cancel() {
      done = true;
    },
  });
  return {
    stream,
    push: (chunk) => {
      if (!done) controller.enqueue(chunk);
    },
    end: () => {
      if (done) return;
      done = true;
      try {
        controller.close();
      } catch { /* already closed */ }
    },
  };
}
