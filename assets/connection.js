/* A request the server never answered (its worker restarted, the network dropped) would leave a view silently
   stale. Every callback request goes through fetch: when one fails at the network level, or the server answers
   with 5xx, this says so in a banner of its own (not a Dash component); a later request that succeeds hides it
   (one that was already under way when the failure happened does not). */
(function () {
  var original = window.fetch;
  if (!original || original.attentionFlowsWrapped) {
    return;
  }
  var MESSAGE = "The server restarted (or the connection dropped) while working on this view; try again.";

  function banner() {
    var element = document.getElementById("connection-banner");
    if (!element) {
      element = document.createElement("div");
      element.id = "connection-banner";
      element.setAttribute("role", "alert");
      document.body.appendChild(element);
    }
    return element;
  }

  function isCallback(input) {
    var url = typeof input === "string" ? input : (input && input.url) || "";
    return url.indexOf("/_dash-update-component") !== -1;
  }

  var started = 0;
  var failedAt = -1;

  function fail(number) {
    failedAt = Math.max(failedAt, number);
    banner().textContent = MESSAGE;
  }

  function wrapped(input, init) {
    if (!isCallback(input)) {
      return original.apply(this, arguments);
    }
    var number = ++started;
    return original.apply(this, arguments).then(
      function (response) {
        if (response.status >= 500) {
          fail(number);
        } else if (number > failedAt) {
          banner().textContent = "";
        }
        return response;
      },
      function (error) {
        fail(number);
        throw error;
      }
    );
  }
  wrapped.attentionFlowsWrapped = true;
  window.fetch = wrapped;
})();
