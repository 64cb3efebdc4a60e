import { fireEvent, screen, waitFor } from "@testing-library/svelte";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { CallInfo } from "../lib/bindings/CallInfo";
import type { Cameras } from "../lib/bindings/Cameras";
import type { VideoInfo } from "../lib/bindings/VideoInfo";
import { TestTransport } from "../lib/test-transport";
import { alice, setup } from "./test-support";
import { FRAME_HEADER_LEN, FramePainter, i420ToRgba, parseFrame } from "../lib/video";

const cameras: Cameras = {
  available: [
    { id: "pattern", label: "Test pattern (moving colour bars)", kind: "pattern", size: { width: 640, height: 480, fps: 15 } },
    { id: "file:/videos/clip.y4m", label: "clip.y4m", kind: "file", size: { width: 352, height: 288, fps: 30 } },
  ],
  current: "pattern",
  folder: "/home/alice/.local/share/tandem/videos",
};

function videoInfo(partial: Partial<VideoInfo> = {}): VideoInfo {
  return { codec: "VP8", sending: { width: 640, height: 480, fps: 15 }, receiving: true, remoteSize: null, camera: "pattern", peerOffered: false, ...partial };
}

function call(partial: Partial<CallInfo>): CallInfo {
  return {
    id: "call-1",
    sipCallId: "abc",
    accountId: alice.id,
    remote: "sip:bob@tandem.lab",
    direction: "outgoing",
    phase: "active",
    answeredAtMs: Date.now() - 5_000,
    held: false,
    remoteHeld: false,
    muted: false,
    codec: "opus",
    secure: false,
    endReason: null,
    mediaPath: null,
    video: null,
    ...partial,
  };
}

/** A frame answer as app/src/video.rs writes it: header, then RGBA. */
function frameBytes(width: number, height: number, seq: number, rgba = [200, 30, 40, 255]): ArrayBuffer {
  const buffer = new ArrayBuffer(FRAME_HEADER_LEN + width * height * 4);
  const view = new DataView(buffer);
  [0x54, 0x56, 0x46, 0x31].forEach((b, i) => view.setUint8(i, b));
  [width, height, seq, width * 2, height * 2, 1500, 0].forEach((v, i) => view.setUint32(4 + i * 4, v, true));
  const px = new Uint8Array(buffer, FRAME_HEADER_LEN);
  for (let i = 0; i < px.length; i += 4) px.set(rgba, i);
  return buffer;
}

/** A fake 2D context that records what was painted. */
const painted: { width: number; height: number; first: number[] }[] = [];
beforeEach(() => {
  painted.length = 0;
  vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockImplementation(function (this: HTMLCanvasElement) {
    return {
      createImageData: (w: number, h: number) => ({ width: w, height: h, data: new Uint8ClampedArray(w * h * 4) }),
      putImageData: (img: { width: number; height: number; data: Uint8ClampedArray }) =>
        painted.push({ width: img.width, height: img.height, first: [...img.data.slice(0, 4)] }),
    } as unknown as CanvasRenderingContext2D;
  } as never);
});
afterEach(() => {
  vi.restoreAllMocks();
  vi.unstubAllGlobals();
});

