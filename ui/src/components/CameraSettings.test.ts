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

describe("camera settings", () => {
  it("says in words when no camera is connected, and looks again on request", async () => {
    let answer = cameras([pattern]);
    const transport = new TestTransport({ list_cameras: () => answer });
    render(CameraSettings, { props: { model: new AppModel(transport) } });
    const status = await screen.findByTestId("no-camera-connected");
    expect(status.textContent).toContain("No camera is connected");
    expect(screen.getByTestId("camera-settings").textContent).not.toContain("not supported");
    // A camera plugged in: the next look lists it and the notice goes away.
    answer = cameras([pattern, webcam]);
    await fireEvent.click(screen.getByRole("button", { name: "Look for cameras again" }));
    await waitFor(() => expect(screen.queryByTestId("no-camera-connected")).toBeNull());
    const options = Array.from(screen.getByTestId("default-camera").querySelectorAll("option")).map((o) => o.textContent ?? "");
    expect(options.some((o) => o.startsWith("Integrated Camera"))).toBe(true);
    expect(transport.sent.filter((s) => s.command === "list_cameras")).toHaveLength(2);
  });

  it("chooses a connected camera", async () => {
    const transport = new TestTransport({ list_cameras: cameras([pattern, webcam]) });
    render(CameraSettings, { props: { model: new AppModel(transport) } });
    const select = (await screen.findByTestId("default-camera")) as HTMLSelectElement;
    await fireEvent.change(select, { target: { value: webcam.id } });
    await waitFor(() =>
      expect(transport.sent.find((s) => s.command === "choose_camera")?.args).toEqual({ camera: webcam.id }),
    );
  });
});
