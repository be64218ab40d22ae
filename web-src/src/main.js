// certgate page script: wires the obtain and renew forms to the flow in
// flow.js. It owns DOM event handling only; it must not touch key material.
//
// @peculiar/x509 needs the Reflect metadata polyfill loaded before it.
import "reflect-metadata";
import { wireForm } from "./form.js";

function start() {
  const form = document.querySelector("form[data-certgate-flow]");
  if (form) {
    wireForm(form);
  }
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", start);
} else {
  start();
}
