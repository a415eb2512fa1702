// Draws every chart the server described (a Vega-Lite spec in data-vega-spec), on page load and
// after htmx swaps new content in. Vega evaluates expressions with the CSP-safe interpreter, so
// the page needs no 'unsafe-eval'.
import { expressionInterpreter } from "/static/vendor/vega-interpreter.js";

const options = {
  actions: false,
  ast: true,
  expr: expressionInterpreter,
  renderer: "svg",
  defaultStyle: false,
};

function draw(element) {
  if (element.dataset.drawn) return;
  element.dataset.drawn = "true";
  const spec = JSON.parse(element.dataset.vegaSpec);
  window.vegaEmbed(element, spec, options).catch((error) => {
    element.textContent = "The chart could not be drawn: " + error.message;
  });
}

function drawAll(root) {
  root.querySelectorAll("[data-vega-spec]").forEach(draw);
}

drawAll(document);
document.body.addEventListener("htmx:afterSettle", (event) => drawAll(event.target));
