import { fireEvent, render, screen, waitFor } from "@testing-library/svelte";
import { describe, expect, it } from "vitest";
import CameraSettings from "./CameraSettings.svelte";
import { AppModel } from "../lib/app.svelte";
import type { Cameras } from "../lib/bindings/Cameras";
import { TestTransport } from "../lib/test-transport";

const pattern = { id: "pattern", label: "Test pattern (moving colour bars)", kind: "pattern", size: { width: 640, height: 480, fps: 15 } } as const;
const webcam = { id: "device:v4l2:/dev/video0", label: "Integrated Camera", kind: "device", size: { width: 640, height: 480, fps: 15 } } as const;

function cameras(available: Cameras["available"]): Cameras {
  return { available, current: "pattern", folder: "/home/alice/.local/share/tandem/videos" };
}

/** Opens the card as a click on its summary does. */
async function openCameraSettings(): Promise<void> {
  const card = screen.getByTestId("camera-settings") as HTMLDetailsElement;
  card.open = true;
  await fireEvent(card, new Event("toggle"));
}

const listed = (t: TestTransport) => t.sent.filter((s) => s.command === "list_cameras").length;

describe("camera settings", () => {
  it("looks for cameras only once opened, says in words when none is connected, and looks again", async () => {
    let answer = cameras([pattern]);
    const transport = new TestTransport({ list_cameras: () => answer });
    render(CameraSettings, { props: { model: new AppModel(transport) } });
    // Closed: nothing asked (listing cameras starts GStreamer in the app).
    expect(listed(transport)).toBe(0);
    await openCameraSettings();
    const status = await screen.findByTestId("no-camera-connected");
    expect(status.textContent).toContain("No camera is connected");
    expect(screen.getByTestId("camera-settings").textContent).not.toContain("not supported");
    // A camera plugged in: the next look lists it and the notice goes away.
    answer = cameras([pattern, webcam]);
    const before = listed(transport);
    await fireEvent.click(screen.getByRole("button", { name: "Look for cameras again" }));
    await waitFor(() => expect(screen.queryByTestId("no-camera-connected")).toBeNull());
    expect(listed(transport)).toBe(before + 1);
    const options = Array.from(screen.getByTestId("default-camera").querySelectorAll("option")).map((o) => o.textContent ?? "");
    expect(options.some((o) => o.startsWith("Integrated Camera"))).toBe(true);
  });

  it("chooses a connected camera", async () => {
    const transport = new TestTransport({ list_cameras: cameras([pattern, webcam]) });
    render(CameraSettings, { props: { model: new AppModel(transport) } });
    await openCameraSettings();
    const select = (await screen.findByTestId("default-camera")) as HTMLSelectElement;
    await fireEvent.change(select, { target: { value: webcam.id } });
    await waitFor(() =>
      expect(transport.sent.find((s) => s.command === "choose_camera")?.args).toEqual({ camera: webcam.id }),
    );
  });
});
