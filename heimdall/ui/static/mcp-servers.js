/* MCP server pages: small enhancements; every page also works without this file.
 *
 * 1. The add form shows only the sections that apply to the chosen connection and authentication.
 * 2. A server page whose server is still connecting reloads itself until the outcome is known.
 * 3. The sign-in page opens the upstream login in a popup, follows its progress (GET …/status every
 *    second) and, once the login completed, finishes the setup itself (POST …/finish with the CSRF
 *    token) and moves on to the server's page.
 */
(function () {
  "use strict";

  // --- 1. add form ------------------------------------------------------------------------------

  function setUpForm(form) {
    var connection = form.querySelector("[name=connection_type]");
    var authChoices = form.querySelectorAll("[name=auth_type]");

    function chosenAuth() {
      for (var i = 0; i < authChoices.length; i++) {
        if (authChoices[i].checked) return authChoices[i].value;
      }
      return "none";
    }

    function update() {
      var kind = connection ? connection.value : "http";
      var auth = chosenAuth();
      form.querySelectorAll("[data-when-connection]").forEach(function (section) {
        section.hidden = section.getAttribute("data-when-connection").split(" ").indexOf(kind) < 0;
      });
      form.querySelectorAll("[data-when-auth]").forEach(function (section) {
        section.hidden = section.getAttribute("data-when-auth").split(" ").indexOf(auth) < 0;
      });
    }

    form.addEventListener("change", update);
    update();
  }

  document.querySelectorAll("[data-mcp-form]").forEach(setUpForm);

  // --- 2. a server that is still connecting: reload until it has an outcome (a bounded number of times)

  var REFRESH_KEY = "heimdall-mcp-refreshes:" + window.location.pathname;
  if (document.querySelector("[data-mcp-connecting]")) {
    var refreshes = Number(window.sessionStorage.getItem(REFRESH_KEY) || "0");
    if (refreshes < 15) {
      window.sessionStorage.setItem(REFRESH_KEY, String(refreshes + 1));
      window.setTimeout(function () { window.location.reload(); }, 1000);
    }
  } else {
    window.sessionStorage.removeItem(REFRESH_KEY);
  }

  // --- 3. sign-in page --------------------------------------------------------------------------

  var root = document.querySelector("[data-oauth-login]");
  if (!root) return;

  var statusUrl = root.getAttribute("data-status-url");
  var finishUrl = root.getAttribute("data-finish-url");
  var button = root.querySelector("[data-popup]");
  var progress = root.querySelector("[data-progress]");
  var problem = root.querySelector("[data-problem]");
  var csrfInput = root.querySelector("input[name=csrf_token]");
  var csrf = csrfInput ? csrfInput.value : "";

  var popup = null;
  var started = false; // the admin opened the sign-in from this page
  var finishing = false;
  var closedPolls = 0;
  var lastAttempt = null; // the attempt the status answered about last
  var attemptBefore = null; // the attempt before the admin's click: its failure is old news
  var timer = null;
  var followUntil = 0;
  // A sign-in attempt lives 15 minutes; nobody needs this page to keep asking much longer.
  var FOLLOW_MS = 20 * 60 * 1000;

  function say(text) {
    progress.textContent = text;
  }

  function trouble(text) {
    problem.textContent = text;
    problem.hidden = false;
    button.textContent = button.getAttribute("data-retry-label");
    button.classList.add("btn-primary");
    started = false;
  }

  function samePath(url) {
    return typeof url === "string" && url.charAt(0) === "/" && url.charAt(1) !== "/" && url.charAt(1) !== "\\";
  }

  function moveOn(url) {
    stop();
    if (popup && !popup.closed) popup.close();
    say("Done. Opening the server…");
    if (samePath(url)) window.location.assign(url);
  }

  function stop() {
    if (timer !== null) window.clearInterval(timer);
    timer = null;
  }

  function follow() {
    followUntil = Date.now() + FOLLOW_MS;
    if (timer === null) timer = window.setInterval(poll, 1000);
  }

  function finish() {
    if (finishing) return;
    finishing = true;
    stop();
    say("Signed in. Finishing the setup and discovering the tools…");
    fetch(finishUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      body: new URLSearchParams({ csrf_token: csrf }),
    })
      .then(function (response) {
        return response.json().then(
          function (data) { return data; },
          function () { return { ok: false, message: "Your admin session ended. Reload the page and sign in again." }; }
        );
      })
      .then(function (data) {
        finishing = false;
        if (data.ok) {
          moveOn(data.next_url);
          return;
        }
        say("The setup did not finish.");
        trouble(data.message || "The setup did not finish. Reload the page and try again.");
        if (data.start_over && samePath(data.next_url)) {
          button.textContent = "Add the server again";
          button.setAttribute("href", data.next_url);
          button.removeAttribute("target");
          button.setAttribute("data-start-over", "");
        }
      })
      .catch(function () {
        finishing = false;
        trouble("Heimdall could not be reached. Check the connection and try again.");
      });
  }

  function poll() {
    if (Date.now() > followUntil) {
      stop();
      return;
    }
    fetch(statusUrl, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.status === 401) return { state: "signed_out" };
        return response.json();
      })
      .then(function (data) {
        if (data.attempt !== undefined) lastAttempt = data.attempt;
        var fresh = started && data.attempt !== attemptBefore;
        switch (data.state) {
          case "authorized":
            finish();
            break;
          case "done":
            moveOn(data.next_url);
            break;
          case "signed_out":
            stop();
            trouble("Your admin session ended. Reload the page and sign in again.");
            break;
          case "gone":
            stop();
            trouble(data.message);
            break;
          case "failed":
          case "expired":
            if (fresh) {
              stop();
              say("The sign-in did not complete.");
              trouble(data.message);
            }
            break;
          default:
            // Still waiting. A popup closed twice in a row without a result was closed by the admin.
            if (started && popup && popup.closed) {
              closedPolls += 1;
              if (closedPolls >= 2) {
                say("The sign-in window was closed.");
                trouble("The sign-in window was closed before the sign-in finished. You can try again.");
              }
            } else {
              closedPolls = 0;
            }
        }
      })
      .catch(function () {
        /* a missed poll is retried a second later */
      });
  }

  button.addEventListener("click", function (event) {
    if (button.hasAttribute("data-start-over")) return;
    event.preventDefault();
    problem.hidden = true;
    closedPolls = 0;
    popup = window.open(button.getAttribute("href"), "heimdall-mcp-sign-in", "popup,width=520,height=720");
    if (!popup) {
      trouble("Your browser blocked the sign-in window. Allow pop-ups for this site and try again.");
      return;
    }
    try {
      // Like rel=noopener: the upstream's pages in the popup cannot reach back into this page.
      popup.opener = null;
    } catch (error) {
      /* already cross-origin: nothing to cut */
    }
    started = true;
    attemptBefore = lastAttempt;
    say("Sign in with the server in the window that opened. This page follows along.");
    follow();
    poll();
  });

  // A login completed elsewhere (another tab, or before a reload) is finished here too.
  follow();
  poll();
})();
