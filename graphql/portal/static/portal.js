// civicmesh portal: draws the Vega-Lite specs the server embedded as JSON data blocks
// (<script type="application/json" id="...">, never executed) into the elements that name them
// in data-spec. Runs under the pages' CSP: no eval (the expression interpreter, `ast: true`), no
// injected <style> (defaultStyle: false). Without JavaScript the table beside each chart remains.
(function () {
  "use strict";
  function draw(element) {
    var block = document.getElementById(element.getAttribute("data-spec"));
    if (!block || typeof vegaEmbed !== "function") {
      return;
    }
    var spec = JSON.parse(block.textContent);
    var options = {
      renderer: "svg",
      actions: false,
      ast: true,
      defaultStyle: false,
      tooltip: { disableDefaultStyle: true },
    };
    vegaEmbed(element, spec, options)
      .then(function () {
        element.setAttribute("data-rendered", "true");
      })
      .catch(function (error) {
        element.setAttribute("data-rendered", "failed");
        element.textContent = "The chart could not be drawn (" + error.message + "); the table below holds its numbers.";
      });
  }
  function start() {
    var charts = document.querySelectorAll("[data-spec]");
    for (var i = 0; i < charts.length; i += 1) {
      draw(charts[i]);
    }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