describe("frame answers", () => {
  it("parses the header and the pixels", () => {
    const f = parseFrame(frameBytes(4, 2, 77));
    expect(f).not.toBeNull();
    expect(f?.width).toBe(4);
    expect(f?.height).toBe(2);
    expect(f?.seq).toBe(77);
    expect(f?.sourceWidth).toBe(8);
    expect(f?.convertUs).toBe(1500);
    expect(f?.pixels.length).toBe(4 * 2 * 4);
    expect([...(f?.pixels.slice(0, 4) ?? [])]).toEqual([200, 30, 40, 255]);
  });

  it("parses I420 answers and converts them (BT.601 limited range)", () => {
    const [w, h] = [3, 2]; // odd width: chroma is 2 x 1
    const planes = [16, 235, 126, 16, 235, 126, /* U */ 128, 90, /* V */ 128, 240];
    const buffer = new ArrayBuffer(FRAME_HEADER_LEN + planes.length);
    const view = new DataView(buffer);
    [0x54, 0x56, 0x46, 0x31].forEach((b, i) => view.setUint8(i, b));
    [w, h, 1, w, h, 0, 1].forEach((v, i) => view.setUint32(4 + i * 4, v, true));
    new Uint8Array(buffer, FRAME_HEADER_LEN).set(planes);
    const f = parseFrame(buffer);
    expect(f?.format).toBe("i420");
    const out = new Uint8ClampedArray(w * h * 4);
    i420ToRgba(f!.pixels, w, h, out);
    expect([...out.slice(0, 4)]).toEqual([0, 0, 0, 255]); // black
    expect([...out.slice(4, 8)]).toEqual([255, 255, 255, 255]); // white
    // Strong V, weak U: red.
    const [r, g, b] = out.slice(8, 11);
    expect(r).toBeGreaterThan(200);
    expect(g).toBeLessThan(80);
    expect(b).toBeLessThan(80);
    // A truncated I420 answer is refused.
    expect(parseFrame(buffer.slice(0, buffer.byteLength - 1))).toBeNull();
  });

  it("refuses what is not a frame", () => {
    expect(parseFrame(new ArrayBuffer(10))).toBeNull();
    const bad = frameBytes(4, 2, 1);
    new DataView(bad).setUint8(0, 0x58);
    expect(parseFrame(bad)).toBeNull();
    // A header announcing more pixels than there are.
    const short = frameBytes(4, 2, 1).slice(0, FRAME_HEADER_LEN + 8);
    expect(parseFrame(short)).toBeNull();
  });
});

