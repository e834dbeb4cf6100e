// The console's own behaviour, from a file: its Content-Security-Policy (settings.py) refuses
// inline scripts and event handlers, so a template marks what it wants instead.

// <select data-autosubmit>: changing it submits its form (the language switch, the coverage
// matrix's domain).
document.addEventListener("change", (event) => {
  const field = event.target;
  if (field instanceof HTMLSelectElement && field.hasAttribute("data-autosubmit") && field.form) {
    field.form.submit();
  }
});
