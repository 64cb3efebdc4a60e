// Pictures of a call's video, from the Rust side to a <canvas>.
//
// One request per picture (app/src/video.rs): `…/CALL/remote?after=SEQ&maxw=W&maxh=H&format=F`
// waits until a picture newer than SEQ exists (or about a second, then 204) and answers a
// 32-byte header ("TVF1", then little-endian u32 width, height, seq, source width, source
// height, conversion µs, format: 0 RGBA, 1 I420) followed by the pixels. The painter asks for
// I420 (1.5 bytes a pixel, the decoder's own planes: no conversion on the Rust side) and
// converts it here. The next request leaves as soon as a picture's number is known (while it
// is painted), so at most two pictures are under way per canvas: the canvas shows pictures at
// the rate they come or at the rate it can paint, never queueing.

/** Which stream of a call: the peer's video or our own camera. */
export type VideoStream = "remote" | "self";

/** How an answer's pixels are laid out. */
export type PixelFormat = "rgba" | "i420";

/** One decoded answer. */
export interface FramePicture {
  width: number;
  height: number;
  seq: number;
  sourceWidth: number;
  sourceHeight: number;
  convertUs: number;
  format: PixelFormat;
  /** RGBA (4 bytes a pixel) or the I420 planes Y, U, V. */
  pixels: Uint8Array;
}

export const FRAME_HEADER_LEN = 32;

/** The byte length of a picture's pixels in `format`. */
export function pixelBytes(format: PixelFormat, width: number, height: number): number {
  if (format === "rgba") return width * height * 4;
  const cw = Math.ceil(width / 2);
  const ch = Math.ceil(height / 2);
  return width * height + 2 * cw * ch;
}

/**
 * Converts I420 planes (BT.601 limited range, as the decoders give them) into RGBA `out`
 * (a clamped array, so the sums need no clamping here).
 */
export function i420ToRgba(planes: Uint8Array, width: number, height: number, out: Uint8ClampedArray): void {
  const cw = Math.ceil(width / 2);
  const ch = Math.ceil(height / 2);
  const uOff = width * height;
  const vOff = uOff + cw * ch;
  let o = 0;
  for (let y = 0; y < height; y++) {
    const row = y * width;
    const crow = (y >> 1) * cw;
    for (let x = 0; x < width; x++) {
      const c = (planes[row + x] - 16) * 298;
      const d = planes[uOff + crow + (x >> 1)] - 128;
      const e = planes[vOff + crow + (x >> 1)] - 128;
      out[o] = (c + 409 * e + 128) >> 8;
      out[o + 1] = (c - 100 * d - 208 * e + 128) >> 8;
      out[o + 2] = (c + 516 * d + 128) >> 8;
      out[o + 3] = 255;
      o += 4;
    }
  }
}

/** Parses a frame answer; null when it is not one (wrong magic, short, size mismatch). */
export function parseFrame(buffer: ArrayBuffer): FramePicture | null {
  if (buffer.byteLength < FRAME_HEADER_LEN) return null;
  const view = new DataView(buffer);
  if (view.getUint32(0, false) !== 0x54564631) return null; // "TVF1"
  const field = (i: number) => view.getUint32(4 + i * 4, true);
  const width = field(0);
  const height = field(1);
  const code = field(6);
  const format: PixelFormat | null = code === 0 ? "rgba" : code === 1 ? "i420" : null;
  if (!format || width === 0 || height === 0) return null;
  if (buffer.byteLength !== FRAME_HEADER_LEN + pixelBytes(format, width, height)) return null;
  return {
    width,
    height,
    seq: field(2),
    sourceWidth: field(3),
    sourceHeight: field(4),
    convertUs: field(5),
    format,
    pixels: new Uint8Array(buffer, FRAME_HEADER_LEN),
  };
}

/** What a painter measured, for the ui's data attributes and the E2E test. */
export interface PainterStats {
  /** Pictures painted. */
  frames: number;
  /** Pictures per second over the last two seconds. */
  fps: number;
  /** The last picture's size as decoded. */
  sourceWidth: number;
  sourceHeight: number;
  /** Mean time from request to painted picture, in ms (includes waiting for it). */
  meanFetchMs: number;
  /** Mean time to paint one picture into the canvas (conversion included), in ms. */
  meanPaintMs: number;
  /** Of which the I420-to-RGBA conversion here, in ms. */
  meanYuvMs: number;
  /** Mean Rust-side conversion time, in ms. */
  meanConvertMs: number;
  /** Mean bytes an answer. */
  meanBytes: number;
}

type Fetcher = (url: string, init: RequestInit) => Promise<Response>;

/**
 * Fetches the pictures of one stream and paints them into a canvas until stopped. The canvas
 * takes the picture's size; CSS (`object-fit: contain`) letterboxes it into its box.
 */