describe("FramePainter", () => {
  it("asks for the picture after the last one painted, skips 204s and paints into the canvas", async () => {
    const canvas = document.createElement("canvas");
    const urls: string[] = [];
    const answers = [new Response(null, { status: 204 }), new Response(frameBytes(8, 6, 5)), new Response(frameBytes(8, 6, 9))];
    const done = new Promise<void>((resolve) => {
      const painter = new FramePainter(
        "test-video:/call-1/remote",
        canvas,
        (stats) => {
          if (stats.frames === 2) {
            painter.stop();
            resolve();
          }
        },
        async (url) => {
          urls.push(url);
          const next = answers.shift();
          if (!next) throw new Error("no more answers");
          return next;
        },
      );
      painter.start();
    });
    await done;
    expect(urls[0]).toMatch(/^test-video:\/call-1\/remote\?after=0&maxw=\d+&maxh=\d+&format=i420$/);
    expect(urls[1]).toContain("after=0");
    expect(urls[2]).toContain("after=5");
    expect(canvas.width).toBe(8);
    expect(canvas.height).toBe(6);
    expect(painted).toHaveLength(2);
    expect(painted[0].first).toEqual([200, 30, 40, 255]);
  });

  it("backs off when the stream is not there and stops on request", async () => {
    vi.useFakeTimers();
    try {
      const canvas = document.createElement("canvas");
      let asked = 0;
      const painter = new FramePainter("u", canvas, () => {}, async () => {
        asked += 1;
        return new Response("no such video stream", { status: 404 });
      });
      painter.start();
      await vi.advanceTimersByTimeAsync(200);
      expect(asked).toBe(1);
      await vi.advanceTimersByTimeAsync(300);
      expect(asked).toBe(2);
      painter.stop();
      await vi.advanceTimersByTimeAsync(5000);
      expect(asked).toBe(2);
      expect(painted).toHaveLength(0);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("video calls", () => {
  it("shows the peer's video at once and asks about our camera (buttons, Escape, focus)", async () => {
    const offered = call({ video: videoInfo({ sending: null, camera: null, peerOffered: true }) });
    const transport = new TestTransport({ list_accounts: [alice], list_cameras: cameras, list_calls: [offered] });
    await setup(transport);
    const banner = await screen.findByRole("alertdialog", { name: "sip:bob@tandem.lab turned on video" });
    expect(screen.getByTestId("video-stage")).toBeTruthy();
    const show = screen.getByRole("button", { name: "Show my camera" });
    await waitFor(() => expect(document.activeElement).toBe(show));
    await fireEvent.click(show);
    expect(transport.sent.find((s) => s.command === "set_video")?.args).toEqual({ callId: "call-1", on: true });
    await fireEvent.click(screen.getByRole("button", { name: "Not now" }));
    expect(transport.sent.filter((s) => s.command === "dismiss_video_offer")).toHaveLength(1);
    await fireEvent.keyDown(banner, { key: "Escape" });
    expect(transport.sent.filter((s) => s.command === "dismiss_video_offer").at(-1)?.args).toEqual({ callId: "call-1" });
    // Answered: the next call state has no question.
    transport.emit({ type: "call", call: { ...offered, video: videoInfo({ sending: null, camera: null }) } } as never);
    await waitFor(() => expect(screen.queryByTestId("peer-video-banner")).toBeNull());
  });

  it("places a video call from the dialer", async () => {
    const transport = new TestTransport({ list_accounts: [alice], list_cameras: cameras });
    await setup(transport);
    const input = screen.getByLabelText("Number or SIP address");
    await fireEvent.input(input, { target: { value: "bob" } });
    await fireEvent.click(screen.getByRole("button", { name: "Video call" }));
    expect(transport.sent.find((s) => s.command === "call")?.args).toEqual({ accountId: alice.id, target: "bob", video: true });
  });

  it("shows the peer's video letterboxed, the self view, and paints the pictures", async () => {
    const urls: string[] = [];
    vi.stubGlobal("fetch", async (url: string) => {
      urls.push(String(url));
      const remote = String(url).includes("/remote");
      await new Promise((r) => setTimeout(r, 5));
      return new Response(frameBytes(remote ? 16 : 8, remote ? 12 : 6, remote ? 3 : 4, remote ? [10, 200, 30, 255] : [1, 2, 3, 255]));
    });
    const transport = new TestTransport({
      list_accounts: [alice],
      list_cameras: cameras,
      list_calls: [call({ video: videoInfo({ remoteSize: { width: 640, height: 480, fps: null } }) })],
    });
    const model = await setup(transport);
    const remote = screen.getByTestId("remote-video");
    const self = screen.getByTestId("self-view");
    expect(screen.getByRole("img", { name: "Video from sip:bob@tandem.lab" })).toContainElement(remote);
    expect(screen.getByRole("img", { name: "Your camera (self view)" })).toContainElement(self);
    expect(screen.getByTestId("video-detail")).toHaveTextContent("VP8 640×480");
    await waitFor(() => expect(Number(remote.getAttribute("data-frames"))).toBeGreaterThan(0));
    await waitFor(() => expect(Number(self.getAttribute("data-frames"))).toBeGreaterThan(0));
    expect((remote as HTMLCanvasElement).width).toBe(16);
    expect(painted.some((p) => p.first[1] === 200)).toBe(true);
    expect(screen.queryByText("Waiting for video…")).toBeNull();

    // A change of the call (another event) keeps the painters going: no new request from 0.
    const before = Number(remote.getAttribute("data-frames"));
    const asked = urls.length;
    model.apply({ type: "call", call: call({ muted: true, video: videoInfo({ remoteSize: { width: 640, height: 480, fps: null } }) }) });
    await waitFor(() => expect(Number(remote.getAttribute("data-frames"))).toBeGreaterThan(before + 1));
    expect(urls.slice(asked).filter((u) => u.includes("/remote?after=0&"))).toEqual([]);
  });

  it("turns the camera off and on, switches cameras and stops the video", async () => {
    const transport = new TestTransport({
      list_accounts: [alice],
      list_cameras: cameras,
      list_calls: [call({ video: videoInfo() })],
    });
    const model = await setup(transport);
    await fireEvent.click(screen.getByRole("button", { name: "Turn camera off" }));
    expect(transport.sent.find((s) => s.command === "set_camera")?.args).toEqual({ callId: "call-1", camera: null });

    const select = await screen.findByLabelText("Camera");
    await fireEvent.change(select, { target: { value: "file:/videos/clip.y4m" } });
    expect(transport.sent.filter((s) => s.command === "set_camera").at(-1)?.args).toEqual({
      callId: "call-1",
      camera: "file:/videos/clip.y4m",
    });

    // The Rust side reports the camera off: no self view, a note instead, and "turn on".
    model.apply({ type: "call", call: call({ video: videoInfo({ camera: null, sending: null }) }) });
    await waitFor(() => expect(screen.queryByRole("img", { name: "Your camera (self view)" })).toBeNull());
    expect(screen.getByText("Your camera is off")).toBeInTheDocument();
    await fireEvent.click(screen.getByRole("button", { name: "Turn camera on" }));
    expect(transport.sent.filter((s) => s.command === "set_camera").at(-1)?.args).toEqual({ callId: "call-1", camera: "pattern" });

    const stop = screen.getByRole("button", { name: "Stop video" });
    expect(stop).toHaveAttribute("aria-pressed", "true");
    await fireEvent.click(stop);
    expect(transport.sent.find((s) => s.command === "set_video")?.args).toEqual({ callId: "call-1", on: false });
  });

  it("upgrades an audio call to video", async () => {
    const transport = new TestTransport({ list_accounts: [alice], list_cameras: cameras, list_calls: [call({})] });
    await setup(transport);
    expect(screen.queryByTestId("video-stage")).toBeNull();
    const start = screen.getByRole("button", { name: "Start video" });
    expect(start).toHaveAttribute("aria-pressed", "false");
    await fireEvent.click(start);
    expect(transport.sent.find((s) => s.command === "set_video")?.args).toEqual({ callId: "call-1", on: true });
  });

  it("offers to answer with video only when the caller offered video", async () => {
    const incoming = call({ id: "call-7", direction: "incoming", phase: "incoming", answeredAtMs: null, video: videoInfo({ codec: null, sending: null, receiving: false }) });
    const transport = new TestTransport({ list_accounts: [alice], list_cameras: cameras, list_calls: [incoming] });
    const model = await setup(transport);
    expect(screen.getByText("sip:bob@tandem.lab is calling with video")).toBeInTheDocument();
    await fireEvent.click(screen.getByRole("button", { name: "Answer with video" }));
    expect(transport.sent.find((s) => s.command === "answer")?.args).toEqual({ callId: "call-7", video: true });

    model.apply({ type: "call", call: { ...incoming, video: null } });
    await waitFor(() => expect(screen.queryByRole("button", { name: "Answer with video" })).toBeNull());
    await fireEvent.click(screen.getByRole("button", { name: "Answer" }));
    expect(transport.sent.filter((s) => s.command === "answer").at(-1)?.args).toEqual({ callId: "call-7" });
  });

  it("keeps the video figures of a call and forgets them when it ends", async () => {
    const transport = new TestTransport({ list_accounts: [alice], list_cameras: cameras, list_calls: [call({ video: videoInfo() })] });
    const model = await setup(transport);
    const figures = { framesSent: 30, framesReceived: 29, framesDecoded: 29, keyframesSent: 1, nacksSent: 0, plisSent: 0, packetsLost: 0, targetBitrateBps: 400_000 };
    model.apply({ type: "video", callId: "call-1", figures });
    expect(model.videoFigures["call-1"]).toEqual(figures);
    model.apply({ type: "call", call: call({ phase: "ended" }) });
    expect(model.videoFigures["call-1"]).toBeUndefined();
  });
});

describe("camera settings", () => {
  it("lists the sources honestly and remembers the choice", async () => {
    const transport = new TestTransport({ list_accounts: [alice], list_cameras: cameras });
    const model = await setup(transport);
    // The card is closed until opened (listing cameras starts GStreamer in the app).
    const card = screen.getByTestId("camera-settings") as HTMLDetailsElement;
    card.open = true;
    await fireEvent(card, new Event("toggle"));
    const select = await screen.findByLabelText("Camera for video calls");
    expect(select).toHaveValue("pattern");
    const options = [...(select as HTMLSelectElement).options].map((o) => o.textContent?.trim());
    expect(options).toEqual([
      "Test pattern (moving colour bars) — 640×480 @ 15 fps",
      "clip.y4m — 352×288 @ 30 fps",
      "No camera (receive video only)",
    ]);
    expect(screen.getByText(/Besides the cameras of this computer/)).toHaveTextContent(cameras.folder);
    // No device among the sources: said in words.
    expect(screen.getByTestId("no-camera-connected")).toHaveTextContent("No camera is connected");
    await fireEvent.change(select, { target: { value: "" } });
    expect(transport.sent.find((s) => s.command === "choose_camera")?.args).toEqual({ camera: null });
    await waitFor(() => expect(model.cameras?.current).toBeNull());
  });
});
