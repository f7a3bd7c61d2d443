// Keyboard shortcuts of the review queue: j / k next and previous line, a accept,
// r reject (focuses the reason), ? help. Plain JavaScript, no build chain.
(function () {
  "use strict";
  function typing(target) {
    return target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.isContentEditable);
  }
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) { return; }
    var review = document.getElementById("review");
    if (!review) { return; }
    var go = function (id) { var link = document.getElementById(id); if (link) { window.location = link.href; } };
    if (event.key === "j") { go("next-line"); }
    else if (event.key === "k") { go("previous-line"); }
    else if (event.key === "a") {
      var accept = document.getElementById("accept-form");
      if (accept) { event.preventDefault(); accept.requestSubmit(); }
    } else if (event.key === "r") {
      var reason = document.getElementById("reason");
      if (reason) { event.preventDefault(); reason.focus(); }
    }
  });
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) { event.preventDefault(); }
  });
})();
