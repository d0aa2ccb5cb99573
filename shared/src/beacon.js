// Stellwerk beacon: reports clicks, conversions and custom events for the decisions the edge
// injected into this page (window.__stellwerk). One click per decision and page view.
(function () {
  var page = window.__stellwerk;
  if (!page || !page.experiments || !page.experiments.length) return;
  var endpoint = "/_stellwerk/feedback";
  var clicked = false;

  function send(body) {
    var json = JSON.stringify(body);
    if (navigator.sendBeacon && navigator.sendBeacon(endpoint, json)) return;
    fetch(endpoint, { method: "POST", body: json, keepalive: true, headers: { "content-type": "application/json" } });
  }

  function report(type, extra) {
    page.experiments.forEach(function (decision) {
      var body = { token: decision.token, type: type };
      for (var k in extra) body[k] = extra[k];
      send(body);
    });
  }

  document.addEventListener("click", function (event) {
    if (clicked) return;
    var target = event.target && event.target.closest && event.target.closest("a, button, [data-stellwerk-click]");
    if (!target) return;
    clicked = true;
    report("click", {});
  }, true);

  window.stellwerk = {
    decisions: page.experiments,
    flags: page.flags || {},
    convert: function (value) { report("conversion", typeof value === "number" ? { value: value } : {}); },
    track: function (name, value) { report("custom", typeof value === "number" ? { name: name, value: value } : { name: name }); }
  };
})();
