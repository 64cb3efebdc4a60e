// Shared by the component tests: the signed-in demo account and the app rendered over a
// TestTransport.

import { render } from "@testing-library/svelte";
import App from "../App.svelte";
import { AppModel } from "../lib/app.svelte";
import type { AccountInfo } from "../lib/bindings/AccountInfo";
import type { TestTransport } from "../lib/test-transport";

/** alice@tandem.lab, a bundled-lab account, signed in. */
export const alice: AccountInfo = {
  id: "alice@tandem.lab",
  settings: {
    user: "alice",
    domain: "tandem.lab",
    authUser: null,
    displayName: null,
    proxy: "127.0.0.1:5060",
    transport: "udp",
    srtp: "off",
    expires: 600,
    lab: true,
  },
  hasPassword: true,
  registration: { state: "registered", expires: 600 },
};

/** Starts a model over `transport` and renders the app with it. */
export async function setup(transport: TestTransport): Promise<AppModel> {
  const model = new AppModel(transport);
  await model.start();
  render(App, { props: { model } });
  return model;
}
