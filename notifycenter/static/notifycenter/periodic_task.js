// A periodic task's page: beside the chosen crontab, its timetable in words. django-celery-beat
// does this with an inline script, which the console's Content-Security-Policy refuses; the
// words and labels come from the page's JSON (json_script), never parsed as HTML.
(function () {
  const read = (id) => JSON.parse(document.getElementById(id).textContent);
  const crontabs = read("readable-crontabs");
  const labels = read("crontab-help-labels");
  const select = document.getElementById("id_crontab");
  const help = document.querySelector(".field-crontab .help");
  const translation = document.querySelector(".field-crontab_translation");
  if (translation) translation.style.display = "none";
  if (!select || !help) return;
  const original = help.textContent;
  const show = () => {
    const words = crontabs[select.value];
    help.replaceChildren(document.createTextNode(original));
    if (words) {
      help.append(document.createElement("br"), document.createTextNode(`${labels.in_words}: ${words}`));
    }
  };
  select.addEventListener("change", show);
  show();
})();
