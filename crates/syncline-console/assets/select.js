// "all on this page" ticks or clears every dead letter's box.
(function () {
  const all = document.getElementById("select-all");
  if (!all) return;
  all.addEventListener("change", function () {
    document.querySelectorAll('input[name="ids"][form="bulk"]').forEach(function (box) { box.checked = all.checked; });
  });
})();
