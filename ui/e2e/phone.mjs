// The phone layout (390×844) in headless Chromium (playwright-core + the system's chromium), with
// axe-core on every screen: no serious or critical accessibility violations, no horizontal
// scrolling, the section bar at the bottom with touch-sized targets. The built ui (dist/) is
// served with a mock of the app API (fixtures.mjs); screenshots go to $UI_SHOTS (default
// ../target/e2e/phone).

import { createServer } from "node:http";
import { readFile, mkdir } from "node:fs/promises";
import { existsSync } from "node:fs";
import { extname, join, normalize, resolve } from "node:path";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";
import { screens } from "./fixtures.mjs";

const require = createRequire(import.meta.url);
const axeSource = await readFile(require.resolve("axe-core/axe.min.js"), "utf8");
const dist = resolve("dist");
const shots = resolve(process.env.UI_SHOTS ?? "../target/e2e/phone");
const chromiumPath = process.env.CHROMIUM ?? ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find(existsSync);
const types = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png" };
const WIDTH = 390;
const HEIGHT = 844;

if (!existsSync(join(dist, "index.html"))) throw new Error("ui/dist is not built: run `npm run build` first");
if (!chromiumPath) throw new Error("no chromium found (set CHROMIUM)");

let answers = {};
let events = [];
const server = createServer(async (req, res) => {
  const url = new URL(req.url ?? "/", "http://localhost");
  if (url.pathname === "/api/events") {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    res.write(": ok\n\n");
    for (const e of events) res.write(`data: ${JSON.stringify(e)}\n\n`);
    return;
  }
  if (url.pathname.startsWith("/api/video/")) {
    // A picture as app/src/video.rs answers it: "TVF1", seven little-endian u32 (width, height,
    // seq, source width, source height, conversion µs, format 0 = RGBA), then RGBA: colour bars.
    const self = url.pathname.endsWith("/self");
    const [w, h] = self ? [160, 120] : [320, 240];
    const body = Buffer.alloc(32 + w * h * 4);
    body.write("TVF1", 0, "latin1");
    [w, h, Number(url.searchParams.get("after") ?? 0) + 1, w, h, 0, 0].forEach((v, i) => body.writeUInt32LE(v, 4 + i * 4));
    const bars = [[235, 235, 235], [235, 235, 16], [16, 235, 235], [16, 235, 16], [235, 16, 235], [235, 16, 16], [16, 16, 235]];
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const [r, g, b] = bars[Math.floor((x * bars.length) / w)];
        body.set([r, g, b, 255], 32 + (y * w + x) * 4);
      }
    }
    // One picture a second is plenty for a layout check.
    if (url.searchParams.get("after") !== "0") await new Promise((ok) => setTimeout(ok, 1000));
    res.writeHead(200, { "content-type": "application/octet-stream" });
    res.end(body);
    return;
  }
  if (url.pathname.startsWith("/api/")) {
    const command = url.pathname.slice(5);
    const answer = answers[command] ?? null;
    // `{ error: Failure }` answers as the app server does when a command fails.
    const failed = answer !== null && typeof answer === "object" && "error" in answer;
    res.writeHead(failed ? 422 : 200, { "content-type": "application/json" });
    res.end(JSON.stringify(failed ? answer.error : answer));
    return;
  }
  const path = normalize(join(dist, url.pathname === "/" ? "index.html" : url.pathname));
  if (!path.startsWith(dist)) {
    res.writeHead(400).end();
    return;
  }
  try {
    const body = await readFile(existsSync(path) ? path : join(dist, "index.html"));
    res.writeHead(200, { "content-type": types[extname(path)] ?? "application/octet-stream" });
    res.end(body);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const base = `http://127.0.0.1:${server.address().port}`;

const browser = await chromium.launch({ executablePath: chromiumPath, args: ["--no-sandbox"] });
const failures = [];
await mkdir(shots, { recursive: true });
try {
  for (const [name, screen] of Object.entries(screens)) {
    answers = screen.answers;
    events = screen.events ?? [];
    for (const scheme of ["light", "dark"]) {
      const context = await browser.newContext({
        viewport: { width: WIDTH, height: HEIGHT }, deviceScaleFactor: 1, isMobile: true, hasTouch: true, colorScheme: scheme,
      });
      const page = await context.newPage();
      const errors = [];
      page.on("pageerror", (e) => errors.push(String(e)));
      await page.goto(base);
      await page.waitForSelector("main");
      await page.waitForFunction(() => document.querySelector("main")?.children.length > 0);
      if (screen.tab) await page.getByRole("tab", { name: screen.tab }).click();
      if (screen.open) await page.getByRole("button", { name: screen.open }).click();
      if (screen.events) await page.waitForSelector("[data-testid=roster]");
      if (screen.steps) await screen.steps(page);
      await page.waitForTimeout(150);
      await page.screenshot({ path: join(shots, `${name}-${scheme}.png`), fullPage: false });

      const where = `${name} (${scheme})`;
      if (errors.length) failures.push(`${where}: page errors: ${errors.join("; ")}`);
      const scrollWidth = await page.evaluate(() => document.scrollingElement.scrollWidth);
      if (scrollWidth > WIDTH) failures.push(`${where}: scrolls sideways (${scrollWidth}px wide)`);
      if (name !== "wizard") {
        const bar = await page.getByRole("tablist").boundingBox();
        if (!bar || Math.abs(bar.y + bar.height - HEIGHT) > 1) failures.push(`${where}: the section bar is not at the bottom`);
        for (const tab of await page.getByRole("tab").all()) {
          const box = await tab.boundingBox();
          if (!box || box.height < 44) failures.push(`${where}: a tab is smaller than 44px`);
        }
      }
      await page.addScriptTag({ content: axeSource });
      const result = await page.evaluate(async () => {
        // eslint-disable-next-line no-undef
        const r = await axe.run(document, { resultTypes: ["violations"] });
        return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 3) }));
      });
      for (const v of result) {
        const line = `${where}: axe ${v.impact} ${v.id}: ${v.help} at ${v.nodes.join(", ")}`;
        if (v.impact === "serious" || v.impact === "critical") failures.push(line);
        else console.log(`note: ${line}`);
      }
      console.log(`phone ${where}: checked, ${result.length} axe findings`);
      await context.close();
    }
  }
} finally {
  await browser.close();
  server.close();
}
if (failures.length) {
  console.error(failures.join("\n"));
  process.exit(1);
}
console.log(`phone layout: ${Object.keys(screens).length} screens × 2 themes OK; screenshots in ${shots}`);
