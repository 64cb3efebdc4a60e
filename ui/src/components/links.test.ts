import { fireEvent, screen, waitFor } from "@testing-library/svelte";
import { describe, expect, it } from "vitest";
import type { CallLink } from "../lib/bindings/CallLink";
import { TestTransport } from "../lib/test-transport";
import { alice, setup } from "./test-support";

const carol: CallLink = { target: "sip:carol@tandem.lab", subject: "Lab 3", link: "sip:carol@tandem.lab?subject=Lab%203" };

describe("sip: and tel: links", () => {
  it("a link that opened the app asks before calling, then calls its target", async () => {
    let taken = false;
    const transport = new TestTransport({
      list_accounts: [alice],
      take_link: () => {
        if (taken) return null;
        taken = true;
        return carol;
      },
      call: (a: Record<string, unknown>) => ({ id: "call-1", ...a }),
    });
    await setup(transport);
    const offer = await screen.findByTestId("link-offer");
    expect(offer.textContent).toContain("sip:carol@tandem.lab");
    expect(offer.textContent).toContain("Lab 3");
    // Nothing is dialled until the user says so, and the confirm button has the focus.
    expect(transport.sent.some((s) => s.command === "call")).toBe(false);
    await waitFor(() => expect(document.activeElement).toBe(screen.getByTestId("link-call")));
    await fireEvent.click(screen.getByTestId("link-call"));
    await waitFor(() => expect(transport.sent.some((s) => s.command === "call")).toBe(true));
    const call = transport.sent.find((s) => s.command === "call");
    expect(call?.args).toMatchObject({ accountId: alice.id, target: "sip:carol@tandem.lab" });
    expect(screen.queryByTestId("link-offer")).toBeNull();
  });

  it("a link arriving later switches to the calls tab; dismissing it places no call", async () => {
    const transport = new TestTransport({ list_accounts: [alice] });
    const model = await setup(transport);
    expect(screen.queryByTestId("link-offer")).toBeNull();
    await fireEvent.click(document.getElementById("tab-chat") as HTMLElement);
    transport.emit({ type: "callLink", link: { target: "tel:+15550100", subject: null, link: "tel:+1-555-0100" } });
    const offer = await screen.findByTestId("link-offer");
    expect(offer.textContent).toContain("tel:+15550100");
    expect(document.getElementById("tab-calls")?.getAttribute("aria-selected")).toBe("true");
    await fireEvent.click(screen.getByTestId("link-dismiss"));
    expect(screen.queryByTestId("link-offer")).toBeNull();
    expect(model.callLink).toBeNull();
    expect(transport.sent.some((s) => s.command === "call")).toBe(false);
    // The Rust side's copy is taken too, so a reload does not ask again.
    expect(transport.sent.filter((s) => s.command === "take_link").length).toBe(2);
  });

  it("a link that comes before any account waits for the first one", async () => {
    const transport = new TestTransport({ take_link: carol });
    const model = await setup(transport);
    // The first-run wizard comes first; the link is kept meanwhile.
    expect(screen.queryByTestId("link-offer")).toBeNull();
    expect(model.callLink).toEqual(carol);
    transport.emit({ type: "accountsChanged", accounts: [alice] });
    const offer = await screen.findByTestId("link-offer");
    expect(offer.textContent).toContain("sip:carol@tandem.lab");
    expect((screen.getByTestId("link-call") as HTMLButtonElement).disabled).toBe(false);
  });
});
