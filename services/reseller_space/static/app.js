// Reseller space: a little plain JavaScript. Every page also works without it.
(function () {
  "use strict";
  var TYPES = ["application/pdf", "image/png", "image/jpeg"];
  var EXTENSIONS = /\.(pdf|png|jpe?g)$/i;

  function sizeText(n) {
    if (n >= 1048576) return (n / 1048576).toFixed(1).replace(/\.0$/, "") + " MiB";
    if (n >= 1024) return (n / 1024).toFixed(1).replace(/\.0$/, "") + " KiB";
    return n + " bytes";
  }

  // Before the upload: the type and size a person can see are checked at once.
  function problemWith(file, maxBytes) {
    if (!file) return "Choose a file to upload.";
    if (file.size === 0) return "This file is empty.";
    if (file.size > maxBytes) {
      return "This file is " + sizeText(file.size) + ": the limit is " + sizeText(maxBytes) + ".";
    }
    if (TYPES.indexOf(file.type) < 0 && !EXTENSIONS.test(file.name)) {
      return "A proof must be a PDF, PNG or JPEG file; " + file.name + " is not.";
    }
    return null;
  }

  function setupUpload(form) {
    var maxBytes = parseInt(form.getAttribute("data-max-bytes"), 10);
    var input = form.querySelector("[data-file]");
    var drop = form.querySelector("[data-drop]");
    var chosen = form.querySelector("[data-chosen]");
    var error = form.querySelector("[data-upload-error]");
    var button = form.querySelector("button[type=submit]");
    var file = null;
    form.noValidate = true; // a dropped file is not in the input: this script checks instead

    function show(message) {
      error.textContent = message || "";
      error.hidden = !message;
    }
    function choose(picked) {
      file = picked;
      chosen.textContent = picked ? picked.name + " · " + sizeText(picked.size) : "";
      show(problemWith(picked, maxBytes));
    }
    input.addEventListener("change", function () { choose(input.files[0] || null); });
    ["dragenter", "dragover"].forEach(function (name) {
      drop.addEventListener(name, function (event) { event.preventDefault(); drop.classList.add("over"); });
    });
    ["dragleave", "drop"].forEach(function (name) {
      drop.addEventListener(name, function (event) { event.preventDefault(); drop.classList.remove("over"); });
    });
    drop.addEventListener("drop", function (event) {
      var files = event.dataTransfer && event.dataTransfer.files;
      if (files && files.length) {
        try { input.files = files; } catch (ignored) { /* older browsers: kept in `file` */ }
        choose(files[0]);
      }
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var problem = problemWith(file, maxBytes);
      if (problem) { show(problem); return; }
      var data = new FormData();
      data.append("csrf_token", form.querySelector("[name=csrf_token]").value);
      data.append("file", file, file.name);
      button.disabled = true;
      button.textContent = "Uploading…";
      fetch(form.action, { method: "POST", body: data, headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) {
          if (response.redirected) { window.location.assign(response.url); return null; }
          return response.json().catch(function () { return {}; }).then(function (body) {
            if (response.ok && body.ok) {
              window.location.assign(form.action.replace(/\/proof$/, "") + "?uploaded=1");
              return;
            }
            var message = body.message || (body.error && body.error.message) ||
              "The upload failed (" + response.status + "); try again.";
            if (response.status === 413) message = "This file is too large: the limit is " + sizeText(maxBytes) + ".";
            show(message);
          });
        })
        .catch(function () { show("The upload did not reach us; check your connection and try again."); })
        .then(function () { button.disabled = false; button.textContent = "Upload the proof"; });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("form[data-upload]"), setupUpload);
    Array.prototype.forEach.call(document.querySelectorAll("[data-print]"), function (button) {
      button.addEventListener("click", function () { window.print(); });
    });
  });
})();
