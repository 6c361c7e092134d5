// MathJax is not bundled: pages render the TeX source when it is absent.
window.MathJax = {
  tex: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]] },
  options: { processHtmlClass: "arithmatex" },
};
