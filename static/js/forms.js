// Behaviour the page markup asks for with data attributes (no inline handlers: the Content-Security-Policy allows
// scripts from this server only).
//   <form data-confirm="Delete x?">                 asks before submitting
//   <select data-autosubmit data-clear="deployment"> submits its form on change, first emptying the named field
//   <form data-action-prefix="/drift/run/" data-action-field="deployment">  posts to prefix + that field's value + "/"
(function () {
  "use strict";
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () {
      var form = select.form;
      if (select.dataset.clear && form.elements[select.dataset.clear]) form.elements[select.dataset.clear].value = "";
      form.submit();
    });
  });
  document.querySelectorAll("form[data-action-prefix]").forEach(function (form) {
    form.addEventListener("submit", function () {
      var field = form.elements[form.dataset.actionField];
      form.action = form.dataset.actionPrefix + encodeURIComponent(field ? field.value : "") + "/";
    });
  });
})();