export class FramePainter {
  stats: PainterStats = {
    frames: 0,
    fps: 0,
    sourceWidth: 0,
    sourceHeight: 0,
    meanFetchMs: 0,
    meanPaintMs: 0,
    meanYuvMs: 0,
    meanConvertMs: 0,
    meanBytes: 0,
  };
  private running = false;
  private abort: AbortController | null = null;
  private seq = 0;
  private image: ImageData | null = null;
  private recent: number[] = [];
  private totals = { fetch: 0, paint: 0, yuv: 0, convert: 0, bytes: 0 };

  constructor(
    private readonly url: string,
    private readonly canvas: HTMLCanvasElement,
    private readonly onPicture: (stats: PainterStats) => void = () => {},
    private readonly fetcher: Fetcher = (u, i) => fetch(u, i),
    private readonly format: PixelFormat = "i420",
  ) {}

  /** Starts the request loop (once). */
  start(): void {
    if (this.running) return;
    this.running = true;
    void this.loop();
  }

  /** Stops the loop and cancels the request in flight. */
  stop(): void {
    this.running = false;
    this.abort?.abort();
  }

  /** The largest picture worth fetching: the canvas box in device pixels. */
  private wanted(): [number, number] {
    const ratio = typeof devicePixelRatio === "number" && devicePixelRatio > 0 ? devicePixelRatio : 1;
    const w = Math.round((this.canvas.clientWidth || 640) * ratio);
    const h = Math.round((this.canvas.clientHeight || 480) * ratio);
    return [Math.max(16, w), Math.max(16, h)];
  }

  /** Asks for the picture after `this.seq`; resolves to the answer and when it was asked. */
  private request(): Promise<{ response: Response; asked: number }> {
    const [maxw, maxh] = this.wanted();
    const sep = this.url.includes("?") ? "&" : "?";
    const url = `${this.url}${sep}after=${this.seq}&maxw=${maxw}&maxh=${maxh}&format=${this.format}`;
    const asked = performance.now();
    return this.fetcher(url, { signal: this.abort?.signal, cache: "no-store" }).then((response) => ({ response, asked }));
  }

  private async loop(): Promise<void> {
    let failures = 0;
    this.abort = new AbortController();
    // The next picture is asked for as soon as this one's number is known, before it is
    // painted: fetching overlaps painting. At most two pictures are under way per canvas.
    let next: Promise<{ response: Response; asked: number }> | null = null;
    while (this.running) {
      try {
        const pending = next ?? this.request();
        next = null;
        const { response, asked } = await pending;
        if (!this.running) return;
        if (response.status === 200) {
          const picture = parseFrame(await response.arrayBuffer());
          if (picture && this.running) {
            this.seq = picture.seq;
            next = this.request();
            // A failed prefetch is seen when it is awaited; never as an unhandled rejection.
            next.catch(() => {});
            this.paint(picture, asked);
            failures = 0;
            continue;
          }
        } else if (response.status === 204) {
          failures = 0;
          continue;
        }
        // No stream (yet, or any more), or garbage: ask again a little later.
        failures += 1;
      } catch {
        if (!this.running) return;
        failures += 1;
      }
      await new Promise((r) => setTimeout(r, Math.min(2000, 250 * failures)));
    }
  }

  private paint(p: FramePicture, asked: number): void {
    const fetched = performance.now();
    if (this.canvas.width !== p.width) this.canvas.width = p.width;
    if (this.canvas.height !== p.height) this.canvas.height = p.height;
    const ctx = this.canvas.getContext("2d");
    if (ctx) {
      if (!this.image || this.image.width !== p.width || this.image.height !== p.height) {
        this.image = ctx.createImageData(p.width, p.height);
      }
      const before = performance.now();
      if (p.format === "i420") i420ToRgba(p.pixels, p.width, p.height, this.image.data);
      else this.image.data.set(p.pixels);
      this.totals.yuv += performance.now() - before;
      ctx.putImageData(this.image, 0, 0);
    }
    const painted = performance.now();
    this.recent.push(painted);
    while (this.recent.length > 0 && painted - this.recent[0] > 2000) this.recent.shift();
    const n = this.stats.frames + 1;
    this.totals.fetch += fetched - asked;
    this.totals.paint += painted - fetched;
    this.totals.convert += p.convertUs / 1000;
    this.totals.bytes += p.pixels.byteLength + FRAME_HEADER_LEN;
    const span = this.recent.length > 1 ? painted - this.recent[0] : 0;
    this.stats = {
      frames: n,
      fps: span > 0 ? ((this.recent.length - 1) * 1000) / span : 0,
      sourceWidth: p.sourceWidth,
      sourceHeight: p.sourceHeight,
      meanFetchMs: this.totals.fetch / n,
      meanPaintMs: this.totals.paint / n,
      meanYuvMs: this.totals.yuv / n,
      meanConvertMs: this.totals.convert / n,
      meanBytes: this.totals.bytes / n,
    };
    this.onPicture(this.stats);
  }
}
