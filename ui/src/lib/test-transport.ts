// A Transport for component tests: records commands, answers from a table, and lets the test
// push events as the Rust side would.

import type { AppEvent } from "./bindings/AppEvent";
import type { Command } from "./bindings/commands";
import type { Transport } from "./transport";

type Answer = unknown | ((args: Record<string, unknown>) => unknown);

export class TestTransport implements Transport {
  sent: { command: Command; args: Record<string, unknown> }[] = [];
  private handlers: ((e: AppEvent) => void)[] = [];

  constructor(private answers: Partial<Record<Command, Answer>> = {}) {}

  async invoke<T>(command: Command, args: Record<string, unknown> = {}): Promise<T> {
    this.sent.push({ command, args });
    const answer = this.answers[command];
    const value = typeof answer === "function" ? (answer as (a: Record<string, unknown>) => unknown)(args) : answer;
    if (value instanceof Error) throw JSON.parse(value.message);
    return (value ?? (command.startsWith("list") || command === "history" ? [] : null)) as T;
  }

  listen(handler: (e: AppEvent) => void): () => void {
    this.handlers.push(handler);
    return () => (this.handlers = this.handlers.filter((h) => h !== handler));
  }

  videoUrl(callId: string, stream: string): string | null {
    return `test-video:/${callId}/${stream}`;
  }

  emit(event: AppEvent): void {
    for (const h of this.handlers) h(event);
  }
}

/** A rejection carrying a Failure, for the answers table. */
export function fail(kind: string, message: string): Error {
  return new Error(JSON.stringify({ kind, message, detail: "" }));
}
