// The report page's script: hover highlighting, then the render check that tests read from #render-check.
(function () {
  // Hovering a run's name (legend, tables) brings its lines forward in every plot.
  document.querySelectorAll('[data-run]').forEach(function (el) {
    el.addEventListener('mouseenter', function () {
      var i = el.getAttribute('data-run');
      document.querySelectorAll('g[id^="run' + i + '-"]').forEach(function (g) { g.classList.add('on'); });
      document.body.classList.add('focus');
    });
    el.addEventListener('mouseleave', function () {
      document.body.classList.remove('focus');
      document.querySelectorAll('g.on').forEach(function (g) { g.classList.remove('on'); });
    });
  });
  // Render check: a plot counts when its SVG has a size and at least one drawn data line or bar.
  var plots = document.querySelectorAll('figure.plot svg'), drawn = 0;
  plots.forEach(function (svg) {
    var box = svg.getBoundingClientRect(), lines = 0;
    svg.querySelectorAll('g[id^="run"] path, g[id^="imp-"] path').forEach(function (p) {
      var b = p.getBBox(); if (b.width > 0 || b.height > 0) lines++; });
    if (box.width > 0 && box.height > 0 && lines > 0) drawn++;
  });
  var out = document.getElementById('render-check');
  out.setAttribute('data-plots', plots.length);
  out.setAttribute('data-drawn', drawn);
  out.setAttribute('data-errors', window.__slovoErrors.length);
  out.textContent = 'render check: ' + drawn + ' of ' + plots.length + ' plots drawn, '
    + window.__slovoErrors.length + ' script errors' + (window.__slovoErrors.length ? ': ' + window.__slovoErrors.join('; ') : '');
})();
