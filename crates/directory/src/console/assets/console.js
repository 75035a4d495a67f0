// certbound directory console: copy buttons. The pages work without this file; it only shows
// the "Copy" buttons (hidden by default) and copies the text of the element each one names.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("button[data-copy-from]").forEach(function (button) {
    var label = button.textContent;
    button.hidden = false;
    button.addEventListener("click", function () {
      var source = document.getElementById(button.getAttribute("data-copy-from"));
      if (!source || !navigator.clipboard) {
        return;
      }
      navigator.clipboard.writeText(source.textContent.trim()).then(
        function () { button.textContent = "Copied"; },
        function () { button.textContent = "Select the text to copy it"; }
      );
      setTimeout(function () { button.textContent = label; }, 2000);
    });
  });
});
