/* Views are drawn when seen (app/dashboard/callbacks/lazy.py): tell each view's "seen-VIEW" store whether its card
   is on screen, or within half a screen of it (so a view is usually drawn by the time it scrolls in). */
(function () {
  var told = {};  // view -> what its store was last told
  var now = {};  // view -> whether it is seen now
  var retry = null;
  function tell() {
    var clientside = window.dash_clientside;
    var failed = false;
    Object.keys(now).forEach(function (view) {
      if (told[view] === now[view]) {
        return;
      }
      try {
        clientside.set_props("seen-" + view, { data: now[view] });
        told[view] = now[view];
      } catch (error) {  // Dash is still putting the page together: try again shortly
        failed = true;
      }
    });
    clearTimeout(retry);
    if (failed) {
      retry = setTimeout(tell, 200);
    }
  }
  function report(entries) {
    entries.forEach(function (entry) {
      now[entry.target.id.replace(/^card-/, "")] = entry.isIntersecting;
    });
    tell();
  }
  function watch() {
    var cards = document.querySelectorAll(".view-card[id^='card-']");
    var clientside = window.dash_clientside;
    // wait until every card's graph is mounted (plotly loads after the page): before, the cards have no height
    // and all of them would count as on screen
    var mounted = document.querySelectorAll(".view-card[id^='card-'] .js-plotly-plot").length;
    if (!cards.length || mounted < cards.length || !clientside || !clientside.set_props) {
      return false;
    }
    if (!window.IntersectionObserver) {  // no way to tell: draw every view
      cards.forEach(function (card) { now[card.id.replace(/^card-/, "")] = true; });
      tell();
      return true;
    }
    var observer = new IntersectionObserver(report, { rootMargin: "50% 0px 50% 0px" });
    cards.forEach(function (card) { observer.observe(card); });
    return true;
  }
  var poll = setInterval(function () {
    if (watch()) {
      clearInterval(poll);
    }
  }, 100);
})();
