/* payhub hosted cashier: method choice, countdown, and polling the session so the page learns the
   outcome without a reload. Loaded from payhub itself (CSP: script-src 'self', no inline script). */
(function () {
  "use strict";
  var root = document.getElementById("checkout");
  if (!root) { return; }
  var stateUrl = root.getAttribute("data-state-url");
  var pollTimer = null;
  var countdown = document.getElementById("countdown");
  var deadline = 0;

  function panelBody() { return document.getElementById("panel-body"); }

  function syncCardFields() {
    var fields = document.getElementById("card-fields");
    if (!fields) { return; }
    var checked = document.querySelector('input[name="payment_method"]:checked');
    var on = !!checked && checked.value === "CARD";
    fields.disabled = !on;
    fields.hidden = !on;
  }

  function format(seconds) {
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    var mm = h ? (m < 10 ? "0" + m : "" + m) : "" + m;
    return (h ? h + ":" : "") + mm + ":" + (s < 10 ? "0" + s : s);
  }

  function setRemaining(seconds) {
    deadline = performance.now() + seconds * 1000;
  }

  function tick() {
    if (!countdown) { return; }
    var left = Math.max(0, Math.ceil((deadline - performance.now()) / 1000));
    countdown.textContent = format(left);
    countdown.classList.toggle("urgent", left <= 60);
    if (left === 0 && !root.hasAttribute("data-ended")) {
      root.setAttribute("data-ended", "");
      poll();
    }
  }

  function hideCountdown() {
    var row = document.getElementById("countdown-row");
    if (row) { row.hidden = true; }
  }

  function autoSubmit() {
    var el = document.querySelector("[data-autosubmit]");
    if (!el) { return; }
    // Once per step: coming back from the channel's page must not send the consumer there again.
    var key = "payhub.redirected." + el.getAttribute("data-autosubmit");
    try {
      if (window.sessionStorage.getItem(key)) {  // back from the channel: wait for its outcome
        var going = document.getElementById("redirect-going"), back = document.getElementById("redirect-back");
        if (going && back) { going.hidden = true; back.hidden = false; }
        return;
      }
      window.sessionStorage.setItem(key, "1");
    } catch (e) { /* storage off: submit anyway */ }
    if (el.tagName === "FORM") { el.submit(); } else { window.location.assign(el.getAttribute("href")); }
  }

  function schedule() {
    var body = panelBody();
    if (!body) { return; }
    var kind = body.getAttribute("data-kind");
    window.clearTimeout(pollTimer);
    if (kind === "succeeded") {
      hideCountdown();
      var back = body.getAttribute("data-return-url");
      if (back) { window.setTimeout(function () { window.location.assign(back); }, 2000); }
      return;
    }
    if (kind === "failed" || kind === "expired") { hideCountdown(); return; }
    var seconds = kind === "methods" ? 5 : Number(body.getAttribute("data-poll")) || 2;
    pollTimer = window.setTimeout(poll, seconds * 1000);
  }

  function swap(data) {
    var body = panelBody();
    // Only a new kind of step replaces the panel: a form the consumer is filling in (the method list,
    // the card fields under a QR code) is never wiped by a change that does not concern it.
    if (body && data.kind === body.getAttribute("data-kind")) {
      body.setAttribute("data-version", data.version);
      return;
    }
    document.getElementById("panel").innerHTML = data.panel;
    if (typeof data.remaining === "number") { setRemaining(data.remaining); }
    syncCardFields();
    autoSubmit();
  }

  function poll() {
    var body = panelBody();
    if (!body) { return; }
    var url = stateUrl + "?v=" + encodeURIComponent(body.getAttribute("data-version")) +
      "&k=" + encodeURIComponent(body.getAttribute("data-kind"));
    if (document.hidden) {  // a tab in the background asks again once it is shown
      document.addEventListener("visibilitychange", poll, { once: true });
      return;
    }
    window.fetch(url, { credentials: "same-origin", cache: "no-store", headers: { accept: "application/json" } })
      .then(function (response) {
        if (response.status === 404) { throw new Error("gone"); }  // the session is no longer readable
        return response.ok ? response.json() : null;
      })
      .then(function (data) { if (data && data.changed) { swap(data); } schedule(); })
      .catch(function (error) { if (String(error).indexOf("gone") < 0) { schedule(); } });
  }

  document.addEventListener("change", function (event) {
    if (event.target && event.target.name === "payment_method") { syncCardFields(); }
  });
  document.addEventListener("submit", function (event) {
    var button = event.target.querySelector("button[type=submit]");
    if (button) { window.setTimeout(function () { button.disabled = true; }, 0); }
  });

  // A logo payhub could not fetch answers 404: show the merchant's initial instead.
  function logoFailed() {
    var logo = document.getElementById("logo"), monogram = document.getElementById("monogram");
    if (logo && monogram) { logo.hidden = true; monogram.hidden = false; }
  }
  var logo = document.getElementById("logo");
  if (logo) {
    logo.addEventListener("error", logoFailed);
    if (logo.complete && logo.naturalWidth === 0) { logoFailed(); }
  }

  if (window.location.search.indexOf("notice=") >= 0 && window.history.replaceState) {
    window.history.replaceState(null, "", window.location.pathname);  // a reload shows no stale notice
  }
  if (countdown) {
    setRemaining(Number(countdown.getAttribute("data-remaining")) || 0);
    window.setInterval(tick, 1000);
  }
  syncCardFields();
  autoSubmit();
  schedule();
}());
