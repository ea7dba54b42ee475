/* The sentence view lays its words out for the width of its card: measure it once the page is drawn and again
   after the window is resized (debounced), and hand it to the server through the canvas store. */
(function () {
  var last = 0;
  var timer = null;
  function measure() {
    var graph = document.getElementById("sentence-graph");
    var clientside = window.dash_clientside;
    if (!graph || !clientside || !clientside.set_props) {
      return false;
    }
    var width = Math.round(graph.clientWidth);
    if (width > 0 && Math.abs(width - last) >= 24) {
      last = width;
      clientside.set_props("canvas-store", { data: { width: width } });
    }
    return width > 0;
  }
  var poll = setInterval(function () {
    if (measure()) {
      clearInterval(poll);
    }
  }, 200);
  window.addEventListener("resize", function () {
    clearTimeout(timer);
    timer = setTimeout(measure, 250);
  });
})();
