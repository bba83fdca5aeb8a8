// jobq dashboard: live regions reloaded every 2 s, and buttons that call the JSON API with
// the session's CSRF token. No dependencies, no build step.
(function () {
  "use strict";
  function meta(name) {
    var el = document.querySelector('meta[name="' + name + '"]');
    return el ? el.getAttribute("content") : "";
  }
  var base = meta("jobq-base");
  var csrf = meta("jobq-csrf");

  function flash(text, bad) {
    var el = document.getElementById("flash");
    if (!el) return;
    el.textContent = text;
    el.className = bad ? "bad" : "ok";
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body === undefined ? {} : body),
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (data) {
        if (!r.ok) {
          flash((data.error || r.statusText) + " (" + r.status + ")", true);
          throw new Error(String(r.status));
        }
        return data;
      });
    });
  }

  function refresh(el) {
    if (el.querySelector("input[type=checkbox]:checked")) return Promise.resolve();
    return fetch(el.getAttribute("data-live"), { credentials: "same-origin", cache: "no-store" }).then(function (r) {
      if (r.ok) return r.text().then(function (html) { el.innerHTML = html; });
    });
  }

  function poll() {
    var regions = document.querySelectorAll("[data-live]");
    for (var i = 0; i < regions.length; i++) refresh(regions[i]).catch(function () {});
  }
  setInterval(poll, 2000);

  // The live tail: while the job is unfinished, its output is read every second and the
  // view follows its end (unless "follow" is off); one last read once it has finished.
  var FINISHED = { succeeded: 1, failed: 1, cancelled: 1 };
  var tailed = document.querySelector("pre[data-tail]");
  var lastState = null;
  function tail() {
    var stateEl = document.getElementById("job-state");
    var state = stateEl ? stateEl.textContent : "";
    if (FINISHED[state] && FINISHED[lastState]) return;  // read once after it finished
    lastState = state;
    fetch(tailed.getAttribute("data-tail"), { credentials: "same-origin", cache: "no-store" }).then(function (r) {
      if (!r.ok) return;
      return r.text().then(function (text) {
        if (text === tailed.textContent) return;
        var follow = document.getElementById("follow");
        tailed.textContent = text;
        if (!follow || follow.checked) tailed.scrollTop = tailed.scrollHeight;
      });
    }).catch(function () {});
  }
  if (tailed) {
    tailed.scrollTop = tailed.scrollHeight;
    setInterval(tail, 1000);
  }

  function picked() {
    var boxes = document.querySelectorAll("input.pick:checked");
    var ids = [];
    for (var i = 0; i < boxes.length; i++) ids.push(parseInt(boxes[i].value, 10));
    return ids;
  }

  document.addEventListener("change", function (ev) {
    if (ev.target && ev.target.id === "pick-all") {
      var boxes = document.querySelectorAll("input.pick");
      for (var i = 0; i < boxes.length; i++) boxes[i].checked = ev.target.checked;
    }
  });

  document.addEventListener("click", function (ev) {
    var button = ev.target.closest ? ev.target.closest("button[data-post], button[data-bulk]") : null;
    if (!button) return;
    ev.preventDefault();
    var done = function () { poll(); };
    if (button.hasAttribute("data-post")) {
      post(button.getAttribute("data-post")).then(function () {
        flash(button.getAttribute("data-done") || "done", false);
        done();
      }).catch(function () {});
      return;
    }
    var action = button.getAttribute("data-bulk");
    var all = document.getElementById("all-matching");
    var body;
    if (all && all.checked) {
      body = { action: action, filter: JSON.parse(all.getAttribute("data-filter") || "{}") };
    } else {
      var ids = picked();
      if (!ids.length) { flash("select jobs first", true); return; }
      body = { action: action, ids: ids };
    }
    post(base + "/api/v1/jobs/bulk", body).then(function (data) {
      flash(action + ": " + data.done.length + " job(s)", false);
      var boxes = document.querySelectorAll("input[type=checkbox]");
      for (var i = 0; i < boxes.length; i++) boxes[i].checked = false;
      done();
    }).catch(function () {});
  });
})();
