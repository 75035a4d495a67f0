// certbound directory console: copy buttons. The pages work without this file; it only shows
// the "Copy" buttons (hidden by default), copies the text of the element each one names, and
// says what happened in the page's status region (read out by screen readers).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var status = document.getElementById("copy-status");
  var say = function (text) { if (status) { status.textContent = text; } };
  document.querySelectorAll("button[data-copy-from]").forEach(function (button) {
    var label = button.querySelector(".copy-label") || button;
    var text = label.textContent;
    var name = button.getAttribute("data-copy-from");
    button.hidden = false;
    button.addEventListener("click", function () {
      var source = document.getElementById(name);
      if (!source || !navigator.clipboard) {
        say("Copying is not available here: select the text to copy it");
        return;
      }
      navigator.clipboard.writeText(source.textContent.trim()).then(
        function () { label.textContent = "Copied"; say("Copied " + name); },
        function () { label.textContent = "Select the text to copy it"; say("Could not copy " + name + ": select the text to copy it"); }
      );
      setTimeout(function () { label.textContent = text; }, 2000);
    });
  });
});
