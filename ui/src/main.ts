import { mount } from "svelte";
import "./app.css";
import App from "./App.svelte";
import { AppModel } from "./lib/app.svelte";
import { setLanguage } from "./lib/i18n";
import { detectTransport } from "./lib/transport";

async function boot(): Promise<void> {
  setLanguage(navigator.language);
  const target = document.getElementById("app");
  if (!target) return;
  const model = new AppModel(await detectTransport());
  mount(App, { target, props: { model } });
  await model.start().catch((e) => (model.error = e));
}

void boot();
