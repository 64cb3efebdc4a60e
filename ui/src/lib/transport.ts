// How the ui reaches the Rust side: Tauri's invoke/listen inside the desktop and mobile shells,
// HTTP + server-sent events against tandem-app-server in a plain browser. Both carry the same
// commands (app/src/commands.rs) and the same events (AppEvent).

import type { AppEvent } from "./bindings/AppEvent";
import type { Command } from "./bindings/commands";
import type { Failure } from "./bindings/Failure";
import type { VideoStream } from "./video";

/** A channel to the Rust side. */
export interface Transport {
  /** Runs a command; rejects with a Failure. */
  invoke<T>(command: Command, args?: Record<string, unknown>): Promise<T>;
  /** Calls `handler` for every event from now on; returns a function that stops it. */
  listen(handler: (event: AppEvent) => void): () => void;
  /** The URL of a call's pictures (see lib/video.ts), or null where there are none. */
  videoUrl(callId: string, stream: VideoStream): string | null;
}

/** The name of the Tauri command and event the shells register. */
export const TAURI_COMMAND = "api";
export const TAURI_EVENT = "app-event";
/** The URI scheme the shells serve a call's pictures on (app/src/video.rs). */
export const VIDEO_SCHEME = "tandem-video";

function asFailure(e: unknown): Failure {
  if (e && typeof e === "object" && "kind" in e && "message" in e) return e as Failure;
  return { kind: "other", message: String(e), detail: "" };
}

/** Inside a Tauri shell. */
export async function tauriTransport(): Promise<Transport> {
  const core = await import("@tauri-apps/api/core");
  const events = await import("@tauri-apps/api/event");
  return {
    async invoke<T>(command: Command, args: Record<string, unknown> = {}) {
      try {
        return await core.invoke<T>(TAURI_COMMAND, { command, args });
      } catch (e) {
        throw asFailure(e);
      }
    },
    listen(handler) {
      let stop: (() => void) | null = null;
      let stopped = false;
      void events.listen<AppEvent>(TAURI_EVENT, (e) => handler(e.payload)).then((un) => {
        if (stopped) un();
        else stop = un;
      });
      return () => {
        stopped = true;
        stop?.();
      };
    },
    videoUrl(callId, stream) {
      // tandem-video://localhost/… on Linux and macOS, http://tandem-video.localhost/… elsewhere.
      return core.convertFileSrc(`${callId}/${stream}`, VIDEO_SCHEME);
    },
  };
}

/** In a browser, against tandem-app-server at `base` ("" = same origin). */
export function httpTransport(base = ""): Transport {
  return {
    async invoke<T>(command: Command, args: Record<string, unknown> = {}) {
      let response: Response;
      try {
        response = await fetch(`${base}/api/${command}`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(args),
        });
      } catch (e) {
        throw { kind: "unreachable", message: "The app server does not answer.", detail: String(e) } satisfies Failure;
      }
      const body: unknown = await response.json().catch(() => null);
      if (!response.ok) throw asFailure(body ?? `HTTP ${response.status}`);
      return body as T;
    },
    listen(handler) {
      const source = new EventSource(`${base}/api/events`);
      source.onmessage = (m) => handler(JSON.parse(m.data) as AppEvent);
      return () => source.close();
    },
    videoUrl(callId, stream) {
      return `${base}/api/video/${encodeURIComponent(callId)}/${stream}`;
    },
  };
}

/** The transport for where the ui runs. */
export async function detectTransport(): Promise<Transport> {
  if (typeof window !== "undefined" && "__TAURI_INTERNALS__" in window) return tauriTransport();
  return httpTransport();
}
