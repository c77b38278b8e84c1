// Collects script errors from the first moment, for the render check at the end of the page (report.js).
window.__slovoErrors = [];
window.addEventListener('error', function (e) { window.__slovoErrors.push(String(e.message || e)); });
(function () { var orig = console.error; console.error = function () {
  window.__slovoErrors.push(Array.prototype.join.call(arguments, ' ')); return orig.apply(console, arguments); }; })();
